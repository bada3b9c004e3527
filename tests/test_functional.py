"""minigrad.functional: gradients against finite differences (float64), values
against NumPy references written here from the formulas, and PyTorch (when
installed) for forward and backward of each function and loss."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

import minigrad as mg
import minigrad.functional as F
from minigrad import gradcheck

FAST = settings(max_examples=15, deadline=None)


def leaf(shape, scale=1.0, requires_grad=True):
    return mg.tensor(scale * mg.get_rng().standard_normal(shape), requires_grad=requires_grad)


def labels(n, c):
    return mg.get_rng().integers(0, c, size=n)


def np_log_softmax(x, axis=-1):
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


# ----------------------------------------------------------------------------
# activations and softmax
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("approximate", ["none", "tanh"])
@FAST
@given(shape=array_shapes(min_dims=0, max_dims=3, max_side=3))
def test_gelu_value_and_gradient(approximate, shape):
    x = leaf(shape, scale=2.0)
    erf = np.vectorize(math.erf)
    if approximate == "none":
        ref = 0.5 * x.data * (1 + erf(x.data / math.sqrt(2)))
    else:
        ref = 0.5 * x.data * (1 + np.tanh(math.sqrt(2 / math.pi)
                                          * (x.data + 0.044715 * x.data ** 3)))
    np.testing.assert_allclose(F.gelu(x, approximate).data, ref, rtol=1e-12, atol=1e-15)
    gradcheck(lambda t: F.gelu(t, approximate), x)


def test_gelu_keeps_float32_and_rejects_unknown_mode():
    assert F.gelu(mg.randn(3)).dtype == np.float32
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh'"):
        F.gelu(mg.randn(3), approximate="fast")


@pytest.mark.parametrize("fn", [F.relu, F.sigmoid, F.tanh])
def test_activation_functions_match_methods(fn):
    x = leaf((2, 3))
    np.testing.assert_array_equal(fn(x).data, getattr(x, fn.__name__)().data)
    gradcheck(fn, x)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@FAST
@given(shape=array_shapes(min_dims=1, max_dims=3, max_side=4), data=st.data())
def test_softmax_family_value_and_gradient(name, shape, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = leaf(shape, scale=3.0)
    ref = np_log_softmax(x.data, dim)
    ref = np.exp(ref) if name == "softmax" else ref
    fn = getattr(F, name)
    np.testing.assert_allclose(fn(x, dim).data, ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(getattr(x, name)(dim).data, ref, rtol=1e-12, atol=1e-15)
    gradcheck(lambda t: fn(t, dim), x)


def test_softmax_is_finite_for_huge_logits():
    x = mg.tensor([[1000.0, 1000.0, -1000.0]])
    np.testing.assert_allclose(F.softmax(x).data, [[0.5, 0.5, 0.0]])
    np.testing.assert_allclose(F.log_softmax(x).data, [[-math.log(2), -math.log(2), -2000.0 - math.log(2)]])


# ----------------------------------------------------------------------------
# layers as functions
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("x_shape", [(3,), (2, 3), (2, 2, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_value_and_gradient(x_shape, bias):
    x, W = leaf(x_shape), leaf((4, 3))
    b = leaf((4,)) if bias else None
    ref = x.data @ W.data.T + (b.data if bias else 0)
    np.testing.assert_allclose(F.linear(x, W, b).data, ref, rtol=1e-12)
    gradcheck(lambda *ts: F.linear(*ts), (x, W, b) if bias else (x, W))


def test_linear_errors_name_shapes():
    with pytest.raises(ValueError, match=r"input of shape \(2, 5\).*weight of shape \(4, 3\)"):
        F.linear(mg.zeros(2, 5), mg.zeros(4, 3))
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\), got \(3,\)"):
        F.linear(mg.zeros(2, 3), mg.zeros(4, 3), mg.zeros(3))


def test_embedding_rows_and_repeated_ids_gradient():
    W = leaf((5, 3))
    ids = np.array([[1, 4, 1], [0, 1, 1]])
    np.testing.assert_array_equal(F.embedding(ids, W).data, W.data[ids])
    gradcheck(lambda w: F.embedding(mg.tensor(ids), w), W)
    W.grad = None
    F.embedding(ids, W).sum().backward()
    np.testing.assert_array_equal(W.grad[:, 0], np.bincount(ids.ravel(), minlength=5))
    with pytest.raises(IndexError, match=r"indices must be in \[0, 5\)"):
        F.embedding(np.array([5]), W)
    with pytest.raises(TypeError, match="integer indices"):
        F.embedding(np.array([1.0]), W)


@pytest.mark.parametrize("normalized_shape", [(4,), (3, 4)])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_value_and_gradient(normalized_shape, affine):
    x = leaf((2, 3, 4), scale=2.0)
    w = leaf(normalized_shape) if affine else None
    b = leaf(normalized_shape) if affine else None
    axes = tuple(range(3 - len(normalized_shape), 3))
    mu = x.data.mean(axis=axes, keepdims=True)
    ref = (x.data - mu) / np.sqrt(x.data.var(axis=axes, keepdims=True) + 1e-5)
    if affine:
        ref = ref * w.data + b.data
    np.testing.assert_allclose(F.layer_norm(x, normalized_shape, w, b).data, ref, rtol=1e-10)
    inputs = (x, w, b) if affine else (x,)
    gradcheck(lambda t, *wb: F.layer_norm(t, normalized_shape, *wb), inputs)


def test_layer_norm_shape_errors():
    with pytest.raises(ValueError, match=r"normalized_shape \(3,\).*input shape \(2, 4\)"):
        F.layer_norm(mg.zeros(2, 4), 3)
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\)"):
        F.layer_norm(mg.zeros(2, 4), 4, weight=mg.ones(3))


@pytest.mark.parametrize("affine", [True, False])
def test_rms_norm_value_and_gradient(affine):
    x = leaf((3, 5), scale=2.0)
    w = leaf((5,)) if affine else None
    eps = 1e-6
    ref = x.data / np.sqrt((x.data ** 2).mean(-1, keepdims=True) + eps) * (w.data if affine else 1)
    np.testing.assert_allclose(F.rms_norm(x, 5, w, eps).data, ref, rtol=1e-12)
    gradcheck(lambda t, *ws: F.rms_norm(t, 5, *ws, eps=eps), (x, w) if affine else (x,))
    with pytest.raises(ValueError, match=r"rms_norm: weight must have shape \(5,\)"):
        F.rms_norm(x, 5, mg.ones(4))


def test_dropout_gradient_with_a_fixed_mask():
    x = leaf((4, 5))

    def fn(t):
        mg.manual_seed(7)  # the same mask on every call, so finite differences see one function
        return F.dropout(t, 0.3)
    gradcheck(fn, x)


def test_dropout_statistics_and_modes():
    x = mg.ones(200, 100)
    y = F.dropout(x, 0.25).data
    zero = y == 0
    assert abs(zero.mean() - 0.25) < 0.02                      # ~p of the entries dropped
    np.testing.assert_allclose(y[~zero], 1 / 0.75, rtol=1e-6)  # survivors scaled by 1/(1-p)
    assert F.dropout(x, 0.25, training=False) is x
    assert F.dropout(x, 0.0) is x
    assert not F.dropout(x, 1.0).data.any()
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\], got 1.5"):
        F.dropout(x, 1.5)


@FAST
@given(n=st.integers(1, 3), d=st.integers(1, 4))
def test_cosine_similarity_value_and_gradient(n, d):
    a, b = leaf((n, d)), leaf((n, d))
    ref = (a.data * b.data).sum(1) / (np.linalg.norm(a.data, axis=1) * np.linalg.norm(b.data, axis=1))
    np.testing.assert_allclose(F.cosine_similarity(a, b).data, ref, rtol=1e-12)
    gradcheck(lambda u, v: F.cosine_similarity(u, v, dim=1), (a, b))


def test_cosine_similarity_of_a_zero_vector_is_zero_with_finite_gradient():
    a = mg.tensor(np.zeros((1, 3)), requires_grad=True)
    b = leaf((1, 3))
    cos = F.cosine_similarity(a, b)
    np.testing.assert_array_equal(cos.data, [0.0])
    cos.sum().backward()
    assert np.all(np.isfinite(a.grad)) and np.all(np.isfinite(b.grad))


def test_cosine_embedding_loss_gradient():
    a, b = leaf((4, 3)), leaf((4, 3))
    y = np.array([1, -1, 1, -1])
    gradcheck(lambda u, v: F.cosine_embedding_loss(u, v, y, margin=-0.5), (a, b))


# ----------------------------------------------------------------------------
# losses
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("ignore", [False, True])
def test_cross_entropy_value_and_gradient(reduction, label_smoothing, ignore):
    N, C = 5, 4
    x, t = leaf((N, C), scale=2.0), labels(N, C)
    if ignore:
        t[[1, 3]] = -100
    valid = t != -100
    logp = np_log_softmax(x.data)
    per = -(1 - label_smoothing) * logp[np.arange(N), np.where(valid, t, 0)] \
        - label_smoothing * logp.mean(1)
    per = np.where(valid, per, 0.0)
    ref = {"none": per, "sum": per.sum(), "mean": per.sum() / valid.sum()}[reduction]
    kw = dict(reduction=reduction, label_smoothing=label_smoothing)
    np.testing.assert_allclose(F.cross_entropy(x, t, **kw).data, ref, rtol=1e-12)
    gradcheck(lambda z: F.cross_entropy(z, mg.tensor(t), **kw), x)


def test_cross_entropy_single_sample_and_stability():
    x = leaf((4,))
    ref = -np_log_softmax(x.data)[2]
    np.testing.assert_allclose(F.cross_entropy(x, 2).data, ref, rtol=1e-12)
    assert F.cross_entropy(x, 2, reduction="none").shape == ()
    gradcheck(lambda z: F.cross_entropy(z, 2), x)
    big = mg.tensor([[1e4, -1e4, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(F.cross_entropy(big, [1]).data, 2e4, rtol=1e-6)


def test_cross_entropy_errors():
    x = mg.zeros(3, 4)
    with pytest.raises(TypeError, match="integer class indices, got dtype float"):
        F.cross_entropy(x, np.zeros(3))
    with pytest.raises(IndexError, match=r"target values must be in \[0, 4\)"):
        F.cross_entropy(x, [0, 1, 4])
    with pytest.raises(ValueError, match=r"target shape \(2,\).*input shape \(3, 4\)"):
        F.cross_entropy(x, [0, 1])
    with pytest.raises(ValueError, match="reshape \\(B, T, C\\)"):
        F.cross_entropy(mg.zeros(2, 3, 4), np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="reduction must be"):
        F.cross_entropy(x, [0, 1, 2], reduction="avg")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_is_cross_entropy_after_log_softmax(reduction):
    x, t = leaf((5, 3)), labels(5, 3)
    t[0] = -100
    np.testing.assert_allclose(F.nll_loss(F.log_softmax(x), t, reduction=reduction).data,
                               F.cross_entropy(x, t, reduction=reduction).data, rtol=1e-12)
    gradcheck(lambda z: F.nll_loss(z, t, reduction=reduction), x)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_value_and_gradient(reduction):
    a, b = leaf((3, 4)), leaf((3, 4))
    sq = (a.data - b.data) ** 2
    ref = {"mean": sq.mean(), "sum": sq.sum(), "none": sq}[reduction]
    np.testing.assert_allclose(F.mse_loss(a, b, reduction=reduction).data, ref, rtol=1e-12)
    gradcheck(lambda u, v: F.mse_loss(u, v, reduction=reduction), (a, b))
    with pytest.raises(ValueError, match=r"input shape \(3, 4\) and target shape \(4,\)"):
        F.mse_loss(a, leaf((4,)))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits_value_and_gradient(reduction):
    x = leaf((3, 4), scale=3.0)
    y = mg.tensor(mg.get_rng().random((3, 4)), requires_grad=True)  # soft targets in [0, 1]
    s = 1 / (1 + np.exp(-x.data))
    per = -(y.data * np.log(s) + (1 - y.data) * np.log(1 - s))
    ref = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    out = F.binary_cross_entropy_with_logits(x, y, reduction=reduction)
    np.testing.assert_allclose(out.data, ref, rtol=1e-10)
    gradcheck(lambda u, v: F.binary_cross_entropy_with_logits(u, v, reduction=reduction), (x, y))


def test_bce_with_logits_at_zero_and_at_extremes():
    x = mg.tensor([0.0, 0.0, 800.0, -800.0], requires_grad=True)
    y = mg.tensor([0.0, 1.0, 0.0, 1.0])
    loss = F.binary_cross_entropy_with_logits(x, y, reduction="sum")
    np.testing.assert_allclose(loss.data, 2 * math.log(2) + 1600, rtol=1e-6)  # finite
    loss.backward()
    np.testing.assert_allclose(x.grad, [0.5, -0.5, 1.0, -1.0])  # sigmoid(x) - y, even at 0


# ----------------------------------------------------------------------------
# PyTorch as a second oracle (float64, forward and backward)
# ----------------------------------------------------------------------------

def _torch_case(name, torch):
    """(minigrad fn, torch fn, input shapes, integer target or None) for each case."""
    tF = torch.nn.functional
    t = labels(6, 5)
    t[2] = -100
    tt = torch.tensor(t)
    cases = {
        "gelu": (F.gelu, tF.gelu, [(3, 4)]),
        "gelu_tanh": (lambda x: F.gelu(x, "tanh"), lambda x: tF.gelu(x, approximate="tanh"),
                      [(3, 4)]),
        "softmax": (lambda x: F.softmax(x, 0), lambda x: tF.softmax(x, 0), [(3, 4)]),
        "log_softmax": (F.log_softmax, lambda x: tF.log_softmax(x, -1), [(3, 4)]),
        "linear": (F.linear, tF.linear, [(2, 3, 4), (5, 4), (5,)]),
        "layer_norm": (lambda x, w, b: F.layer_norm(x, (3, 4), w, b),
                       lambda x, w, b: tF.layer_norm(x, (3, 4), w, b), [(2, 3, 4), (3, 4), (3, 4)]),
        "rms_norm": (lambda x, w: F.rms_norm(x, (4,), w), lambda x, w: tF.rms_norm(x, (4,), w),
                     [(3, 4), (4,)]),
        "rms_norm_eps": (lambda x: F.rms_norm(x, 4, eps=1e-3),
                         lambda x: tF.rms_norm(x, (4,), eps=1e-3), [(3, 4)]),
        "cross_entropy": (lambda x: F.cross_entropy(x, t, label_smoothing=0.1),
                          lambda x: tF.cross_entropy(x, tt, label_smoothing=0.1), [(6, 5)]),
        "cross_entropy_sum": (lambda x: F.cross_entropy(x, t, reduction="sum"),
                              lambda x: tF.cross_entropy(x, tt, reduction="sum"), [(6, 5)]),
        "nll_loss": (lambda x: F.nll_loss(x, t), lambda x: tF.nll_loss(x, tt), [(6, 5)]),
        "mse_loss": (F.mse_loss, tF.mse_loss, [(3, 4), (3, 4)]),
        "bce_with_logits": (lambda x, y: F.binary_cross_entropy_with_logits(x, y.sigmoid()),
                            lambda x, y: tF.binary_cross_entropy_with_logits(x, y.sigmoid()),
                            [(3, 4), (3, 4)]),
        "cosine_similarity": (lambda a, b: F.cosine_similarity(a, b, dim=-1),
                              lambda a, b: tF.cosine_similarity(a, b, dim=-1), [(3, 4), (3, 4)]),
    }
    return cases[name]


@pytest.mark.parametrize("name", [
    "gelu", "gelu_tanh", "softmax", "log_softmax", "linear", "layer_norm", "rms_norm",
    "rms_norm_eps", "cross_entropy", "cross_entropy_sum", "nll_loss", "mse_loss",
    "bce_with_logits", "cosine_similarity"])
def test_matches_torch(name):
    torch = pytest.importorskip("torch")
    ours_fn, torch_fn, shapes = _torch_case(name, torch)
    arrays = [mg.get_rng().standard_normal(s) for s in shapes]
    ours = [mg.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out_o, out_t = ours_fn(*ours), torch_fn(*theirs)
    np.testing.assert_allclose(out_o.data, out_t.detach().numpy(), rtol=1e-10, atol=1e-13)
    g = mg.get_rng().standard_normal(out_o.shape)
    out_o.backward(g)
    out_t.backward(torch.tensor(g))
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(o.grad, t.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_embedding_matches_torch():
    torch = pytest.importorskip("torch")
    W = mg.get_rng().standard_normal((6, 3))
    ids = np.array([[0, 5, 5], [2, 0, 5]])
    ours, theirs = mg.tensor(W, requires_grad=True), torch.tensor(W, requires_grad=True)
    g = mg.get_rng().standard_normal((2, 3, 3))
    F.embedding(ids, ours).backward(g)
    torch.nn.functional.embedding(torch.tensor(ids), theirs).backward(torch.tensor(g))
    np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=1e-12)
