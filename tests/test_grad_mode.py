"""Grad mode (no_grad / enable_grad / is_grad_enabled) is per thread, as in PyTorch.

Every thread starts with gradients on, and one thread's no_grad() never switches
them off for another: the simulated distributed backend runs each rank as a
thread, so a global flag would let one rank's evaluation silently cut another
rank's graph. Also: nesting restores the outer mode, exceptions included.
"""

import copy
import threading

import numpy as np
import pytest

import minigrad as mg
import minigrad.distributed as dist
from minigrad import Tensor, nn
from minigrad import functional as F

TIMEOUT = 30  # seconds a thread waits at a barrier before the test fails instead of hanging


def _leaf():
    return mg.tensor(np.ones(3), requires_grad=True)


def _check_mode(enabled: bool):
    """This thread's mode is ``enabled``, and an op on a leaf records a graph iff it is."""
    assert mg.is_grad_enabled() is enabled
    y = _leaf() * 2
    assert y.requires_grad is enabled
    assert y.is_leaf is (not enabled)


def _run_in_threads(*bodies):
    """Run each ``body(barrier)`` in its own thread; re-raise the first failure here."""
    barrier = threading.Barrier(len(bodies), timeout=TIMEOUT)
    errors = []

    def run(body):
        try:
            body(barrier)
        except threading.BrokenBarrierError:
            pass                    # another thread failed first and broke the barrier
        except BaseException as e:  # noqa: B036 -- handed to the test's thread
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(b,), daemon=True) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    if errors:
        raise errors[0]
    assert not any(t.is_alive() for t in threads), "a thread is stuck at a barrier"


def test_two_threads_interleaving_no_grad_each_keep_their_own_mode():
    # A enters, B enters, A exits, B exits: with one global flag B would read A's
    # False at step 1, and after the interleaved exits the flag would be left off
    def a(barrier):
        with mg.no_grad():
            _check_mode(False)
            barrier.wait()              # 1. A inside, B outside
            barrier.wait()              # 2. B enters
            _check_mode(False)
        _check_mode(True)
        barrier.wait()                  # 3. A has left, B still inside
        barrier.wait()                  # 4. B leaves
        _check_mode(True)

    def b(barrier):
        barrier.wait()                  # 1.
        _check_mode(True)
        with mg.no_grad():
            barrier.wait()              # 2.
            barrier.wait()              # 3.
            _check_mode(False)
        barrier.wait()                  # 4.
        _check_mode(True)

    _run_in_threads(a, b)
    _check_mode(True)


def test_a_new_thread_starts_with_grad_enabled_inside_the_main_threads_no_grad():
    seen = []

    def body():
        seen.append(mg.is_grad_enabled())
        seen.append((_leaf() * 2).requires_grad)

    with mg.no_grad():
        t = threading.Thread(target=body)
        t.start()
        t.join(TIMEOUT)
        _check_mode(False)              # the thread's mode did not leak back either
    assert seen == [True, True]
    _check_mode(True)


def test_a_mode_changes_only_in_the_thread_that_changes_it():
    # a thread that leaves its no_grad() open, or ends inside it, or whose block is
    # closed from another thread, never switches recording off (or on) elsewhere
    handed = []

    def a(barrier):
        cm = mg.no_grad()
        cm.__enter__()
        handed.append(cm)
        barrier.wait()                  # 1. the test's thread closes A's block
        barrier.wait()                  # 2.
        _check_mode(False)              # still off here: only A changes A's mode

    def closer(barrier):
        barrier.wait()                  # 1.
        handed[0].__exit__(None, None, None)
        _check_mode(True)
        barrier.wait()                  # 2.

    _run_in_threads(a, closer)          # A ends with its grad mode off
    _check_mode(True)
    t = threading.Thread(target=lambda: handed.append(mg.is_grad_enabled()))
    t.start()
    t.join(TIMEOUT)
    assert handed[1] is True


def test_nested_modes_restore_the_outer_one_also_on_an_exception():
    with mg.no_grad():
        _check_mode(False)
        with mg.enable_grad():
            _check_mode(True)
            with mg.no_grad():
                _check_mode(False)
            _check_mode(True)
        _check_mode(False)
        with pytest.raises(ValueError, match="inner"):
            with mg.enable_grad():
                with mg.no_grad():
                    raise ValueError("inner")
        _check_mode(False)
    _check_mode(True)
    with pytest.raises(KeyError):
        with mg.no_grad():
            raise KeyError("outer")
    _check_mode(True)


def test_no_grad_and_enable_grad_work_as_decorators_per_call_and_per_thread():
    @mg.no_grad()
    def evaluate(x):
        return mg.is_grad_enabled(), x * 2

    @mg.enable_grad()
    def train(x):
        return mg.is_grad_enabled(), x * 2

    @mg.no_grad()
    def fails():
        raise RuntimeError("boom")

    on, y = evaluate(_leaf())
    assert not on and not y.requires_grad
    with mg.no_grad():
        on, y = train(_leaf())
        assert on and y.requires_grad
        _check_mode(False)
    with pytest.raises(RuntimeError, match="boom"):
        fails()
    _check_mode(True)
    for _ in range(2):                  # the decorated function is reusable
        assert not evaluate(_leaf())[0]
    _check_mode(True)


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    model = nn.MLP([8, 16, 4], dtype=np.float64)
    return model, rng.standard_normal((6, 8)), rng.integers(0, 4, 6)


def _gradients(model, X, Y):
    loss = F.cross_entropy(model(Tensor(X)), Y)
    loss.backward()
    return [p.grad.copy() for p in model.parameters()]


def test_a_rank_evaluating_under_no_grad_leaves_the_training_ranks_gradients_exact():
    # rank 0 evaluates under no_grad() while rank 1 runs forward and backward; the
    # barriers make rank 1's whole step fall inside rank 0's no_grad block
    model, X, Y = _problem()
    expected = _gradients(copy.deepcopy(model), X, Y)

    def rank():
        dist.init_process_group(backend="sim", world_size=2)
        m = copy.deepcopy(model)
        if dist.get_rank() == 0:
            with mg.no_grad():
                logits = m(Tensor(X))
                dist.barrier()          # rank 1 trains now
                dist.barrier()
            assert not logits.requires_grad and mg.is_grad_enabled()
            return None
        dist.barrier()
        assert mg.is_grad_enabled()
        grads = _gradients(m, X, Y)
        dist.barrier()
        return grads

    results = dist.spawn(rank, 2)
    assert results[0] is None
    assert len(results[1]) == len(expected)
    for got, want in zip(results[1], expected):
        np.testing.assert_array_equal(got, want)
    _check_mode(True)
