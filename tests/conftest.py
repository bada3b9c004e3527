"""A fresh seed for every test, so results do not depend on test order.
(The root conftest.py sends figures to a temporary folder.)"""

import os
import tempfile

# also here, for the student release, which ships tests/ without the root conftest
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("MINIGRAD_FIGURES", tempfile.mkdtemp(prefix="minigrad-figures-"))

import pytest  # noqa: E402

import minigrad  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    minigrad.manual_seed(1234)
    yield
