"""Edge cases of minigrad's PyTorch-named API, with torch as the oracle: the inputs
where a NumPy-based implementation drifts from torch unless it is told not to
(empty dim tuples, ties and NaNs in the gradient of max, zero bases of pow, 0-d
operands in type promotion, overflowing sums, shared modules in a state_dict).
Each case compares values, gradients, dtypes and shapes, or checks that minigrad
raises where torch gives a different kind of answer than minigrad could."""

import numpy as np
import pytest

import minigrad as mg
from minigrad import functional as F
from minigrad import nn, optim

torch = pytest.importorskip("torch")

NAN, INF = float("nan"), float("inf")


def _pair(values, dtype=np.float32):
    """The same leaf in minigrad and in torch."""
    a = np.asarray(values, dtype=dtype)
    return mg.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)


def _weights(shape, dtype=np.float32):
    """Distinct output weights, so a gradient that lands on the wrong element shows."""
    return np.arange(1, int(np.prod(shape)) + 1, dtype=dtype).reshape(shape)


def _assert_same(ours: mg.Tensor, theirs, x: mg.Tensor, tx):
    """Values, dtype and shape of the outputs, then the gradients of sum(w * out)."""
    want = theirs.detach().numpy()
    assert ours.shape == want.shape and str(theirs.dtype) == f"torch.{ours.dtype}"
    np.testing.assert_allclose(ours.data, want, rtol=1e-6, atol=1e-7)
    w = _weights(want.shape, want.dtype)
    (ours * mg.tensor(w)).sum().backward()
    (theirs * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------
# reductions: dim=(), dim tuples, ties, overflow
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["sum", "mean", "amax", "amin", "var", "std"])
@pytest.mark.parametrize("dim", [(), []])
def test_an_empty_dim_list_reduces_every_dim(op, dim):
    x, tx = _pair(np.arange(6.0).reshape(2, 3) ** 2)
    if op in ("sum", "mean", "amax", "amin"):
        _assert_same(getattr(x, op)(dim=dim), getattr(tx, op)(dim=dim), x, tx)
        return
    # var/std: torch's forward reduces every dim but its backward divides by 1 - 1
    # (inf); ours is the gradient of the full reduction it computed
    ours = getattr(x, op)(dim=dim)
    np.testing.assert_allclose(ours.data, getattr(tx, op)(dim=dim).detach().numpy(), rtol=1e-6)
    ours.backward()
    getattr(tx, op)().backward()
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-6)


def test_reductions_over_dim_tuples_with_negative_dims_and_keepdim():
    data = np.random.default_rng(0).standard_normal((2, 3, 4))
    for op in ("sum", "mean", "amax", "var", "std"):
        for dim, keepdim in (((0, -1), True), ((-2,), False), ((2, 0, 1), False)):
            x, tx = _pair(data)
            _assert_same(getattr(x, op)(dim, keepdim=keepdim),
                         getattr(tx, op)(dim, keepdim=keepdim), x, tx)


def test_a_dim_listed_twice_raises():
    with pytest.raises(ValueError, match="more than once"):
        mg.ones(2, 3).sum((0, -2))
    with pytest.raises(RuntimeError):
        torch.ones(2, 3).sum((0, -2))


def test_logsumexp_of_an_empty_dim_list_raises_as_torch():
    with pytest.raises(RuntimeError):
        torch.ones(2, 3).logsumexp(())
    with pytest.raises(ValueError, match="at least one dimension"):
        mg.ones(2, 3).logsumexp(())


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.int8, np.int32])
def test_integer_sums_are_int64(dtype):
    a = np.array([[1, 0, 1], [1, 1, 1]], dtype=dtype)
    for dim in (None, 1):
        ours, theirs = mg.tensor(a).sum(dim), torch.from_numpy(a).sum(dim)
        assert str(theirs.dtype) == f"torch.{ours.dtype}"
        np.testing.assert_array_equal(ours.data, theirs.numpy())


def test_var_and_std_do_not_overflow_where_torch_does_not():
    # the plain mean of three 3e38 (float32) overflows to inf, and var to inf or nan
    x, tx = _pair([[3e38, 3e38, 3e38], [1e19, -1e19, 0.0]])
    np.testing.assert_allclose(x.var(1).data, tx.var(1).detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(x.std(1).data, tx.std(1).detach().numpy(), rtol=1e-6)
    assert np.all(np.isfinite(x.var(1).data))


def test_std_of_a_constant_row_has_a_zero_gradient():
    x, tx = _pair([[2.0, 2.0, 2.0], [1.0, 2.0, 4.0]])
    _assert_same(x.std(1), tx.std(1), x, tx)
    assert np.all(np.isfinite(x.grad))


@pytest.mark.parametrize("op", ["max", "min"])
def test_max_and_min_along_a_dim_with_ties_and_nans(op):
    # ties: the first index, and all the gradient there; NaN: wins, index and gradient
    data = [[1.0, 3.0, 3.0], [NAN, 1.0, 1.0], [2.0, NAN, NAN], [-1.0, -1.0, 5.0]]
    for dim, keepdim in ((1, False), (-1, True), (0, False)):
        x, tx = _pair(data)
        ours, theirs = getattr(x, op)(dim, keepdim=keepdim), getattr(tx, op)(dim, keepdim=keepdim)
        np.testing.assert_array_equal(ours.indices.data, theirs.indices.numpy())
        _assert_same(ours.values, theirs.values, x, tx)


def test_argmax_and_argmin_ties_nans_and_keepdim_without_dim():
    a = np.array([[1.0, 5.0, 5.0], [NAN, 0.0, 0.0], [-2.0, -2.0, 7.0]], np.float32)
    x, tx = mg.tensor(a), torch.tensor(a)
    for name in ("argmax", "argmin"):
        for kw in ({}, {"dim": 1}, {"dim": 0, "keepdim": True}, {"keepdim": True}):
            ours, theirs = getattr(x, name)(**kw), getattr(tx, name)(**kw)
            assert ours.shape == tuple(theirs.shape), (name, kw)
            np.testing.assert_array_equal(ours.data, theirs.numpy())


def test_max_with_a_tensor_is_maximum_and_a_dim_tuple_raises():
    a, b = np.array([1.0, 5.0, 2.0], np.float32), np.array([3.0, 5.0, 0.0], np.float32)
    for op in ("max", "min"):
        x, tx = _pair(a)
        _assert_same(getattr(x, op)(mg.tensor(b)), getattr(tx, op)(torch.tensor(b)), x, tx)
        with pytest.raises(TypeError):
            getattr(torch.ones(2, 2), op)((0, 1))
        with pytest.raises(TypeError, match="single int"):
            getattr(mg.ones(2, 2), op)((0, 1))


@pytest.mark.parametrize("fn", ["maximum", "minimum"])
def test_maximum_and_minimum_gradient_at_nan_and_ties(fn):
    a, b = [NAN, 1.0, 2.0, 4.0, -1.0], [1.0, NAN, 2.0, 3.0, 0.0]
    (x, tx), (y, ty) = _pair(a), _pair(b)
    out, tout = getattr(mg, fn)(x, y), getattr(torch, fn)(tx, ty)
    np.testing.assert_array_equal(out.data, tout.detach().numpy())
    out.backward(_weights(5)), tout.backward(torch.tensor(_weights(5)))
    np.testing.assert_array_equal(x.grad, tx.grad.numpy())
    np.testing.assert_array_equal(y.grad, ty.grad.numpy())


# ----------------------------------------------------------------------------
# shapes
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("dim", [(0, 2), (-1, 0), (1,), (), 2, (3, 1)])
def test_squeeze_with_a_tuple_of_dims(dim):
    x, tx = _pair(np.arange(2.0).reshape(1, 2, 1, 1))
    _assert_same(x.squeeze(dim), tx.squeeze(dim), x, tx)


def test_gradients_through_transposes_and_middle_broadcasts():
    rng = np.random.default_rng(1)
    x, tx = _pair(rng.standard_normal((2, 1, 4)))
    other = rng.standard_normal((3, 2, 5, 4)).astype(np.float32)
    _assert_same((x * mg.tensor(other)).transpose(0, 3).sum(2),
                 (tx * torch.tensor(other)).transpose(0, 3).sum(2), x, tx)
    x, tx = _pair(rng.standard_normal((3, 4)))
    _assert_same(F.softmax(x.T * x.T, 0) + x.T, torch.softmax(tx.T * tx.T, 0) + tx.T, x, tx)


@pytest.mark.parametrize("op", ["abs", "relu", "sigmoid", "tanh", "exp"])
def test_elementwise_gradients_at_nan_zero_and_infinity(op):
    # torch passes relu's gradient through a NaN (not x <= 0) and gives abs a zero one (sgn)
    x, tx = _pair([NAN, 0.0, -0.0, 1.0, -2.0, INF, -INF])
    out, tout = getattr(x, op)(), getattr(tx, op)()
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-6)  # nan == nan here
    out.backward(_weights(7)), tout.backward(torch.tensor(_weights(7)))
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-6)


# ----------------------------------------------------------------------------
# pow at zero
# ----------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # 0 ** -1 = inf, as in torch
def test_pow_with_a_tensor_exponent_has_torchs_gradient_at_a_zero_base():
    # d/dx x^p at p = 0 and d/dp x^p at x = 0 (p >= 0) are 0 in torch, not 0 * inf = nan
    (x, tx), (p, tp) = _pair([0.0, 0.0, 0.0, 2.0, 0.0]), _pair([0.0, 2.0, 0.5, 0.0, -1.0])
    out, tout = x ** p, tx ** tp
    np.testing.assert_array_equal(out.data, tout.detach().numpy())
    out.sum().backward(), tout.sum().backward()
    np.testing.assert_array_equal(x.grad, tx.grad.numpy())
    np.testing.assert_array_equal(p.grad, tp.grad.numpy())


def test_a_scalar_base_to_a_tensor_power():
    for base in (0.0, 2.0, 0):
        p, tp = _pair([0.0, 1.5, 3.0])
        _assert_same(base ** p, base ** tp, p, tp)


# ----------------------------------------------------------------------------
# type promotion
# ----------------------------------------------------------------------------

def assert_same_dtype_and_values(ours, theirs):
    assert str(theirs.dtype) == f"torch.{ours.dtype}", (ours.dtype, theirs.dtype)
    np.testing.assert_array_equal(ours.data, theirs.numpy())


def test_a_zero_dim_operand_does_not_widen_a_tensor_of_its_category():
    pairs = [(np.float32, np.float64), (np.int8, np.int64), (np.int32, np.float64),
             (np.float16, np.float64), (np.bool_, np.int64), (np.float16, np.int64)]
    for big, zero in pairs:
        a, s = np.array([1, 2], dtype=big), np.array(3, dtype=zero)
        for f in (lambda u, v: u + v, lambda u, v: v * u, lambda u, v: u / v):
            assert_same_dtype_and_values(f(mg.tensor(a), mg.tensor(s)),
                                   f(torch.from_numpy(a), torch.from_numpy(s)))


def test_promotion_casts_a_float_operand_through_the_graph():
    # float16 (2,) * float32 (): float16, and the float32 0-d leaf still gets its gradient
    x, tx = _pair([1.0, 2.0], np.float16)
    s, ts = _pair(3.0, np.float32)
    out, tout = x * s, tx * ts
    assert_same_dtype_and_values(out, tout.detach())
    out.sum().backward(), tout.sum().backward()
    assert s.grad.dtype == np.float32 and x.grad.dtype == np.float16
    np.testing.assert_array_equal(s.grad, ts.grad.numpy())


@pytest.mark.parametrize("case", ["int_tensor_float", "float_int_tensor", "f32_int", "int_int",
                                  "float_int", "bool_bool", "f16_scalar", "f32_f64", "f16_f32_0d"])
def test_where_promotes_as_torch(case):
    c = np.array([True, False, True])
    i, f32 = np.array([1, 2, 3]), np.array([0.5, 1.5, 2.5], np.float32)
    T, t = mg.tensor, torch.tensor
    args = {
        "int_tensor_float": lambda L: (L(i), 0.5),
        "float_int_tensor": lambda L: (0.5, L(i)),
        "f32_int": lambda L: (L(f32), L(i)),
        "int_int": lambda L: (1, 2),
        "float_int": lambda L: (1.5, 2),
        "bool_bool": lambda L: (True, False),
        "f16_scalar": lambda L: (L(f32.astype(np.float16)), 2.5),
        "f32_f64": lambda L: (L(f32), L(f32.astype(np.float64))),
        "f16_f32_0d": lambda L: (L(f32.astype(np.float16)), L(np.float32(4.0))),
    }[case]
    assert_same_dtype_and_values(mg.where(c, *args(T)), torch.where(t(c), *args(t)))


def test_cat_and_stack_promote_as_torch():
    for a, b in ((np.array([1, 2]), np.array([0.5, 1.5], np.float32)),
                 (np.array([1, 2], np.uint8), np.array([-1, 3], np.int8)),
                 (np.array([True, False]), np.array([4, 5], np.int8)),
                 (np.array([1, 2], np.float16), np.array([0.5, 1.5], np.float32))):
        for mgf, tf in ((mg.cat, torch.cat), (mg.stack, torch.stack)):
            assert_same_dtype_and_values(mgf([mg.tensor(a), mg.tensor(b)]),
                                   tf([torch.from_numpy(a), torch.from_numpy(b)]))


def test_cat_of_mixed_floats_sends_each_piece_its_gradient_in_its_dtype():
    (x, tx), (y, ty) = _pair([1.0, 2.0], np.float16), _pair([3.0], np.float32)
    _assert_same(mg.cat([x, y]), torch.cat([tx, ty]), x, tx)
    assert y.grad.dtype == np.float32
    np.testing.assert_array_equal(y.grad, ty.grad.numpy())


def test_matmul_of_two_dtypes_raises_as_torch():
    a, b = np.ones((2, 3), np.float32), np.ones((3, 2))
    with pytest.raises(RuntimeError):
        torch.from_numpy(a) @ torch.from_numpy(b)
    with pytest.raises(TypeError, match="float32 and float64"):
        mg.tensor(a) @ mg.tensor(b)


def test_linear_of_two_dtypes_raises_as_torch():
    with pytest.raises(RuntimeError):
        torch.nn.functional.linear(torch.ones(2, 3, dtype=torch.float64), torch.ones(4, 3))
    with pytest.raises(TypeError, match="one dtype"):
        F.linear(mg.tensor(np.ones((2, 3))), mg.ones(4, 3))
    with pytest.raises(TypeError, match="int64"):
        nn.Linear(3, 4)(mg.tensor([[1, 2, 3]]))  # NumPy would have made it float64


def test_clamp_of_integers_to_a_float_bound_is_float32_and_tensor_bounds_raise():
    a = np.array([1, 2, 3])
    assert_same_dtype_and_values(mg.tensor(a).clamp(min=1.5), torch.from_numpy(a).clamp(min=1.5))
    assert_same_dtype_and_values(mg.tensor(a).clamp(max=2), torch.from_numpy(a).clamp(max=2))
    with pytest.raises(TypeError, match="maximum/minimum"):
        mg.tensor([1.0, 2.0]).clamp(min=mg.tensor([2.0, 2.0]))


# ----------------------------------------------------------------------------
# functional
# ----------------------------------------------------------------------------

def test_cosine_embedding_loss_uses_torchs_epsilon_for_short_vectors():
    rng = np.random.default_rng(2)
    for scale in (1e-7, 1e-6, 1.0):
        a = (rng.standard_normal((4, 3)) * scale).astype(np.float32)
        b = (rng.standard_normal((4, 3)) * scale).astype(np.float32)
        y = np.array([1, -1, 1, -1])
        (x, tx), (z, tz) = _pair(a), _pair(b)
        ours = F.cosine_embedding_loss(x, z, mg.tensor(y), margin=-0.5, reduction="none")
        theirs = torch.nn.functional.cosine_embedding_loss(tx, tz, torch.tensor(y), margin=-0.5,
                                                           reduction="none")
        np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-5, atol=1e-6)
        ours.sum().backward(), theirs.sum().backward()
        np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-4, atol=1e-6 / scale)
    x, tx = _pair(a[0])  # one pair: (D,) inputs, a 0-d target
    np.testing.assert_allclose(
        F.cosine_embedding_loss(x, x * 2.0, mg.tensor(1)).data,
        torch.nn.functional.cosine_embedding_loss(tx, tx * 2.0, torch.tensor(1)).detach().numpy(),
        atol=1e-6)
    y = np.array([1, -1])  # (2, 3) against (1, 3): broadcast, as torch does
    np.testing.assert_allclose(
        F.cosine_embedding_loss(mg.tensor(a[:2]), mg.tensor(b[:1]), mg.tensor(y)).data,
        torch.nn.functional.cosine_embedding_loss(torch.tensor(a[:2]), torch.tensor(b[:1]),
                                                  torch.tensor(y)).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="target"):
        F.cosine_embedding_loss(mg.ones(2, 3), mg.ones(2, 3), mg.tensor([1, 1, 1]))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy's inf - inf, as torch's nan
def test_softmax_family_on_fully_masked_rows_and_huge_logits():
    data = [[-INF, -INF, -INF], [0.0, -INF, 1.0], [3e38, -3e38, 1.0], [3e38, 3e38, 3e38]]
    for mgf, tf in ((F.softmax, torch.softmax), (F.log_softmax, torch.log_softmax)):
        x, tx = _pair(data)
        ours, theirs = mgf(x, -1), tf(tx, -1)
        np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-6)
    x, tx = _pair(data)
    np.testing.assert_allclose(x.logsumexp(-1).data, tx.logsumexp(-1).detach().numpy(), rtol=1e-6)


# ----------------------------------------------------------------------------
# in-place writes
# ----------------------------------------------------------------------------

def test_in_place_writes_on_tensors_in_the_graph_raise():
    leaf = mg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError):
        torch.ones(2, requires_grad=True).zero_()
    with pytest.raises(RuntimeError, match="leaf"):
        leaf.zero_()
    with pytest.raises(RuntimeError, match="not recorded"):
        (leaf * 2).copy_(np.zeros(2))  # torch would record it; minigrad cannot
    with mg.no_grad():  # as in torch: allowed where nothing is recorded
        leaf.copy_(np.array([5.0, 6.0]))
    np.testing.assert_array_equal(leaf.data, [5.0, 6.0])
    assert leaf.detach().zero_() is not leaf and np.all(leaf.data == 0)  # detach shares memory


# ----------------------------------------------------------------------------
# nn and optim
# ----------------------------------------------------------------------------

class _Shared(nn.Module):
    def __init__(self, lib):
        super().__init__()
        self.a = lib.Linear(2, 3)
        self.b = self.a
        self.norm = lib.LayerNorm(3)


class _TorchShared(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(2, 3)
        self.b = self.a
        self.norm = torch.nn.LayerNorm(3)


def test_a_shared_module_is_in_the_state_dict_under_each_name():
    ours, theirs = _Shared(nn), _TorchShared()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    for dedup in (True, False):                       # torch's named_modules(remove_duplicate)
        assert ([n for n, _ in ours.named_modules(remove_duplicate=dedup)]
                == [n for n, _ in theirs.named_modules(remove_duplicate=dedup)])
    sd = {k: v.detach().numpy() for k, v in theirs.state_dict().items()}
    assert ours.load_state_dict(sd) == ([], [])  # a torch state dict loads as it is
    np.testing.assert_array_equal(ours.b.weight.data, sd["b.weight"])


def test_optimizer_refuses_a_single_tensor_and_non_leaves_as_torch():
    w = mg.tensor(np.ones((3, 2)), requires_grad=True)
    with pytest.raises(TypeError):
        torch.optim.SGD(torch.ones(3, 2, requires_grad=True), lr=0.1)
    with pytest.raises(TypeError, match="single Tensor"):
        optim.SGD(w, lr=0.1)  # would have "optimized" its rows, copies that never get a .grad
    with pytest.raises(ValueError):
        torch.optim.Adam([torch.ones(2, requires_grad=True) * 2])
    with pytest.raises(ValueError, match="leaf"):
        optim.Adam([w * 2])


@pytest.mark.parametrize("cls,kw", [
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.5, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.5, 0.6), eps=1e-3, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
])
def test_float32_trajectories_with_param_groups_and_missing_grads_match_torch(cls, kw):
    """50 steps in float32, two groups (the second with its own lr), one parameter whose
    gradient is None every third step and one that never gets one."""
    rng = np.random.default_rng(4)
    starts = [rng.standard_normal(s).astype(np.float32) for s in ((4, 3), (3,), (2,))]
    grads = [(rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32))
             for _ in range(50)]

    def run(lib, T, grad):
        ps = [T(s) for s in starts]
        opt = getattr(lib, cls)([{"params": ps[:1]}, {"params": ps[1:], "lr": 0.003}], **kw)
        for t, (gw, gb) in enumerate(grads):
            ps[0].grad, ps[1].grad = grad(gw), (None if t % 3 == 1 else grad(gb))
            opt.step()
        return [np.array(p.data if isinstance(p, mg.Tensor) else p.detach().numpy()) for p in ps]

    ours = run(optim, lambda a: mg.tensor(a, requires_grad=True), np.copy)
    theirs = run(torch.optim, lambda a: torch.tensor(a, requires_grad=True), torch.tensor)
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(o, t, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ours[2], starts[2])  # never had a gradient: untouched


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_softmax_without_dim_is_torchs_choice_or_an_error(fn):
    import warnings
    ours, theirs = getattr(F, fn), getattr(torch.nn.functional, fn)
    for shape in [(), (5,), (3, 4)]:                 # torch's implicit dim is the last here
        x, tx = _pair(np.linspace(-2, 3, int(np.prod(shape))).reshape(shape), np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # torch: implicit dim is deprecated
            want = theirs(tx)
        _assert_same(ours(x), want, x, tx)
    for shape in [(2, 3, 4), (2, 2, 3, 4)]:          # torch would pick dim 0, or 1
        with pytest.raises(TypeError, match=f"{fn}: pass dim for a {len(shape)}-D input"):
            ours(mg.tensor(np.ones(shape, np.float32)))
        assert ours(mg.tensor(np.ones(shape, np.float32)), dim=-1).shape == shape
    for dim in (2, -3, 1.0):
        with pytest.raises(IndexError, match=f"{fn}: dim must be an integer in \\[-2, 1\\]"):
            ours(mg.tensor(np.ones((3, 4), np.float32)), dim=dim)


def test_view_shares_memory_or_raises_and_contiguous_copies_as_torch():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    x, tx = _pair(a)
    t, tt = x.transpose(1, 2), tx.transpose(1, 2)
    assert t.is_contiguous() == tt.is_contiguous() is False
    with pytest.raises(RuntimeError):
        tt.view(2, 12)
    with pytest.raises(RuntimeError, match=r"view: shape \(2, 12\) is not a view"):
        t.view(2, 12)
    _assert_same(t.contiguous().view(2, 12), tt.contiguous().view(2, 12), x, tx)
    assert t.contiguous().is_contiguous() and x.contiguous() is x
    # a view writes through, under no_grad, as torch's does
    with mg.no_grad():
        x.view(-1).data[0] = 100.0
    assert x.data[0, 0, 0] == 100.0
    assert mg.zeros(0, 3).transpose(0, 1).view(0).shape == (0,)    # nothing to copy


@pytest.mark.parametrize("fn", ["binary_cross_entropy", "binary_cross_entropy_with_logits"])
def test_binary_cross_entropy_refuses_integer_targets_as_torch(fn):
    p, y = np.full(3, 0.5, np.float32), np.array([1, 0, 1])
    with pytest.raises(RuntimeError):
        getattr(torch.nn.functional, fn)(torch.from_numpy(p), torch.from_numpy(y))
    with pytest.raises(TypeError, match=f"{fn}: target must be a floating-point tensor"):
        getattr(F, fn)(mg.tensor(p), mg.tensor(y))
    ours = getattr(F, fn)(mg.tensor(p), mg.tensor(y.astype(np.float32)))
    assert ours.item() == pytest.approx(
        getattr(torch.nn.functional, fn)(torch.from_numpy(p), torch.from_numpy(y).float()).item())
