"""Shared test setup: figures to a temporary folder, a headless backend, and a
fresh seed for every test so results do not depend on test order."""

import os
import tempfile

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("MINIGRAD_FIGURES", tempfile.mkdtemp(prefix="minigrad-figures-"))

import pytest  # noqa: E402

import minigrad  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    minigrad.manual_seed(1234)
    yield
