"""Graded tests of chapter 1's exercises: unbroadcast and the matmul backward.

Each compares the student's code with an answer computed another way: an
explicit scatter-add over the broadcast index map, NumPy's own products,
or central differences (gradcheck, float64).
"""

import numpy as np
import pytest

import minigrad
from minigrad.tensor import unbroadcast


def _random_broadcast_pair(rng):
    """A shape S and a shape B that S broadcasts to (prepended axes and stretched 1s)."""
    ndim = int(rng.integers(1, 4))
    S = tuple(int(n) for n in rng.integers(1, 5, size=ndim))
    B = tuple(int(rng.integers(2, 5)) if n == 1 and rng.random() < 0.7 else n for n in S)
    lead = tuple(int(n) for n in rng.integers(2, 4, size=int(rng.integers(0, 3))))
    return S, lead + B


def _scatter_reference(grad, shape):
    """Each element of the operand receives the sum of grad over the positions it was copied to:
    broadcast the operand's flat indices, then add grad into those slots."""
    index = np.broadcast_to(np.arange(int(np.prod(shape))).reshape(shape), grad.shape)
    return np.bincount(index.ravel(), weights=grad.ravel(),
                       minlength=int(np.prod(shape))).reshape(shape)


@pytest.mark.exercise("ch1.unbroadcast", points=1)
def test_unbroadcast_matches_scatter_add():
    rng = minigrad.get_rng()
    for _ in range(30):
        S, B = _random_broadcast_pair(rng)
        g = rng.standard_normal(B)
        want = _scatter_reference(g, S)             # before the call, from a pristine g
        g_in = g.copy()
        out = unbroadcast(g_in, S)
        np.testing.assert_array_equal(g_in, g, err_msg="unbroadcast must not change its input")
        assert out.shape == S, f"unbroadcast to {S} from {B} returned shape {out.shape}"
        np.testing.assert_allclose(out, want, rtol=1e-10, atol=1e-12)


@pytest.mark.exercise("ch1.unbroadcast", points=1)
def test_unbroadcast_gives_broadcast_add_its_gradient():
    """L = sum((a + b) * R): dL/db is R summed over the rows b was copied to."""
    rng = minigrad.get_rng()
    a = minigrad.tensor(rng.standard_normal((6, 4, 3)), requires_grad=True)
    b = minigrad.tensor(rng.standard_normal((4, 1)), requires_grad=True)
    R = rng.standard_normal((6, 4, 3))
    want_b = R.sum(axis=(0, 2))[:, None]
    ((a + b) * minigrad.tensor(R)).sum().backward()
    np.testing.assert_allclose(b.grad, want_b, rtol=1e-10)
    np.testing.assert_allclose(a.grad, R, rtol=1e-12)


@pytest.mark.exercise("ch1.matmul_backward", points=1)
def test_matmul_backward_2d_closed_form():
    """dL/dA = G B^T and dL/dB = A^T G for L = sum((A @ B) * G)."""
    rng = minigrad.get_rng()
    A = rng.standard_normal((5, 7))
    B = rng.standard_normal((7, 3))
    G = rng.standard_normal((5, 3))
    want_a, want_b = np.einsum("nm,km->nk", G, B), np.einsum("nk,nm->km", A, G)
    a, b = minigrad.tensor(A, requires_grad=True), minigrad.tensor(B, requires_grad=True)
    (a @ b).backward(G.copy())
    np.testing.assert_array_equal(a.data, A, err_msg="the backward must not change A")
    np.testing.assert_array_equal(b.data, B, err_msg="the backward must not change B")
    np.testing.assert_allclose(a.grad, want_a, rtol=1e-10)
    np.testing.assert_allclose(b.grad, want_b, rtol=1e-10)


@pytest.mark.exercise("ch1.matmul_backward", points=1)
def test_matmul_backward_batched_passes_gradcheck():
    rng = minigrad.get_rng()
    a = minigrad.tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    b = minigrad.tensor(rng.standard_normal((2, 4, 5)), requires_grad=True)
    assert minigrad.gradcheck(lambda x, y: x @ y, (a, b))


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch1.unbroadcast", points=1)
def test_broadcasting_ops_pass_gradcheck_and_size_one_axes_survive():
    """mul, div, sub and where all send their gradients through unbroadcast; an axis of
    size 1 in both shapes must stay (not be squeezed), and equal shapes pass through."""
    rng = minigrad.get_rng()
    a = minigrad.tensor(rng.standard_normal((3, 1, 4)), requires_grad=True)
    b = minigrad.tensor(rng.standard_normal((2, 1)), requires_grad=True)
    c = minigrad.tensor(rng.uniform(1, 2, 4), requires_grad=True)
    assert minigrad.gradcheck(lambda a, b, c: (a * b - c) / c, (a, b, c))
    cond = rng.random((3, 2, 4)) < 0.5
    assert minigrad.gradcheck(lambda a, b: minigrad.where(cond, a, b), (a, b))
    g = rng.standard_normal((5, 1, 3))
    g0, want = g.copy(), g.sum(axis=0)
    assert unbroadcast(g, (1, 3)).shape == (1, 3)
    np.testing.assert_allclose(unbroadcast(g, (1, 3)), want, rtol=1e-12)
    np.testing.assert_array_equal(unbroadcast(g, (5, 1, 3)), g0)
    np.testing.assert_array_equal(g, g0, err_msg="unbroadcast must not change its input")


@pytest.mark.exercise("ch1.matmul_backward", points=1)
def test_matmul_backward_broadcast_batch_and_vectors():
    """A (2, 3, 4) batch against one shared (4, 5) matrix: B's gradient sums over the batch;
    a vector operand gets a vector gradient."""
    rng = minigrad.get_rng()
    a = minigrad.tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    w = minigrad.tensor(rng.standard_normal((4, 5)), requires_grad=True)
    v = minigrad.tensor(rng.standard_normal(4), requires_grad=True)
    assert minigrad.gradcheck(lambda x, y: x @ y, (a, w))
    assert minigrad.gradcheck(lambda x, y: x @ y, (a, v))
    assert minigrad.gradcheck(lambda x, y: x @ y, (v, w))
# END HIDDEN TESTS
