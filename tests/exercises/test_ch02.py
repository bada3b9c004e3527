"""Graded tests of chapter 2's exercises: cross-entropy and LayerNorm backward,
SGD with momentum, the Adam update.

References are computed another way: the softmax-minus-one-hot formula in
NumPy, central differences (gradcheck, float64), and optimizer trajectories
re-derived in NumPy from the papers' equations.
"""

import numpy as np
import pytest

import minigrad
from minigrad import functional as F
from minigrad import optim
from minigrad.nn import Parameter
from minigrad.optim import adam_update


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------- cross-entropy
@pytest.mark.exercise("ch2.cross_entropy_backward", points=1)
def test_cross_entropy_grad_is_softmax_minus_onehot():
    rng = minigrad.get_rng()
    N, C = 7, 5
    z = rng.standard_normal((N, C)) * 3
    t = rng.integers(0, C, N)
    expected = (_softmax(z) - np.eye(C)[t]) / N
    x = minigrad.tensor(z, requires_grad=True)
    F.cross_entropy(x, t.copy()).backward()
    np.testing.assert_allclose(x.grad, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.exercise("ch2.cross_entropy_backward", points=1)
def test_cross_entropy_sum_and_none_pass_gradcheck():
    rng = minigrad.get_rng()
    x = minigrad.tensor(rng.standard_normal((4, 6)), requires_grad=True)
    t = rng.integers(0, 6, 4)
    assert minigrad.gradcheck(lambda v: F.cross_entropy(v, t, reduction="sum"), x)
    assert minigrad.gradcheck(lambda v: F.cross_entropy(v, t, reduction="none"), x)


# ----------------------------------------------------------------------------- layer norm
@pytest.mark.exercise("ch2.layer_norm_backward", points=2)
def test_layer_norm_backward_passes_gradcheck():
    rng = minigrad.get_rng()
    x = minigrad.tensor(rng.standard_normal((2, 3, 6)), requires_grad=True)
    w = minigrad.tensor(1 + 0.3 * rng.standard_normal(6), requires_grad=True)
    b = minigrad.tensor(rng.standard_normal(6), requires_grad=True)
    assert minigrad.gradcheck(lambda x, w, b: F.layer_norm(x, (6,), w, b), (x, w, b))


@pytest.mark.exercise("ch2.layer_norm_backward", points=1)
def test_layer_norm_input_grad_is_orthogonal_to_shifts_and_scales():
    """LayerNorm's output does not change when a row is shifted (x + c) and barely when it is
    scaled, so dx sums to zero along each row and is orthogonal to the centred row."""
    rng = minigrad.get_rng()
    x = minigrad.tensor(rng.standard_normal((5, 8)), requires_grad=True)
    x0 = x.data.copy()
    centred = x0 - x0.mean(axis=1, keepdims=True)       # from the input before the call
    F.layer_norm(x, (8,), eps=1e-12).backward(rng.standard_normal((5, 8)))
    np.testing.assert_array_equal(x.data, x0, err_msg="the backward must not change its input")
    np.testing.assert_allclose(x.grad.sum(axis=1), 0, atol=1e-10)
    np.testing.assert_allclose((x.grad * centred).sum(axis=1), 0, atol=1e-8)


# ----------------------------------------------------------------------------- SGD momentum
def _sgd_reference(p0, grads, lr, momentum, dampening=0.0, nesterov=False):
    """PyTorch's SGD written out: v_1 = g_1, v_t = mu v_{t-1} + (1 - dampening) g_t."""
    p, v = p0.copy(), None
    for g in grads:
        v = g.copy() if v is None else momentum * v + (1 - dampening) * g
        p = p - lr * (g + momentum * v if nesterov else v)
    return p


def _run_sgd(p0, grads, **kw):
    p = Parameter(p0.copy())
    opt = optim.SGD([p], **kw)
    for g in grads:
        p.grad = g.copy()
        opt.step()
    return p.data, opt


@pytest.mark.exercise("ch2.sgd_momentum", points=1)
def test_sgd_momentum_trajectory():
    rng = minigrad.get_rng()
    p0 = rng.standard_normal(10)
    grads = [rng.standard_normal(10) for _ in range(6)]
    got, opt = _run_sgd(p0, grads, lr=0.1, momentum=0.9)
    np.testing.assert_allclose(got, _sgd_reference(p0, grads, 0.1, 0.9), rtol=1e-12)
    assert opt.state_bytes() == p0.nbytes, "momentum keeps exactly one buffer per parameter"


# ----------------------------------------------------------------------------- Adam
@pytest.mark.exercise("ch2.adam_update", points=1)
def test_adam_first_step_moves_lr_against_the_gradient_sign():
    """Step 1: m_hat = g and v_hat = g^2, so the update is lr * g / (|g| + eps) ~ lr * sign(g)."""
    rng = minigrad.get_rng()
    g = rng.standard_normal(20)
    p0 = rng.standard_normal(20)
    p, m, v, g_in = p0.copy(), np.zeros(20), np.zeros(20), g.copy()
    adam_update(p, g_in, m, v, 1, 0.01, 0.9, 0.999, 1e-8)
    np.testing.assert_array_equal(g_in, g, err_msg="adam_update must not change the gradient")
    np.testing.assert_allclose(p, p0 - 0.01 * g / (np.abs(g) + 1e-8), rtol=1e-10)
    np.testing.assert_allclose(m, 0.1 * g, rtol=1e-12)
    np.testing.assert_allclose(v, 0.001 * g * g, rtol=1e-12)


def _adam_reference(p0, grads, lr, b1, b2, eps, wd=0.0, decoupled=False):
    """Kingma & Ba's Algorithm 1 with bias-corrected m_hat, v_hat (and AdamW's decay)."""
    p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    for t, g in enumerate(grads, start=1):
        if decoupled:
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


def _run(opt_cls, p0, grads, **kw):
    p = Parameter(p0.copy())
    opt = opt_cls([p], **kw)
    for g in grads:
        p.grad = g.copy()
        opt.step()
    return p.data


@pytest.mark.exercise("ch2.adam_update", points=1)
def test_adam_trajectory_matches_the_paper():
    rng = minigrad.get_rng()
    p0 = rng.standard_normal(12)
    grads = [rng.standard_normal(12) for _ in range(8)]
    got = _run(optim.Adam, p0, grads, lr=0.05, betas=(0.8, 0.95))
    np.testing.assert_allclose(got, _adam_reference(p0, grads, 0.05, 0.8, 0.95, 1e-8),
                               rtol=1e-9, atol=1e-12)


# BEGIN HIDDEN TESTS
@pytest.mark.exercise("ch2.cross_entropy_backward", points=1)
def test_cross_entropy_ignore_index_and_label_smoothing_gradcheck():
    rng = minigrad.get_rng()
    x = minigrad.tensor(rng.standard_normal((6, 4)), requires_grad=True)
    t = rng.integers(0, 4, 6)
    t[[1, 4]] = -100
    assert minigrad.gradcheck(lambda v: F.cross_entropy(v, t), x)
    assert minigrad.gradcheck(lambda v: F.cross_entropy(v, t, label_smoothing=0.2), x)
    F.cross_entropy(x, t).backward()
    assert np.all(x.grad[[1, 4]] == 0), "ignored rows must get no gradient"


@pytest.mark.exercise("ch2.layer_norm_backward", points=1)
def test_layer_norm_backward_two_normalized_dims_without_affine():
    rng = minigrad.get_rng()
    x = minigrad.tensor(rng.standard_normal((3, 2, 4)), requires_grad=True)
    w = minigrad.tensor(rng.standard_normal((2, 4)), requires_grad=True)
    assert minigrad.gradcheck(lambda x: F.layer_norm(x, (2, 4)), x)
    assert minigrad.gradcheck(lambda x, w: F.layer_norm(x, (2, 4), w), (x, w))


@pytest.mark.exercise("ch2.sgd_momentum", points=1)
def test_sgd_nesterov_and_dampening_trajectories():
    rng = minigrad.get_rng()
    p0 = rng.standard_normal(9)
    grads = [rng.standard_normal(9) for _ in range(5)]
    got, _ = _run_sgd(p0, grads, lr=0.05, momentum=0.8, nesterov=True)
    np.testing.assert_allclose(got, _sgd_reference(p0, grads, 0.05, 0.8, nesterov=True),
                               rtol=1e-12)
    got, _ = _run_sgd(p0, grads, lr=0.05, momentum=0.8, dampening=0.3)
    np.testing.assert_allclose(got, _sgd_reference(p0, grads, 0.05, 0.8, dampening=0.3),
                               rtol=1e-12)


@pytest.mark.exercise("ch2.adam_update", points=1)
def test_adamw_and_adam_weight_decay_trajectories():
    rng = minigrad.get_rng()
    p0 = rng.standard_normal(12)
    grads = [rng.standard_normal(12) for _ in range(6)]
    got = _run(optim.AdamW, p0, grads, lr=0.02, weight_decay=0.1)
    want = _adam_reference(p0, grads, 0.02, 0.9, 0.999, 1e-8, wd=0.1, decoupled=True)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    got = _run(optim.Adam, p0, grads, lr=0.02, weight_decay=0.1)
    want = _adam_reference(p0, grads, 0.02, 0.9, 0.999, 1e-8, wd=0.1)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
# END HIDDEN TESTS
