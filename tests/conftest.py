"""A fresh seed for every test, so results do not depend on test order.
(The root conftest.py sends figures to a temporary folder and draws off-screen.)"""

import pytest

import minigrad


@pytest.fixture(autouse=True)
def _seed():
    minigrad.manual_seed(1234)
    yield
