"""A fresh seed for every test, so results do not depend on test order.
(The root conftest.py sends figures to a temporary folder and draws off-screen.)"""

import pytest

import minigrad


@pytest.fixture(autouse=True)
def _seed():
    minigrad.manual_seed(1234)
    yield


@pytest.fixture(autouse=True)
def _exercise_tests_run_the_reference(request):
    """An exercise's tests run the readable reference, where its fence is, never a fast
    kernel that would bypass the student's code (minigrad.kernels' one switch)."""
    if request.node.get_closest_marker("exercise") is None:
        yield
        return
    with minigrad.kernels.use("reference"):
        yield
