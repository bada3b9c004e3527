"""The Tensor engine: every op's gradient against float64 finite differences
(minigrad.gradcheck) on hypothesis-drawn shapes, forward values against
NumPy, the graph's bookkeeping (accumulation, no_grad, detach, retain_grad)
and the errors a user meets first. PyTorch, when installed, is a second oracle.
"""

import operator
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes

import minigrad as mg
from minigrad import gradcheck
from minigrad.autograd import Function

FAST = settings(max_examples=15, deadline=None)
SHAPES = array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3)
PAIRS = mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3)


def leaf(shape, positive=False, requires_grad=True):
    """A float64 leaf of random values (from the seeded generator); ``positive``
    keeps them in [0.5, 2.5) for log, sqrt, division and non-integer powers."""
    x = mg.get_rng().standard_normal(shape)
    if positive:
        x = np.abs(x) + 0.5
    return mg.tensor(x, requires_grad=requires_grad)


# ----------------------------------------------------------------------------
# binary ops with broadcasting
# ----------------------------------------------------------------------------

BINARY = {
    "add": (operator.add, np.add, False),
    "sub": (operator.sub, np.subtract, False),
    "mul": (operator.mul, np.multiply, False),
    "div": (operator.truediv, np.divide, True),
    "pow": (operator.pow, np.power, True),
}


@pytest.mark.parametrize("name", BINARY)
@FAST
@given(shapes=PAIRS)
def test_binary_op_forward_and_gradient_broadcast(name, shapes):
    op, ref, positive = BINARY[name]
    sa, sb = shapes.input_shapes
    a, b = leaf(sa, positive), leaf(sb, positive)
    np.testing.assert_allclose(op(a, b).data, ref(a.data, b.data), rtol=1e-12)
    assert op(a, b).shape == shapes.result_shape
    gradcheck(op, (a, b))


@pytest.mark.parametrize("fn", [
    lambda x: x + 2.5, lambda x: 2.5 + x, lambda x: x - 1.5, lambda x: 1.5 - x,
    lambda x: x * 3.0, lambda x: 3.0 * x, lambda x: x / 4.0, lambda x: 4.0 / x,
    lambda x: x ** 3, lambda x: x ** 0.5, lambda x: x ** -1.5, lambda x: 2.0 ** x,
    lambda x: -x, lambda x: x ** 0,
], ids=["add", "radd", "sub", "rsub", "mul", "rmul", "div", "rdiv", "cube", "sqrt_pow",
        "neg_pow", "rpow", "neg", "pow0"])
def test_ops_with_python_scalars(fn):
    x = leaf((2, 3), positive=True)
    gradcheck(fn, x)


def test_pow_zero_has_zero_gradient_at_zero():
    x = mg.tensor([0.0, 1.0], requires_grad=True)
    (x ** 0).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0])  # not 0 * 0**-1 = nan


def test_python_scalar_keeps_float32():
    x = mg.tensor([1.0, 2.0])
    for y in (x + 2.0, 2.0 * x, x / 3, x ** 2, 1.0 - x):
        assert y.dtype == np.float32
    assert (mg.tensor([1, 2], dtype=np.int32) + 1).dtype == np.int32


def test_ndarray_on_the_left_stays_in_the_graph():
    x = leaf((3,))
    y = np.full(3, 2.0) * x + np.ones(3)
    assert isinstance(y, mg.Tensor) and y.requires_grad
    y.sum().backward()
    np.testing.assert_allclose(x.grad, np.full(3, 2.0))
    np.testing.assert_array_equal(np.asarray(x), x.data)


def test_broadcast_mismatch_names_both_shapes():
    a, b = mg.zeros(2, 3), mg.zeros(4, 5)
    for op in (operator.add, operator.sub, operator.mul, operator.truediv):
        with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
            op(a, b)


# ----------------------------------------------------------------------------
# matmul: 1-D, 2-D, batched and broadcast batches
# ----------------------------------------------------------------------------

@st.composite
def matmul_shapes(draw):
    n, k, m = (draw(st.integers(1, 3)) for _ in range(3))
    batch = draw(mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=2))
    ba, bb = batch.input_shapes
    a_shape = draw(st.sampled_from([(k,), ba + (n, k)]))
    b_shape = draw(st.sampled_from([(k,), bb + (k, m)]))
    return a_shape, b_shape


@FAST
@given(shapes=matmul_shapes())
def test_matmul_forward_and_gradient(shapes):
    a, b = leaf(shapes[0]), leaf(shapes[1])
    out = a @ b
    np.testing.assert_allclose(out.data, np.matmul(a.data, b.data), rtol=1e-12)
    gradcheck(operator.matmul, (a, b))


def test_matmul_with_constant_operand():
    a = leaf((2, 3))
    w = np.arange(12.0).reshape(3, 4)
    gradcheck(lambda t: t @ w, a)
    gradcheck(lambda t: w.T @ t.T, a)


def test_matmul_errors_name_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4, 5\).*3 != 4"):
        mg.zeros(2, 3) @ mg.zeros(4, 5)
    with pytest.raises(ValueError, match=r"\(2, 2, 3\) and \(3, 3, 1\)"):
        mg.zeros(2, 2, 3) @ mg.zeros(3, 3, 1)
    with pytest.raises(ValueError, match="at least 1 dimension"):
        mg.tensor(2.0) @ mg.zeros(2)


# ----------------------------------------------------------------------------
# elementwise functions
# ----------------------------------------------------------------------------

UNARY = {
    "neg": (lambda x: -x, np.negative, False),
    "exp": (lambda x: x.exp(), np.exp, False),
    "log": (lambda x: x.log(), np.log, True),
    "sqrt": (lambda x: x.sqrt(), np.sqrt, True),
    "tanh": (lambda x: x.tanh(), np.tanh, False),
    "sigmoid": (lambda x: x.sigmoid(), lambda a: 1 / (1 + np.exp(-a)), False),
    "relu": (lambda x: x.relu(), lambda a: np.maximum(a, 0), False),
    "abs": (lambda x: x.abs(), np.abs, False),
    "clamp": (lambda x: x.clamp(-0.5, 0.7), lambda a: np.clip(a, -0.5, 0.7), False),
    "clamp_min": (lambda x: x.clamp(min=0.1), lambda a: np.maximum(a, 0.1), False),
    "clamp_max": (lambda x: x.clamp(max=0.1), lambda a: np.minimum(a, 0.1), False),
}


@pytest.mark.parametrize("name", UNARY)
@FAST
@given(shape=SHAPES)
def test_unary_forward_and_gradient(name, shape):
    fn, ref, positive = UNARY[name]
    x = leaf(shape, positive)
    np.testing.assert_allclose(fn(x).data, ref(x.data), rtol=1e-12)
    gradcheck(fn, x)


def test_sigmoid_is_finite_for_huge_inputs():
    x = mg.tensor([-1000.0, 0.0, 1000.0], dtype=np.float32)
    np.testing.assert_allclose(x.sigmoid().data, [0.0, 0.5, 1.0])


# ----------------------------------------------------------------------------
# reductions
# ----------------------------------------------------------------------------

@st.composite
def shape_and_dim(draw, min_dims=1):
    shape = draw(array_shapes(min_dims=min_dims, max_dims=3, min_side=1, max_side=3))
    dim = draw(st.one_of(
        st.none(),
        st.integers(-len(shape), len(shape) - 1),
        st.lists(st.integers(0, len(shape) - 1), min_size=1, max_size=len(shape),
                 unique=True).map(tuple),
    ))
    return shape, dim, draw(st.booleans())


REDUCTIONS = {
    "sum": (lambda x, d, k: x.sum(d, keepdim=k), lambda a, d, k: a.sum(axis=d, keepdims=k)),
    "mean": (lambda x, d, k: x.mean(d, keepdim=k), lambda a, d, k: a.mean(axis=d, keepdims=k)),
    "amax": (lambda x, d, k: x.amax(d, keepdim=k), lambda a, d, k: a.max(axis=d, keepdims=k)),
    "var": (lambda x, d, k: x.var(d, keepdim=k),
            lambda a, d, k: a.var(axis=d, keepdims=k, ddof=1)),
    "std0": (lambda x, d, k: x.std(d, keepdim=k, correction=0),
             lambda a, d, k: a.std(axis=d, keepdims=k)),
}


@pytest.mark.parametrize("name", REDUCTIONS)
@FAST
@given(case=shape_and_dim())
def test_reduction_forward_and_gradient(name, case):
    shape, dim, keepdim = case
    fn, ref = REDUCTIONS[name]
    x = leaf(shape)
    axis = tuple(range(len(shape))) if dim is None else dim
    n = int(np.prod([shape[d] for d in np.atleast_1d(axis)]))
    if name in ("var", "std0") and n < 2:
        return  # one value: var divides by n - 1 = 0, and std's gradient at 0 is infinite
    np.testing.assert_allclose(fn(x, dim, keepdim).data, ref(x.data, axis, keepdim),
                               rtol=1e-10, atol=1e-12)
    gradcheck(lambda t: fn(t, dim, keepdim), x)


@FAST
@given(case=shape_and_dim())
def test_max_and_min_along_dim_return_values_and_indices(case):
    shape, dim, keepdim = case
    dim = 0 if not isinstance(dim, int) else dim
    x = leaf(shape)
    values, indices = x.max(dim, keepdim=keepdim)
    np.testing.assert_array_equal(values.data, x.data.max(axis=dim, keepdims=keepdim))
    np.testing.assert_array_equal(indices.data, x.data.argmax(axis=dim, keepdims=keepdim))
    assert indices.dtype.kind == "i" and not indices.requires_grad
    gradcheck(lambda t: t.max(dim, keepdim=keepdim).values, x)
    r = x.min(dim, keepdim=keepdim)
    np.testing.assert_array_equal(r.values.data, x.data.min(axis=dim, keepdims=keepdim))
    np.testing.assert_array_equal(r.indices.data, x.data.argmin(axis=dim, keepdims=keepdim))
    gradcheck(lambda t: t.min(dim, keepdim=keepdim).values, x)
    gradcheck(lambda t: t.max(), x)
    gradcheck(lambda t: t.min(), x)


def test_amax_splits_the_gradient_among_ties():
    x = mg.tensor([1.0, 3.0, 3.0, 2.0], requires_grad=True)
    x.amax().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.5, 0.5, 0.0])  # PyTorch's amax rule


def test_mean_of_integers_raises():
    with pytest.raises(TypeError, match="mean: input must be floating point.*int64"):
        mg.tensor([1, 2, 3]).mean()
    with pytest.raises(IndexError, match="dim 2 is out of range"):
        mg.zeros(2, 3).sum(2)


# ----------------------------------------------------------------------------
# shapes and indexing
# ----------------------------------------------------------------------------

SHAPE_OPS = {
    "reshape": (lambda x: x.reshape(-1), lambda a: a.reshape(-1)),
    "reshape_tuple": (lambda x: x.reshape((x.numel(), 1)), lambda a: a.reshape(a.size, 1)),
    "T": (lambda x: x.T, lambda a: a.T),
    "transpose": (lambda x: x.transpose(0, -1), lambda a: np.swapaxes(a, 0, -1)),
    "permute": (lambda x: x.permute(*reversed(range(x.ndim))), lambda a: a.transpose()),
    "flatten": (lambda x: x.flatten(), lambda a: a.reshape(-1)),
    "flatten_1": (lambda x: x.flatten(1), lambda a: a.reshape(a.shape[0], -1)),
    "unsqueeze": (lambda x: x.unsqueeze(1), lambda a: np.expand_dims(a, 1)),
    "unsqueeze_neg": (lambda x: x.unsqueeze(-1), lambda a: a[..., None]),
    "squeeze": (lambda x: x.squeeze(), np.squeeze),
    "squeeze_0": (lambda x: x.squeeze(0),
                  lambda a: np.squeeze(a, 0) if a.shape[0] == 1 else a),
    "expand": (lambda x: x.expand(2, *x.shape), lambda a: np.broadcast_to(a, (2,) + a.shape)),
    "expand_1": (lambda x: x.unsqueeze(0).expand(3, *([-1] * x.ndim)),
                 lambda a: np.broadcast_to(a, (3,) + a.shape)),
}


@pytest.mark.parametrize("name", SHAPE_OPS)
@FAST
@given(shape=array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3))
def test_shape_op_forward_and_gradient(name, shape):
    fn, ref = SHAPE_OPS[name]
    if name == "flatten_1" and len(shape) < 2:
        with pytest.raises(IndexError, match="dim 1 is out of range"):
            leaf(shape).flatten(1)
        return
    x = leaf(shape)
    np.testing.assert_array_equal(fn(x).data, ref(x.data))
    gradcheck(fn, x)


def test_expand_bad_shape_names_both():
    with pytest.raises(ValueError, match=r"expand: cannot expand shape \(2, 3\) to \(4, 3\)"):
        mg.zeros(2, 3).expand(4, 3)
    with pytest.raises(ValueError, match=r"reshape: cannot reshape.*\(2, 3\).*\(4,\)"):
        mg.zeros(2, 3).reshape(4)
    with pytest.raises(ValueError, match="not a permutation"):
        mg.zeros(2, 3).permute(0, 0)
    with pytest.raises(IndexError, match=r"unsqueeze: dim 3 is out of range.*\[-3, 2\]"):
        mg.zeros(2, 3).unsqueeze(3)


INDEXES = {
    "int": 1,
    "slice": slice(1, None),
    "step": (slice(None), slice(None, None, 2)),
    "ellipsis_newaxis": (Ellipsis, None, 0),
    "negative": (-1, slice(0, 2)),
    "int_array_repeats": np.array([0, 2, 0, 0]),
    "list_repeats": [3, 3, 1],
    "two_arrays_repeats": (np.array([0, 0, 1]), np.array([1, 1, 2])),
    "array_and_slice": (slice(None), [2, 0, 2]),
    "bool_mask_rows": np.array([True, False, True, True]),
    "bool_mask_full": "mask",
}


@pytest.mark.parametrize("name", INDEXES)
def test_getitem_forward_and_gradient(name):
    x = leaf((4, 3))
    index = INDEXES[name]
    if isinstance(index, str):
        index = x.data > 0
    np.testing.assert_array_equal(x[index].data, x.data[index])
    gradcheck(lambda t: t[index], x)


def test_getitem_repeated_indices_add_their_gradients():
    x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x[np.array([0, 0, 2, 0])].sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 0.0, 1.0])  # counts of each index


def test_getitem_with_tensor_index():
    x = leaf((5,))
    idx = mg.tensor([4, 1, 4])
    np.testing.assert_array_equal(x[idx].data, x.data[[4, 1, 4]])
    gradcheck(lambda t: t[idx], x)


@FAST
@given(shapes=st.lists(array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=3),
                       min_size=1, max_size=3), dim=st.sampled_from([0, -1]))
def test_cat_forward_and_gradient(shapes, dim):
    other = 1 if dim == 0 else 0
    xs = [leaf(tuple(s[i] if i != other else 2 for i in range(2))) for s in shapes]
    out = mg.cat(xs, dim=dim)
    np.testing.assert_array_equal(out.data, np.concatenate([x.data for x in xs], axis=dim))
    gradcheck(lambda *ts: mg.cat(ts, dim=dim), xs)


@FAST
@given(shape=SHAPES, n=st.integers(1, 3), data=st.data())
def test_stack_forward_and_gradient(shape, n, data):
    dim = data.draw(st.integers(-len(shape) - 1, len(shape)))
    xs = [leaf(shape) for _ in range(n)]
    np.testing.assert_array_equal(mg.stack(xs, dim).data, np.stack([x.data for x in xs], dim))
    gradcheck(lambda *ts: mg.stack(ts, dim), xs)


def test_cat_and_stack_errors():
    with pytest.raises(ValueError, match=r"cat: shapes \[\(2, 3\), \(2, 4\)\] differ outside dim 0"):
        mg.cat([mg.zeros(2, 3), mg.zeros(2, 4)])
    with pytest.raises(ValueError, match="stack: all tensors must have one shape"):
        mg.stack([mg.zeros(2), mg.zeros(3)])
    with pytest.raises(TypeError, match=r"cat: tensors\[1\] is a ndarray"):
        mg.cat([mg.zeros(2), np.zeros(2)])
    with pytest.raises(ValueError, match="non-empty"):
        mg.stack([])


@FAST
@given(shapes=mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=3))
def test_where_forward_and_gradient(shapes):
    sc, sa, sb = shapes.input_shapes
    cond = mg.get_rng().random(sc) > 0.5
    a, b = leaf(sa), leaf(sb)
    np.testing.assert_array_equal(mg.where(cond, a, b).data, np.where(cond, a.data, b.data))
    gradcheck(lambda x, y: mg.where(cond, x, y), (a, b))
    gradcheck(lambda x: mg.where(cond, x, 0.0), a)


@FAST
@given(shapes=PAIRS)
def test_masked_fill_forward_and_gradient(shapes):
    sx, sm = shapes.input_shapes
    if np.broadcast_shapes(sx, sm) != sx:
        return  # the mask may broadcast to the tensor, never enlarge it
    x = leaf(sx)
    mask = mg.get_rng().random(sm) > 0.5
    np.testing.assert_array_equal(x.masked_fill(mask, -7.0).data, np.where(mask, -7.0, x.data))
    gradcheck(lambda t: t.masked_fill(mg.tensor(mask), -7.0), x)


def test_masked_fill_errors():
    with pytest.raises(TypeError, match="mask must be boolean"):
        mg.zeros(3).masked_fill(np.array([0, 1, 0]), 1.0)
    with pytest.raises(ValueError, match=r"mask of shape \(2, 3\).*tensor of shape \(3,\)"):
        mg.zeros(3).masked_fill(np.zeros((2, 3), bool), 1.0)


def test_to_dtype_casts_forward_and_casts_gradient_back():
    x = leaf((3,))
    y = x.to(np.float32)
    assert y.dtype == np.float32 and y.requires_grad
    (y * mg.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad, [1.0, 2.0, 3.0])
    # a float32 round trip in the middle: finite differences need a step float32 resolves
    gradcheck(lambda t: t.to(np.float32).to(np.float64) * 2, leaf((2,)), eps=1e-3, atol=1e-3)
    assert x.to(np.float64) is x


# ----------------------------------------------------------------------------
# the graph: accumulation, modes, errors
# ----------------------------------------------------------------------------

def test_gradient_accumulates_where_a_value_is_used_twice():
    x = mg.tensor(3.0, requires_grad=True)
    (x * x + x).backward()
    assert x.grad == pytest.approx(2 * 3.0 + 1)


@pytest.mark.parametrize("order", ["b_first", "a_first"])
def test_shared_intermediate_gets_its_full_gradient(order):
    # b feeds both a = 3b and the output; whichever order the parents are
    # listed in, b's backward must wait for a's contribution: d/dx (2x + 6x) = 8
    x = mg.tensor(1.0, requires_grad=True)
    b = x * 2
    a = b * 3
    out = b + a if order == "b_first" else a + b
    out.backward()
    assert x.grad == pytest.approx(8.0)


def test_diamond_graph_matches_closed_form():
    # y = exp(x) feeds two products: f = y^2 + y x, so df/dx = 2 y^2 + y x + y
    x = mg.tensor(0.7, requires_grad=True)
    y = x.exp()
    (y * y + y * x).backward()
    e = np.exp(0.7)
    assert x.grad == pytest.approx(2 * e * e + e * 0.7 + e)


def test_backward_twice_accumulates_into_grad():
    x = leaf((3,))
    (x * 2).sum().backward()
    (x * 2).sum().backward()
    np.testing.assert_array_equal(x.grad, np.full(3, 4.0))


def test_second_backward_through_a_freed_graph_raises_unless_retained():
    x = leaf((3,))
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()                                       # the graph was kept: grads add up
    np.testing.assert_allclose(x.grad, 4 * x.data)
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()                                   # the second call freed it


def test_backward_frees_saved_activations_as_it_goes():
    # an intermediate no user variable holds is kept alive only by the graph; after
    # backward nothing refers to it (PyTorch frees saved tensors the same way)
    import gc
    import weakref
    x = leaf((4, 5))
    h = (x * 3).tanh()
    ref = weakref.ref(h)
    loss = (h * h).sum()
    del h
    gc.collect()
    assert ref() is not None                           # held by loss's graph
    loss.backward()
    gc.collect()
    assert ref() is None
    assert x.grad is not None


def test_leaf_gradients_do_not_alias():
    # add passes one array to both inputs; changing one .grad in place must not move the other
    a, b = leaf((3,)), leaf((3,))
    (a + b).sum().backward()
    a.grad[...] = 0
    np.testing.assert_array_equal(b.grad, np.ones(3))


def test_no_grad_records_nothing():
    x = leaf((2,))
    with mg.no_grad():
        y = x * 2
        assert not mg.is_grad_enabled()
    assert mg.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_detach_shares_data_and_cuts_the_graph():
    x = leaf((3,))
    d = x.detach()
    assert not d.requires_grad and np.shares_memory(d.data, x.data)
    (x * d).sum().backward()
    np.testing.assert_allclose(x.grad, x.data)  # d is a constant: d/dx (x * c) = c


def test_retain_grad_keeps_a_non_leaf_gradient():
    x = leaf((3,))
    h = (x * 2).retain_grad()
    k = x * 3
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad, 2 * h.data)
    assert k.grad is None


def test_backward_on_non_scalar_needs_gradient():
    x = leaf((2, 3))
    with pytest.raises(RuntimeError, match=r"single-element tensor, got shape \(2, 3\)"):
        (x * 2).backward()
    with pytest.raises(ValueError, match=r"gradient has shape \(3,\), expected \(2, 3\)"):
        (x * 2).backward(np.ones(3))
    g = np.arange(6.0).reshape(2, 3)
    (x * 2).backward(g)
    np.testing.assert_array_equal(x.grad, 2 * g)


def test_non_float_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point.*int64"):
        mg.tensor([1, 2], requires_grad=True)
    with pytest.raises(TypeError, match="floating-point.*bool"):
        mg.tensor([True]).requires_grad_()


def test_integer_results_do_not_require_grad():
    x = leaf((4,))
    assert not x.to(np.int64).requires_grad
    assert not x.argmax().requires_grad
    assert not (x > 0).requires_grad


def test_deep_chain_does_not_overflow_the_stack():
    x = mg.tensor(1.0, requires_grad=True, dtype=np.float64)
    y = x
    for _ in range(5 * sys.getrecursionlimit()):
        y = y * 1.0
    y.backward()
    assert x.grad == 1.0


def test_random_draws_follow_manual_seed():
    mg.manual_seed(5)
    a = mg.randn(4).data
    mg.manual_seed(5)
    np.testing.assert_array_equal(a, mg.randn(4).data)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        mg.manual_seed(-1)


# ----------------------------------------------------------------------------
# autograd.Function
# ----------------------------------------------------------------------------

class Cube(Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.save_for_backward(x)
        ctx.scale = scale
        return scale * x ** 3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 3 * ctx.scale * x ** 2 * grad, None


class WrongShape(Function):
    @staticmethod
    def forward(ctx, x):
        return x.sum(axis=0)

    @staticmethod
    def backward(ctx, grad):
        return grad  # forgot to broadcast back to x's shape


class IgnoresInput(Function):
    @staticmethod
    def forward(ctx, x, y):
        return x * y

    @staticmethod
    def backward(ctx, grad):
        return grad, None  # treats y as a constant although it requires grad


def test_function_returning_none_leaves_that_input_without_grad():
    x, y = leaf((2,)), leaf((2,))
    h = y * 2  # y's path into the Function goes through an intermediate node
    IgnoresInput.apply(x, h).sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones(2))
    assert y.grad is None


def test_function_apply_gradient():
    x = leaf((2, 3))
    np.testing.assert_allclose(Cube.apply(x, 2.0).data, 2 * x.data ** 3)
    gradcheck(lambda t: Cube.apply(t, 2.0), x)


def test_function_with_wrong_gradient_shape_is_named():
    x = leaf((2, 3))
    with pytest.raises(RuntimeError, match=r"'WrongShape'.*\(3,\).*\(2, 3\)"):
        WrongShape.apply(x).sum().backward()


# ----------------------------------------------------------------------------
# PyTorch as a second oracle
# ----------------------------------------------------------------------------

def test_composite_expression_matches_torch():
    torch = pytest.importorskip("torch")
    rng = mg.get_rng()
    a_np, b_np, w_np = rng.standard_normal((2, 3, 4)), rng.standard_normal((4,)), \
        rng.standard_normal((4, 5))

    def run(lib, a, b, w):
        h = (a * b - b / (a.abs() + 1)) @ w                          # (2, 3, 5)
        h = h.tanh() + h.sigmoid() * h.relu() + h.clamp(-0.3, 0.3)
        s = h.exp().sum(-1, keepdim=True).log() + h.amax(1, keepdim=True)  # (2, 3, 1)
        t = h.permute(2, 0, 1)[1:, :, [2, 0, 2]].transpose(0, 1).reshape(2, -1)
        v = h.var(1) if lib is mg else h.var(1)
        return (s.sum() + (t ** 2).mean() + v.sqrt().sum()
                + (h.max(dim=-1).values * a.mean()).sum())

    ours = [mg.tensor(v, requires_grad=True) for v in (a_np, b_np, w_np)]
    theirs = [torch.tensor(v, requires_grad=True) for v in (a_np, b_np, w_np)]
    lo, lt = run(mg, *ours), run(torch, *theirs)
    lo.backward()
    lt.backward()
    np.testing.assert_allclose(lo.item(), lt.item(), rtol=1e-12)
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(o.grad, t.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_joining_and_masking_ops_match_torch():
    torch = pytest.importorskip("torch")
    rng = mg.get_rng()
    a_np, b_np = rng.standard_normal((3, 4)), rng.standard_normal((1, 4))
    mask = rng.random((3, 4)) > 0.5

    def run(lib, a, b, m):
        c = lib.cat([a, b.expand(2, 4)], 0)                       # (5, 4)
        s = lib.stack([a, a * b], dim=1)                          # (3, 2, 4)
        w = lib.where(m, a, b) + a.masked_fill(m, 0.5)
        lo = a.min(dim=1).values.sum() + b.min()
        sq = a.unsqueeze(0).squeeze(0).flatten()
        return (c ** 2).sum() + s.std() + (w * s[:, 1]).sum() + lo + sq.softmax(0)[2]

    ours = [mg.tensor(v, requires_grad=True) for v in (a_np, b_np)]
    theirs = [torch.tensor(v, requires_grad=True) for v in (a_np, b_np)]
    lo, lt = run(mg, *ours, mg.tensor(mask)), run(torch, *theirs, torch.tensor(mask))
    lo.backward()
    lt.backward()
    np.testing.assert_allclose(lo.item(), lt.item(), rtol=1e-12)
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(o.grad, t.grad.numpy(), rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------
# conformance with PyTorch where NumPy's habits differ (issue 12)
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.bool_])
def test_min_of_integer_and_bool_extremes_does_not_wrap(dtype):
    info = np.iinfo(dtype) if dtype != np.bool_ else None
    data = np.array([info.min, 0, info.max] if info else [True, False, True], dtype=dtype)
    x = mg.tensor(data)
    assert x.min().item() == data.min() and x.min().dtype == dtype
    assert x.max().item() == data.max()
    r = x.reshape(1, 3).min(1)
    assert r.values.item() == data.min() and r.indices.item() == data.argmin()


def test_min_splits_ties_like_amax_and_min_dim_picks_the_first():
    x = mg.tensor([3.0, 1.0, 1.0], requires_grad=True)
    x.min().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.5, 0.5])
    y = mg.tensor([[3.0, 1.0, 1.0]], requires_grad=True)
    y.min(1).values.sum().backward()
    np.testing.assert_array_equal(y.grad, [[0.0, 1.0, 0.0]])


@pytest.mark.parametrize("shape,dim", [((2, 1), 2), ((2, 1), -3), ((1,), 1), ((), 1), ((), -2)])
def test_squeeze_out_of_range_dim_raises(shape, dim):
    with pytest.raises(IndexError):
        mg.zeros(*shape).squeeze(dim)


def test_squeeze_in_range_removes_only_that_size_one_dim():
    x = mg.zeros(1, 3, 1)
    assert x.squeeze(-1).shape == (1, 3) and x.squeeze(0).shape == (3, 1)
    assert x.squeeze(1).shape == (1, 3, 1)  # size 3: unchanged
    assert mg.zeros(()).squeeze(0).shape == () and mg.zeros(()).squeeze(-1).shape == ()


@pytest.mark.parametrize("data,correction,expected", [
    ([1.0, 2.0], 2, np.inf), ([1.0, 2.0], 3, np.inf), ([1.0], 1, np.nan), ([3.0, 3.0], 2, np.nan),
])
def test_var_and_std_without_degrees_of_freedom_give_inf_or_nan(data, correction, expected):
    x = mg.tensor(data)
    with pytest.warns(UserWarning, match="degrees of freedom is <= 0"):
        v = x.var(correction=correction).item()
    with pytest.warns(UserWarning, match="degrees of freedom is <= 0"):
        s = x.std(correction=correction).item()
    np.testing.assert_equal([v, s], [expected, expected])


def test_var_with_one_degree_of_freedom_divides_by_one():
    x = mg.tensor([1.0, 3.0])
    assert x.var(correction=1).item() == 2.0 and x.var(correction=0).item() == 1.0


def test_integer_and_bool_promotion_follows_torch():
    i64, i8, b = mg.tensor([1, 2]), mg.tensor([1, 2], dtype=np.int8), mg.tensor([True, False])
    f16, f64 = mg.tensor([1.0], dtype=np.float16), mg.tensor([1.0], dtype=np.float64)
    cases = {
        "int+float": (i64 + 1.5, np.float32), "float+int": (1.5 + i64, np.float32),
        "int8*float": (i8 * 2.5, np.float32), "bool+float": (b + 1.5, np.float32),
        "bool+int": (b + 1, np.int64), "int8+int": (i8 + 1, np.int8),
        "int/int": (i64 / 2, np.float32), "int rdiv": (2 / i64, np.float32),
        "int**float": (i64 ** 0.5, np.float32), "int**int": (i64 ** 2, np.int64),
        "float**int tensor": (2.0 ** i64, np.float32), "f16+float": (f16 + 1.5, np.float16),
        "f64+float": (f64 + 1.5, np.float64), "int tensor+f32 tensor": (i64 + mg.tensor([0.5]), np.float32),
        "f16 tensor*int tensor": (f16 * i64, np.float16), "int8+int64": (i8 + i64, np.int64),
        "exp(int)": (i64.exp(), np.float32), "exp(int8)": (i8.exp(), np.float32),
        "log(int)": (i64.log(), np.float32), "sqrt(int)": (i64.sqrt(), np.float32),
        "sigmoid(int)": (i64.sigmoid(), np.float32), "tanh(bool)": (b.tanh(), np.float32),
        "int-float": (i64 - 0.5, np.float32), "float-bool": (1.0 - b, np.float32),
    }
    wrong = {k: v.dtype for k, (v, want) in cases.items() if v.dtype != want}
    assert not wrong
    np.testing.assert_allclose((i64 + 1.5).data, [2.5, 3.5])
    np.testing.assert_allclose(i64.exp().data, np.exp([1.0, 2.0]), rtol=1e-6)


@pytest.mark.torch
def test_promotion_matches_torch_on_a_grid():
    torch = pytest.importorskip("torch")
    dtypes = [np.bool_, np.int8, np.int32, np.int64, np.float16, np.float32, np.float64]
    scalars = [2, 2.5, True]
    for dt in dtypes:
        x = mg.tensor(np.array([1, 0], dtype=dt))
        tx = torch.from_numpy(x.data.copy())
        for s in scalars:
            for name, f in (("add", operator.add), ("mul", operator.mul), ("truediv", operator.truediv)):
                if dt == np.bool_ and isinstance(s, bool) and name != "mul":
                    continue  # bool + bool: torch gives bool (or'ed), not a promotion question
                got, want = f(x, s).dtype, f(tx, s).dtype
                assert str(want) == f"torch.{np.dtype(got).name}", (dt, s, name, got, want)
        for other in dtypes:
            y = mg.tensor(np.array([1, 1], dtype=other))
            if np.dtype(dt).kind == "b" and np.dtype(other).kind == "b":
                continue
            got = (x * y).dtype
            want = tx * torch.from_numpy(y.data.copy())
            assert str(want.dtype) == f"torch.{np.dtype(got).name}", (dt, other, got, want.dtype)


def test_method_spellings_match_the_operators():
    a, b = leaf((2, 3)), leaf((2, 3), positive=True)
    for method, op in (("add", operator.add), ("sub", operator.sub), ("mul", operator.mul),
                       ("div", operator.truediv), ("pow", operator.pow)):
        np.testing.assert_array_equal(getattr(b, method)(a).data, op(b, a).data)
    np.testing.assert_array_equal(a.neg().data, -a.data)
    np.testing.assert_array_equal(a.add(b, alpha=2).data, (a + 2 * b).data)
    np.testing.assert_array_equal(a.sub(b, alpha=3).data, (a - 3 * b).data)
    np.testing.assert_array_equal(a.clip(-0.5, 0.5).data, np.clip(a.data, -0.5, 0.5))
    gradcheck(lambda x, y: x.add(y, alpha=2).mul(y).div(y.pow(2)).neg().sub(x), (a, b))


def test_clamp_without_bounds_raises():
    with pytest.raises(RuntimeError, match="at least one of 'min' or 'max'"):
        mg.tensor([1.0]).clamp()
    with pytest.raises(RuntimeError):
        mg.tensor([1.0]).clip()


@pytest.mark.parametrize("fn,npfn", [(mg.maximum, np.maximum), (mg.minimum, np.minimum)])
def test_maximum_minimum_forward_gradient_and_ties(fn, npfn):
    a, b = leaf((2, 3)), leaf((3,))
    np.testing.assert_array_equal(fn(a, b).data, npfn(a.data, b.data))
    gradcheck(lambda x, y: fn(x, y), (a, b))
    # at a tie each operand gets half (torch's rule); elsewhere the winner takes all
    x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = mg.tensor([1.0, 0.0, 4.0], requires_grad=True)
    fn(x, y).backward(np.array([2.0, 2.0, 2.0]))
    big = fn is mg.maximum
    np.testing.assert_array_equal(x.grad, [1.0, 2.0 * big, 2.0 * (not big)])
    np.testing.assert_array_equal(y.grad, [1.0, 2.0 * (not big), 2.0 * big])
    assert fn(mg.tensor([1, 5]), 3).dtype == np.int64
    np.testing.assert_array_equal(a.maximum(b).data, mg.maximum(a, b).data)


def test_logsumexp_is_stable_differentiable_and_handles_infinities():
    x = leaf((2, 3, 4))
    for dim, keep in ((1, False), ((0, 2), True), (-1, False)):
        ref = np.log(np.exp(x.data).sum(axis=dim, keepdims=keep))
        np.testing.assert_allclose(mg.logsumexp(x, dim, keep).data, ref, rtol=1e-12)
        gradcheck(lambda t, d=dim, k=keep: t.logsumexp(d, k), x)
    big = mg.tensor([1000.0, 1000.0], dtype=np.float64)
    np.testing.assert_allclose(big.logsumexp(0).item(), 1000.0 + np.log(2.0))
    assert mg.tensor([-np.inf, -np.inf]).logsumexp(0).item() == -np.inf
    assert mg.tensor([np.inf, 1.0]).logsumexp(0).item() == np.inf
    assert mg.zeros(0).logsumexp(0).item() == -np.inf
    # the gradient is the softmax; with a tie it is split evenly
    t = mg.tensor([2.0, 2.0, -np.inf], requires_grad=True)
    t.logsumexp(0).backward()
    np.testing.assert_allclose(t.grad, [0.5, 0.5, 0.0])


@pytest.mark.torch
def test_new_ops_match_torch():
    torch = pytest.importorskip("torch")
    a = np.array([[1.0, 2.0, 3.0], [3.0, -1.0, 0.0]])
    b = np.array([1.0, 0.0, 3.0])
    for name in ("maximum", "minimum"):
        ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
        getattr(torch, name)(ta, tb).sum().backward()
        x, y = mg.tensor(a, requires_grad=True), mg.tensor(b, requires_grad=True)
        getattr(mg, name)(x, y).sum().backward()
        np.testing.assert_allclose(x.grad, ta.grad.numpy())
        np.testing.assert_allclose(y.grad, tb.grad.numpy())
    ta = torch.tensor(a, requires_grad=True)
    torch.logsumexp(ta, 1).sum().backward()
    x = mg.tensor(a, requires_grad=True)
    out = mg.logsumexp(x, 1)
    out.sum().backward()
    np.testing.assert_allclose(out.data, torch.logsumexp(torch.tensor(a), 1).numpy())
    np.testing.assert_allclose(x.grad, ta.grad.numpy())


def test_two_leaves_never_share_a_gradient_buffer():
    # add hands one array to both parents; backward(gradient=) gives a fresh (non-view)
    # array, so only the explicit copy keeps the two .grad buffers apart
    a, b = leaf((3,)), leaf((3,))
    (a + b).backward(np.ones(3))
    assert not np.shares_memory(a.grad, b.grad)
    a.grad += 1.0  # in-place accumulation on one leaf ...
    np.testing.assert_array_equal(b.grad, np.ones(3))  # ... leaves the other alone
    # the same through a chain, and a leaf used as the root of backward
    c, d = leaf((2,)), leaf((2,))
    ((c - 0.0) + (d * 1.0)).backward(np.full(2, 3.0))
    c.grad *= 0
    np.testing.assert_array_equal(d.grad, [3.0, 3.0])
    g = np.ones(2)
    e = leaf((2,))
    (e + 0.0).backward(g)
    e.grad += 1
    np.testing.assert_array_equal(g, [1.0, 1.0])  # the caller's array is not the .grad


# ----------------------------------------------------------------------------
# closing what the mutation pass found unguarded
# ----------------------------------------------------------------------------

def test_full_reductions_are_zero_dimensional_and_dim_reductions_drop_the_dim():
    x = leaf((2, 3))
    for r in (x.max(), x.min(), x.amax(), x.amin(), x.sum(), x.mean(), x.logsumexp((0, 1))):
        assert r.shape == ()
    for r in (x.amax(1), x.amin(1), x.max(1).values, x.min(1).indices, x.logsumexp(1), x.sum(1)):
        assert r.shape == (2,)
    assert x.amax(1, keepdim=True).shape == (2, 1) and x.var(0, keepdim=True).shape == (1, 3)


def test_shape_ops_take_a_tuple_or_separate_ints():
    x = leaf((1, 3))
    assert x.expand((2, 3)).shape == x.expand(2, 3).shape == (2, 3)
    assert x.reshape((3, 1)).shape == x.reshape(3, 1).shape == (3, 1)
    assert x.permute((1, 0)).shape == x.permute(1, 0).shape == (3, 1)


def test_to_the_same_dtype_is_the_tensor_itself():
    x = leaf((2,))
    assert x.to(np.float64) is x and x.double() is x  # as torch: no copy, same graph node
    assert x.float() is not x and x.float().dtype == np.float32


def test_batched_transposes():
    x = leaf((2, 3, 4))
    np.testing.assert_array_equal(x.mT.data, np.swapaxes(x.data, -2, -1))
    np.testing.assert_array_equal(x.T.data, x.data.transpose(2, 1, 0))
    gradcheck(lambda t: t.mT * 2.0, x)


def test_in_place_helpers_write_into_the_same_buffer():
    x = mg.tensor([1.0, 2.0])
    buf = x.data
    assert x.zero_() is x and x.data is buf
    np.testing.assert_array_equal(buf, [0.0, 0.0])
    assert x.copy_(np.array([3.0, 4.0])) is x and x.data is buf
    np.testing.assert_array_equal(buf, [3.0, 4.0])
