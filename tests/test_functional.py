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
    with pytest.raises(ValueError, match=r"class-probability target of shape \(3,\)"):
        F.cross_entropy(x, np.zeros(3))  # a float target holds probabilities, shaped as x
    with pytest.raises(TypeError, match="integer class indices or float"):
        F.cross_entropy(x, np.zeros(3, dtype=complex))
    with pytest.raises(IndexError, match=r"target values must be in \[0, 4\)"):
        F.cross_entropy(x, [0, 1, 4])
    with pytest.raises(ValueError, match=r"target shape \(2,\).*input shape \(3, 4\)"):
        F.cross_entropy(x, [0, 1])
    with pytest.raises(ValueError, match="class dim is 1"):
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


# ----------------------------------------------------------------------------
# losses as torch has them (issue 12): values and gradients against torch,
# gradcheck in float64, reductions, ignore_index, empty batches
# ----------------------------------------------------------------------------

def _torch_loss_and_grads(torch_fn, arrays, grad_of):
    torch = pytest.importorskip("torch")
    ts = [torch.tensor(a, requires_grad=(i in grad_of)) if a is not None else None
          for i, a in enumerate(arrays)]
    out = torch_fn(*ts)
    out.backward(torch.ones_like(out))
    return out.detach().numpy(), [ts[i].grad.numpy() for i in grad_of]


def _ours_loss_and_grads(fn, arrays, grad_of):
    ts = [mg.tensor(a, requires_grad=(i in grad_of)) if a is not None else None
          for i, a in enumerate(arrays)]
    out = fn(*ts)
    out.backward(np.ones(out.shape))
    return out.data, [ts[i].grad for i in grad_of]


def assert_matches_torch(ours_fn, torch_name, arrays, grad_of, **kw):
    """Our loss and its gradients equal torch's: same shape (the reduction), same values."""
    torch = pytest.importorskip("torch")
    tfn = getattr(torch.nn.functional, torch_name)
    tkw = {k: (torch.tensor(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    mkw = {k: (mg.tensor(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    want, want_g = _torch_loss_and_grads(lambda *t: tfn(*t, **tkw), arrays, grad_of)
    got, got_g = _ours_loss_and_grads(lambda *t: ours_fn(*t, **mkw), arrays, grad_of)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    for a, b in zip(got_g, want_g):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


RNG = np.random.default_rng(12)
W5 = RNG.uniform(0.2, 2.0, 5)


@pytest.mark.torch
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", ["2d", "spatial", "weight", "weight_smooth", "spatial_weight_ignore",
                                  "1d"])
def test_cross_entropy_class_indices_match_torch(case, reduction):
    x = RNG.standard_normal((4, 5, 3, 2)) if "spatial" in case else RNG.standard_normal((6, 5))
    if case == "1d":
        x = RNG.standard_normal(5)
    t = RNG.integers(0, 5, x.shape[:1] + x.shape[2:] if x.ndim > 1 else ())
    kw = dict(reduction=reduction)
    if "weight" in case:
        kw["weight"] = W5
    if "smooth" in case:
        kw["label_smoothing"] = 0.3
    if "ignore" in case:
        t.reshape(-1)[::3] = -100
    assert_matches_torch(F.cross_entropy, "cross_entropy", [x, t], [0], **kw)


@pytest.mark.torch
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_class_probabilities_match_torch(reduction):
    x = RNG.standard_normal((3, 5, 2))
    y = RNG.dirichlet(np.ones(5), (3, 2)).transpose(0, 2, 1).copy()  # (3, 5, 2), sums to 1 over dim 1
    assert_matches_torch(F.cross_entropy, "cross_entropy", [x, y], [0, 1], reduction=reduction)
    assert_matches_torch(F.cross_entropy, "cross_entropy", [x, y], [0], reduction=reduction,
                         weight=W5, label_smoothing=0.2)


def test_cross_entropy_gradcheck_weights_spatial_and_probabilities():
    x = leaf((3, 4, 2))
    t = mg.get_rng().integers(0, 4, (3, 2))
    t[0, 0] = -1
    w = np.array([0.5, 1.0, 2.0, 0.25])
    for red in ("mean", "sum", "none"):
        gradcheck(lambda v, red=red: F.cross_entropy(v, t, w, reduction=red, ignore_index=-1,
                                            label_smoothing=0.1), x)
    y = mg.tensor(mg.get_rng().dirichlet(np.ones(4), 3), requires_grad=True)
    gradcheck(lambda v, p: F.cross_entropy(v, p, w, label_smoothing=0.2), (leaf((3, 4)), y))


def test_cross_entropy_spatial_equals_the_flattened_rows():
    x = leaf((2, 3, 4))
    t = mg.get_rng().integers(0, 3, (2, 4))
    flat = F.cross_entropy(x.permute(0, 2, 1).reshape(-1, 3), t.reshape(-1), reduction="none")
    np.testing.assert_allclose(F.cross_entropy(x, t, reduction="none").data,
                               flat.data.reshape(2, 4), rtol=1e-12)


@pytest.mark.parametrize("weight", [None, np.array([1.0, 2.0, 3.0])])
def test_cross_entropy_and_nll_of_an_empty_batch_are_nan_for_the_mean(weight):
    x, t = mg.zeros(0, 3, dtype=np.float64), np.zeros(0, dtype=np.int64)
    for fn in (F.cross_entropy, F.nll_loss):
        assert np.isnan(fn(x, t, weight).item())
        assert fn(x, t, weight, reduction="sum").item() == 0.0
        assert fn(x, t, weight, reduction="none").shape == (0,)
    # every row ignored: also 0/0
    assert np.isnan(F.cross_entropy(mg.zeros(2, 3), [-100, -100]).item())
    assert np.isnan(F.nll_loss(mg.zeros(2, 3), [-100, -100]).item())


@pytest.mark.torch
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_weight_ignore_and_spatial_match_torch(reduction):
    x = np_log_softmax(RNG.standard_normal((6, 5)), axis=1)
    t = RNG.integers(0, 5, 6)
    t[2] = 7
    assert_matches_torch(F.nll_loss, "nll_loss", [x, t], [0], weight=W5, ignore_index=7, reduction=reduction)
    xs = RNG.standard_normal((2, 5, 3))
    ts = RNG.integers(0, 5, (2, 3))
    assert_matches_torch(F.nll_loss, "nll_loss", [xs, ts], [0], weight=W5, reduction=reduction)
    assert_matches_torch(F.nll_loss, "nll_loss", [RNG.standard_normal(5), np.array(2)], [0], reduction=reduction)


def test_weighted_mean_divides_by_the_sum_of_target_weights():
    x = mg.tensor(np.log(np.full((3, 2), 0.5)))  # every -log p = log 2
    w = np.array([1.0, 3.0])
    got = F.nll_loss(x, [0, 1, 1], w).item()
    assert got == pytest.approx(-np.log(0.5) * (1 + 3 + 3) / (1 + 3 + 3))
    x2 = mg.tensor([[0.0, -1.0], [-2.0, 0.0]], dtype=np.float64)
    assert F.nll_loss(x2, [1, 0], w).item() == pytest.approx((3 * 1.0 + 1 * 2.0) / 4)


@pytest.mark.torch
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_cross_entropy_matches_torch(reduction):
    p = RNG.uniform(0.02, 0.98, (4, 3))
    y = RNG.uniform(0, 1, (4, 3))
    assert_matches_torch(F.binary_cross_entropy, "binary_cross_entropy", [p, y], [0, 1], reduction=reduction)
    assert_matches_torch(F.binary_cross_entropy, "binary_cross_entropy", [p, y], [0], reduction=reduction,
                         weight=RNG.uniform(0.5, 2, 3))
    # at 0 and 1 the logs are clamped at -100 and the gradient's denominator at 1e-12
    edge = np.array([0.0, 1.0, 0.0, 1.0])
    assert_matches_torch(F.binary_cross_entropy, "binary_cross_entropy", [edge, np.array([1.0, 0.0, 0.0, 1.0])],
                         [0], reduction=reduction)


def test_binary_cross_entropy_gradcheck_and_bad_input():
    p = mg.tensor(mg.get_rng().uniform(0.1, 0.9, (3, 2)), requires_grad=True)
    y = mg.tensor(mg.get_rng().uniform(0, 1, (3, 2)), requires_grad=True)
    gradcheck(lambda a, b: F.binary_cross_entropy(a, b, np.array([0.5, 2.0])), (p, y))
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        F.binary_cross_entropy(mg.tensor([1.5]), mg.tensor([1.0]))
    with pytest.raises(ValueError, match="shape"):
        F.binary_cross_entropy(mg.tensor([0.5, 0.5]), mg.tensor([1.0]))


@pytest.mark.torch
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits_pos_weight_matches_torch(reduction):
    x = RNG.standard_normal((4, 3)) * 3
    x[0, 0], x[1, 1] = 0.0, 40.0   # the kink of the rewritten form, and a huge logit
    y = RNG.uniform(0, 1, (4, 3))
    pw = RNG.uniform(0.5, 3.0, 3)
    w = RNG.uniform(0.5, 2.0, (4, 1))
    fn = F.binary_cross_entropy_with_logits
    assert_matches_torch(fn, "binary_cross_entropy_with_logits", [x, y], [0, 1], reduction=reduction, pos_weight=pw)
    assert_matches_torch(fn, "binary_cross_entropy_with_logits", [x, y], [0, 1], reduction=reduction,
                         pos_weight=pw, weight=w)
    assert_matches_torch(fn, "binary_cross_entropy_with_logits", [x, y], [0, 1], reduction=reduction, weight=w)


def test_bce_with_logits_pos_weight_gradcheck_and_pos_weight_one_is_plain():
    x, y = leaf((3, 2)), mg.tensor(mg.get_rng().uniform(0, 1, (3, 2)), requires_grad=True)
    pw = mg.tensor(np.array([0.5, 3.0]), requires_grad=True)
    gradcheck(lambda a, b, p: F.binary_cross_entropy_with_logits(a, b, pos_weight=p), (x, y, pw))
    plain = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    ones = F.binary_cross_entropy_with_logits(x, y, reduction="none", pos_weight=np.ones(2))
    np.testing.assert_allclose(ones.data, plain.data, rtol=1e-12)
    # pos_weight p on a positive target is p times its loss
    x1 = mg.tensor([0.3], dtype=np.float64)
    one = mg.tensor([1.0], dtype=np.float64)
    np.testing.assert_allclose(
        F.binary_cross_entropy_with_logits(x1, one, pos_weight=np.array([2.5])).item(),
        2.5 * F.binary_cross_entropy_with_logits(x1, one).item(), rtol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("float_mask", [False, True])
def test_sdpa_with_attn_mask_and_is_causal_applies_both_as_torch_does(float_mask):
    """torch 2.13's CPU SDPA on 4-D inputs applies the mask and the causal triangle
    together (its documentation says it raises); minigrad does the same, values and
    gradients, and so does naive_attention."""
    torch = pytest.importorskip("torch")
    from minigrad.nn.attention import naive_attention

    q, k, v = (RNG.standard_normal(s) for s in ((2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 4)))
    mask = RNG.standard_normal((3, 5)) if float_mask else RNG.uniform(size=(3, 5)) > 0.4
    mask_t = torch.tensor(mask)
    qt, kt, vt = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    want = torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask_t,
                                                            is_causal=True)
    causal = torch.ones(3, 5, dtype=torch.bool).tril()
    folded = (mask_t & causal) if not float_mask else \
        mask_t.masked_fill(~causal, float("-inf"))
    assert torch.allclose(want, torch.nn.functional.scaled_dot_product_attention(
        qt, kt, vt, attn_mask=folded), atol=1e-12)          # torch really applied both
    want.sum().backward()
    qm, km, vm = (mg.tensor(a, requires_grad=True) for a in (q, k, v))
    got = F.scaled_dot_product_attention(qm, km, vm, attn_mask=mask, is_causal=True)
    got.sum().backward()
    np.testing.assert_allclose(got.data, want.detach().numpy(), rtol=1e-10, atol=1e-12)
    for a, b in ((qm, qt), (km, kt), (vm, vt)):
        np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=1e-9, atol=1e-12)
    naive, _ = naive_attention(mg.tensor(q), mg.tensor(k), mg.tensor(v), attn_mask=mask,
                               is_causal=True)
    np.testing.assert_allclose(naive.data, want.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_loss_argument_errors_name_the_argument():
    x = mg.zeros(3, 4)
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\)"):
        F.cross_entropy(x, [0, 1, 2], np.ones(3))
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\)"):
        F.nll_loss(x, [0, 1, 2], np.ones(5))
    with pytest.raises(ValueError, match="got a scalar"):
        F.cross_entropy(mg.tensor(1.0), np.array(0))
    with pytest.raises(ValueError, match="got a scalar"):
        F.nll_loss(mg.tensor(1.0), np.array(0))
    with pytest.raises(ValueError, match=r"expected target of shape \(3,\)"):
        F.nll_loss(x, [0, 1])
    with pytest.raises(ValueError, match="pos_weight of shape"):
        F.binary_cross_entropy_with_logits(x, x, pos_weight=np.ones(3))
    with pytest.raises(ValueError, match="would enlarge"):
        F.binary_cross_entropy_with_logits(x, x, pos_weight=np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="shape"):
        F.binary_cross_entropy_with_logits(x, mg.zeros(3, 3))


def _sdpa_composed(q, k, v, keep=None):
    """softmax(Q K^T / sqrt(E)) (times a dropout mask) V, from Tensor ops: the reference."""
    P = F.softmax(q @ k.mT * (1.0 / math.sqrt(q.shape[-1])), dim=-1)
    return (P if keep is None else P * mg.tensor(keep)) @ v


def test_sdpa_dropout_gradient_uses_the_same_mask_as_the_forward():
    shapes = ((2, 3, 4), (2, 5, 4), (2, 5, 3))
    q, k, v = (leaf(s) for s in shapes)
    p = 0.4
    mg.manual_seed(7)
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
    out.backward(np.ones(out.shape))
    grads = [t.grad for t in (q, k, v)]
    mg.manual_seed(7)  # the same draw: one uniform per attention weight
    keep = (mg.get_rng().random((2, 3, 5)) >= p) / (1.0 - p)
    q2, k2, v2 = (mg.tensor(t.data, requires_grad=True) for t in (q, k, v))
    ref = _sdpa_composed(q2, k2, v2, keep)
    ref.backward(np.ones(ref.shape))
    np.testing.assert_allclose(out.data, ref.data, rtol=1e-12)
    for g, t in zip(grads, (q2, k2, v2)):
        np.testing.assert_allclose(g, t.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("lead", [(), (2,)])
def test_sdpa_gqa_with_and_without_a_batch_dim_equals_repeated_heads(lead):
    q = leaf(lead + (4, 3, 5))
    k, v = leaf(lead + (2, 6, 5)), leaf(lead + (2, 6, 3))
    out = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    ref = _sdpa_composed(q, F.repeat_kv(k, 2), F.repeat_kv(v, 2))
    np.testing.assert_allclose(out.data, ref.data, rtol=1e-12)
    gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, enable_gqa=True), (q, k, v))
