"""Tensor, the computation graph, and reverse-mode differentiation.

A ``Tensor`` wraps a NumPy array (``.data``). Every operation on tensors that
require a gradient records its inputs (``_parents``) and a ``_backward``
closure that maps the gradient of the output to the gradients of the inputs.
``backward()`` visits the graph in reverse topological order, so each node's
gradient is complete (summed over every use) before it is passed on.

Each op below is written micrograd-style: the forward value, then, a few lines
later, the local chain rule that sends the gradient back.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import numbers
import operator
import threading
import warnings
from collections import namedtuple

import numpy as np

__all__ = [
    "Tensor", "tensor", "no_grad", "enable_grad", "is_grad_enabled", "manual_seed", "get_rng",
    "cat", "stack", "where", "zeros", "ones", "zeros_like", "ones_like", "randn", "rand",
    "arange", "full", "unbroadcast", "maximum", "minimum", "logsumexp",
]

# ----------------------------------------------------------------------------
# switches: gradient recording (per thread) and the seeded random generator
# ----------------------------------------------------------------------------

class _GradMode(threading.local):
    """Gradient recording on or off, per thread (as in PyTorch): the simulated
    distributed backend runs each rank as a thread, and one rank's ``no_grad()``
    must not cut another rank's graph. The class attribute is what every new
    thread sees first: grad enabled."""
    enabled = True


_grad_mode = _GradMode()
# How many threads have grad mode off (a thread that ends inside no_grad stays
# counted). While it is 0, every thread records, and Tensor._make skips the
# thread-local read (about 3% of a tiny op): see _set_grad_mode.
_threads_without_grad = 0
_grad_mode_lock = threading.Lock()
_rng = np.random.default_rng(0)


def is_grad_enabled() -> bool:
    """Whether ops in the calling thread record a graph."""
    return _grad_mode.enabled


def _set_grad_mode(mode: bool) -> bool:
    """Set the calling thread's grad mode; return its previous one.

    The only writer of ``_grad_mode.enabled``: it counts each actual change,
    so a thread with grad off always sees ``_threads_without_grad >= 1``."""
    global _threads_without_grad
    prev = _grad_mode.enabled
    if prev != mode:
        with _grad_mode_lock:
            _grad_mode.enabled = mode
            _threads_without_grad += -1 if mode else 1
    return prev


@contextlib.contextmanager
def _set_grad_enabled(mode: bool):
    prev = _set_grad_mode(mode)
    try:
        yield
    finally:
        _set_grad_mode(prev)


def no_grad():
    """Context manager (or decorator, ``@no_grad()``): operations inside record no
    graph, in this thread only (as ``torch.no_grad``)."""
    return _set_grad_enabled(False)


def enable_grad():
    return _set_grad_enabled(True)


def manual_seed(seed: int) -> np.random.Generator:
    """Seed every random draw minigrad makes (init, dropout, data, sampling)."""
    global _rng
    if not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"manual_seed: seed must be a non-negative integer, got {seed!r}")
    _rng = np.random.default_rng(int(seed))
    return _rng


def get_rng() -> np.random.Generator:
    """The generator behind every random draw; reset by :func:`manual_seed`."""
    return _rng


# ----------------------------------------------------------------------------
# broadcasting's gradient
# ----------------------------------------------------------------------------

def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``grad`` back down to ``shape``, undoing NumPy broadcasting.

    A value broadcast along an axis was *used* once per position on that
    axis, so its gradient is the sum over that axis. Two cases: leading axes
    that broadcasting prepended, and axes of size 1 that were stretched.

    Args:
        grad: gradient of the broadcast result, shape ``B``.
        shape: the operand's shape ``S`` (broadcastable to ``B``).
    Returns:
        array of shape ``S``.
    """
    # BEGIN SOLUTION ch1.unbroadcast
    if grad.shape == shape:  # nothing was broadcast (the common case, so checked first)
        return grad

    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1
    )
    return grad.sum(axis=axes, keepdims=True).reshape(shape)
    # END SOLUTION


# ----------------------------------------------------------------------------
# the graph: creation order, topological order, release
# ----------------------------------------------------------------------------

_new_tensor = object.__new__  # Tensor._make fills the slots itself: no __init__ per op
_creation_counter = itertools.count()
_by_creation = operator.attrgetter("_seq")


def _topological_order(root: Tensor) -> list:
    """Nodes that lead to ``root`` (requiring grad), each after all its parents.

    A tensor is always created after its inputs (an op needs them to exist),
    so sorting by creation number is already a topological order: reversed,
    every node comes after all the nodes that consume it, and its gradient is
    complete when its turn comes. So: collect what ``root`` depends on with
    an explicit stack (deep graphs would overflow recursion), then sort.
    """
    found, stack = {id(root): root}, [root]
    while stack:
        for p in stack.pop()._parents:
            if p.requires_grad and id(p) not in found:
                found[id(p)] = p
                stack.append(p)
    return sorted(found.values(), key=_by_creation)


def _freed_backward(g):
    raise RuntimeError(
        "backward: trying to backward through the graph a second time; its saved "
        "activations were freed by the first backward (pass retain_graph=True to the "
        "first call to keep them)"
    )


def _release(node: Tensor) -> None:
    """Let ``node`` drop its backward closure and parents, and with them its saved activations.

    PyTorch does this as each node's backward runs, so a graph's memory goes
    while the gradients flow; a second backward then meets ``_freed_backward``.
    Leaves have nothing to release and stay leaves.
    """
    if node._backward is not None:
        node._backward, node._parents = _freed_backward, ()


def _check_gradient_shape(node: Tensor, parent: Tensor, g: np.ndarray) -> None:
    if g.shape != parent.data.shape:
        raise RuntimeError(
            f"backward of {node._op!r}: gradient of shape {g.shape} for an "
            f"input of shape {parent.data.shape} (a backward must unbroadcast)"
        )


def _broadcasting(fn, a: Tensor, b: Tensor, op: str) -> np.ndarray:
    """``fn(a.data, b.data)`` for a binary op; shapes that do not broadcast are named by ``op``."""
    try:
        return fn(a.data, b.data)
    except ValueError:
        try:
            np.broadcast_shapes(a.data.shape, b.data.shape)
        except ValueError:
            raise ValueError(
                f"{op}: shapes {a.shape} and {b.shape} cannot be broadcast together"
            ) from None
        raise  # another ValueError (e.g. an integer to a negative power): NumPy's own


# ----------------------------------------------------------------------------
# the Tensor
# ----------------------------------------------------------------------------

_FLOAT_KINDS = "f"
MaxResult = namedtuple("MaxResult", ["values", "indices"])
_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2}  # torch's promotion categories: bool < int < float


def _promote_types(d1: np.dtype, d2: np.dtype) -> np.dtype:
    """``torch.promote_types``: within a category NumPy's rule (int8, uint8 -> int16);
    across categories the higher one's dtype (float16 with int64 is float16, where
    NumPy gives float64)."""
    c1, c2 = _CATEGORY[d1.kind], _CATEGORY[d2.kind]
    if c1 == c2:
        return np.promote_types(d1, d2)
    return d1 if c1 > c2 else d2


def _result_dtype(*tensors) -> np.dtype:
    """``torch.result_type`` of tensors: those with dims decide, unless a 0-d tensor
    is of a higher category (float32 (3,) * float64 () is float32, int64 (3,) *
    float64 () is float64). Python scalars come in as 0-d tensors (see ``_wrap``)."""
    dimmed = [t.data.dtype for t in tensors if t.data.ndim]
    zero = [t.data.dtype for t in tensors if not t.data.ndim]
    hi = functools.reduce(_promote_types, dimmed) if dimmed else None
    lo = functools.reduce(_promote_types, zero) if zero else None
    if hi is None or lo is None:
        return lo if hi is None else hi
    return hi if _CATEGORY[lo.kind] <= _CATEGORY[hi.kind] else _promote_types(hi, lo)


def _cast(t: Tensor, dtype) -> Tensor:
    """``t`` as ``dtype``: through the graph (:meth:`Tensor.to`) if it needs a gradient."""
    if t.data.dtype == dtype:
        return t
    return t.to(dtype) if t.requires_grad else Tensor(t.data.astype(dtype))


def _as_array(data, dtype=None) -> np.ndarray:
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        return np.asarray(data, dtype=dtype)
    arr = np.asarray(data)
    if arr.dtype == np.float64 and not isinstance(data, np.ndarray) and not isinstance(data, np.generic):
        arr = arr.astype(np.float32)  # Python floats become float32, as in PyTorch
    return arr


class Tensor:
    """An n-dimensional array that remembers how it was computed.

    Attributes:
        data: the values, a ``numpy.ndarray``.
        grad: ``None`` until ``backward()`` reaches this leaf, then an ndarray
            of ``data``'s shape and dtype (summed over every use).
        requires_grad: whether gradients flow to (and through) this tensor.
    """

    __slots__ = ("data", "grad", "requires_grad", "_parents", "_backward", "_op", "_seq",
                 "_retain", "__weakref__")
    __array_priority__ = 1000  # ndarray + Tensor -> Tensor.__radd__

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        self.data = _as_array(data, dtype)
        if requires_grad and self.data.dtype.kind not in _FLOAT_KINDS:
            raise TypeError(
                f"only floating-point tensors can require gradients, got dtype {self.data.dtype}"
            )
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._parents = ()
        self._backward = None
        self._op = ""
        self._retain = False
        self._seq = next(_creation_counter)

    # -- the graph --------------------------------------------------------------
    @staticmethod
    def _make(data: np.ndarray, parents: tuple, backward, op: str) -> Tensor:
        """Wrap an op's result; record the graph only if a parent needs a gradient.

        As in PyTorch, an integer or boolean result (argmax, a cast to int)
        never requires grad: it has no derivative to carry.
        """
        if type(data) is not np.ndarray:  # NumPy turns 0-d results into scalars
            data = np.asarray(data)
        out = _new_tensor(Tensor)
        out.data = data
        out.grad = None
        out._op = op
        out._retain = False
        out._seq = next(_creation_counter)  # creation order: see _topological_order
        record = False
        # this thread's grad mode; while no thread has it off, without the thread-local read
        if (not _threads_without_grad or _grad_mode.enabled) and data.dtype.kind == "f":
            for p in parents:  # a plain loop, not any(genexpr): this runs once per op
                if p.requires_grad:
                    record = True
                    break
        out.requires_grad = record
        out._parents = parents if record else ()
        out._backward = backward if record else None
        return out


    @property
    def is_leaf(self) -> bool:
        return self._backward is None

    def retain_grad(self) -> Tensor:
        """Keep ``.grad`` on this non-leaf tensor after backward (for inspection)."""
        self._retain = True
        return self

    def backward(self, gradient=None, retain_graph: bool | None = None) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        Visits nodes in reverse topological order, so a node's gradient is the
        full sum over all its uses before its ``_backward`` runs. As in PyTorch,
        each node lets go of its backward (and with it the activations that
        backward saved) as soon as it has run, so the graph's memory is freed
        while the gradients flow, and a second backward through the same graph
        raises unless the first one kept it.

        Args:
            gradient: d(loss)/d(self), same shape as ``self``; may be omitted
                only when ``self`` holds a single element.
            retain_graph: keep the graph (and its saved activations) for
                another backward or for drawing it; default False.
        """
        grads = {id(self): self._output_gradient(gradient)}  # id(node) -> d(self)/d(node)
        given = set()  # ids of arrays already stored in a .grad: never hand one out twice
        order = _topological_order(self)
        while order:
            node = order.pop()  # consumers first; popped, so the list does not keep it alive
            g = grads.pop(id(node), None)  # complete: every consumer of node came earlier
            backward, parents = node._backward, node._parents
            if not retain_graph:
                _release(node)
            if g is None:  # every consumer returned None for it (a Function's constant input)
                continue
            if backward is None or node._retain:
                node._accumulate(g, given)
            if backward is None:
                continue
            for p, pg in zip(parents, backward(g)):  # the chain rule, one parent at a time
                if pg is not None and p.requires_grad:
                    _check_gradient_shape(node, p, pg)
                    prev = grads.get(id(p))
                    grads[id(p)] = pg if prev is None else prev + pg  # a value used twice: sum
            del backward, parents  # the saved activations go now, not at the next node

    def _output_gradient(self, gradient) -> np.ndarray:
        """d(self)/d(self) to start backward: ones, or a copy of ``gradient`` checked against the shape."""
        if not self.requires_grad:
            raise RuntimeError(
                "backward: this tensor does not require grad and has no graph "
                "(create leaves with requires_grad=True, and call outside no_grad())"
            )
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward: gradient can be omitted only for a single-element tensor, "
                    f"got shape {self.shape}; pass gradient= of that shape"
                )
            return np.ones_like(self.data)
        g0 = np.array(_as_array(gradient), dtype=self.data.dtype)  # a copy: never alias the caller's
        if g0.shape != self.data.shape:
            raise ValueError(f"backward: gradient has shape {g0.shape}, expected {self.data.shape}")
        return g0

    def _accumulate(self, g: np.ndarray, given: set) -> None:
        if g.dtype != self.data.dtype:
            g = g.astype(self.data.dtype)
        if self.grad is None:
            # backward closures may pass one array to several inputs (add) or
            # return views; copy those so an in-place update of one .grad
            # can never change another's
            if g.base is not None or id(g) in given or not g.flags.writeable:
                g = g.copy()
            given.add(id(g))
            self.grad = g
        else:
            self.grad = self.grad + g

    # NumPy interop: np.asarray(t) gives t.data; ndarray (op) Tensor defers to
    # Tensor's reflected op (so the result stays in the graph); ufuncs refuse
    # tensors instead of silently building object arrays
    __array_ufunc__ = None

    def __array__(self, dtype=None, copy=None):
        if copy:
            return np.array(self.data, dtype=dtype, copy=True)
        return self.data if dtype is None else self.data.astype(dtype, copy=False)

    # -- plain attributes -----------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    def dim(self) -> int:
        return self.data.ndim

    def size(self, dim=None):
        return self.data.shape if dim is None else self.data.shape[dim]

    def numel(self) -> int:
        return self.data.size

    def numpy(self) -> np.ndarray:
        return self.data

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item: only one-element tensors convert to a Python number, got shape {self.shape}")
        return self.data.item()

    def tolist(self):
        return self.data.tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())


    def __len__(self):
        return len(self.data)

    def __repr__(self):
        body = np.array2string(self.data, precision=4, separator=", ", prefix="tensor(")
        extra = ", requires_grad=True" if self.requires_grad else ""
        if self.data.dtype != np.float32:
            extra = f", dtype={self.data.dtype}" + extra
        return f"tensor({body}{extra})"

    def __bool__(self):
        if self.data.size != 1:
            raise RuntimeError(f"the truth value of a tensor of shape {self.shape} is ambiguous")
        return bool(self.data)

    __hash__ = object.__hash__

    def detach(self) -> Tensor:
        """The same values, cut from the graph (shares memory, as in PyTorch)."""
        return Tensor(self.data)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if requires_grad and self.data.dtype.kind not in _FLOAT_KINDS:
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.dtype}")
        self.requires_grad = requires_grad
        return self

    def to(self, dtype) -> Tensor:
        """Cast to ``dtype``; the gradient is cast back on the way down."""
        dtype = np.dtype(dtype)
        if dtype == self.data.dtype:
            return self
        src = self.data.dtype
        return Tensor._make(self.data.astype(dtype), (self,),
                            lambda g: (g.astype(src),), "to")

    def float(self) -> Tensor:
        return self.to(np.float32)

    def double(self) -> Tensor:
        return self.to(np.float64)

    def half(self) -> Tensor:
        return self.to(np.float16)

    # -- arithmetic (broadcasting) ---------------------------------------------------
    def _wrap(self, other) -> Tensor:
        if isinstance(other, Tensor):
            return other
        if isinstance(other, numbers.Number):
            # a Python scalar takes the tensor's dtype (float32 * 2.0 stays float32,
            # int32 + 1 stays int32), as in PyTorch; a float scalar with an integer or
            # bool tensor gives float32 (torch's default dtype), a bool tensor with an
            # int scalar int64
            kind = self.data.dtype.kind
            if kind == "f" or (kind in "iu" and isinstance(other, numbers.Integral)):
                dtype = self.data.dtype
            elif kind == "b" and isinstance(other, bool):
                dtype = np.bool_
            elif isinstance(other, numbers.Integral):
                dtype = np.int64
            else:
                dtype = np.float32
            return Tensor(np.asarray(other, dtype=dtype))

        return Tensor(other)

    def _operands(self, other, op: str):
        """``(a, b)`` cast to the dtype PyTorch's promotion gives ``self (op) other``.

        NumPy and PyTorch agree within a category (int8 + int32 -> int32,
        float16 + float32 -> float32); across categories PyTorch takes the
        floating operand's dtype (int64 + float32 -> float32) where NumPy widens
        (float64), and a 0-d tensor of the same category does not widen a tensor
        with dims (float32 (3,) + float64 () -> float32). With a Python scalar, the
        scalar follows the tensor (see ``_wrap``). See :func:`_result_dtype`.
        """
        b = self._wrap(other)
        a = self
        if a.data.dtype != b.data.dtype:
            dtype = _result_dtype(a, b)
            a, b = _cast(a, dtype), _cast(b, dtype)
        if op == "div" and a.data.dtype.kind != "f":  # int / int is true division: float32
            a, b = Tensor(a.data.astype(np.float32)), Tensor(b.data.astype(np.float32))
        return a, b

    def __add__(self, other):
        a, b = self._operands(other, "add")
        out = _broadcasting(operator.add, a, b, "add")

        def backward(g):
            return unbroadcast(g, a.data.shape), unbroadcast(g, b.data.shape)
        return Tensor._make(out, (a, b), backward, "add")

    def __radd__(self, other):
        return self._wrap(other).__add__(self)

    def __sub__(self, other):
        a, b = self._operands(other, "sub")
        out = _broadcasting(operator.sub, a, b, "sub")

        def backward(g):
            return (unbroadcast(g, a.data.shape),
                    -unbroadcast(g, b.data.shape) if b.requires_grad else None)
        return Tensor._make(out, (a, b), backward, "sub")

    def __rsub__(self, other):
        return self._wrap(other).__sub__(self)

    def __mul__(self, other):
        a, b = self._operands(other, "mul")
        out = _broadcasting(operator.mul, a, b, "mul")

        def backward(g):
            return (unbroadcast(g * b.data, a.data.shape) if a.requires_grad else None,
                    unbroadcast(g * a.data, b.data.shape) if b.requires_grad else None)
        return Tensor._make(out, (a, b), backward, "mul")

    def __rmul__(self, other):
        return self._wrap(other).__mul__(self)

    def __truediv__(self, other):
        a, b = self._operands(other, "div")
        out = _broadcasting(operator.truediv, a, b, "div")

        def backward(g):
            # d(a/b)/da = 1/b ; d(a/b)/db = -a/b^2
            return (unbroadcast(g / b.data, a.data.shape) if a.requires_grad else None,
                    unbroadcast(-g * out / b.data, b.data.shape) if b.requires_grad else None)
        return Tensor._make(out, (a, b), backward, "div")

    def __rtruediv__(self, other):
        return self._wrap(other).__truediv__(self)

    def __pow__(self, exponent):
        a = self
        if isinstance(exponent, numbers.Number):
            p = exponent
            # an integer tensor to a float power is float32, as in torch
            base = a._float_data() if isinstance(p, float) else a.data
            out = base ** p

            def backward(g):
                if p == 0:  # x^0 = 1 is constant; avoid 0 * 0^-1 = nan at x = 0
                    return (np.zeros_like(g),)
                return (g * (p * a.data ** (p - 1)),)  # d(x^p)/dx = p x^(p-1)
            return Tensor._make(out, (a,), backward, "pow")
        a, b = self._operands(exponent, "pow")
        out = a.data ** b.data

        def backward_t(g):
            x, p = a.data, b.data
            ga = gb = None
            with np.errstate(divide="ignore", invalid="ignore"):
                if a.requires_grad:  # p x^(p-1), and 0 where p = 0 (x^0 is constant), as torch
                    ga = unbroadcast(np.where(p == 0, 0, g * p * x ** (p - 1)), x.shape)
                if b.requires_grad:  # x^p log x, and 0 at x = 0 for p >= 0 (not 0 * -inf), as torch
                    gb = unbroadcast(np.where((x == 0) & (p >= 0), 0, g * out * np.log(x)), p.shape)
            return ga, gb
        return Tensor._make(out, (a, b), backward_t, "pow")

    def __rpow__(self, base):
        return self._wrap(base).__pow__(self)

    def __neg__(self):
        if self.data.dtype == np.bool_:
            raise TypeError("neg: negation of a bool tensor is not supported (as in PyTorch); "
                            "use ~x or logical_not")
        return Tensor._make(-self.data, (self,), lambda g: (-g,), "neg")

    # method spellings, as torch.Tensor has them
    def add(self, other, alpha=1):
        return self + (other if alpha == 1 else other * alpha)

    def sub(self, other, alpha=1):
        return self - (other if alpha == 1 else other * alpha)

    def mul(self, other):
        return self * other

    def div(self, other):
        return self / other

    def pow(self, exponent):
        return self ** exponent

    def neg(self):
        return -self

    def __matmul__(self, other):
        other = self._wrap(other)
        a, b = self, other
        A, B = a.data, b.data
        if A.ndim == 0 or B.ndim == 0:
            raise ValueError(f"matmul: both operands need at least 1 dimension, got shapes {a.shape} and {b.shape}")
        if A.dtype != B.dtype:  # torch promotes nothing here; NumPy would widen to float64
            raise TypeError(f"matmul: both operands must have one dtype, got {A.dtype} and "
                            f"{B.dtype} (as in torch; cast one with .to())")
        # treat vectors as (1, k) and (k, 1) matrices, as NumPy and PyTorch do
        A2 = A[None, :] if A.ndim == 1 else A
        B2 = B[:, None] if B.ndim == 1 else B
        if A2.shape[-1] != B2.shape[-2]:
            raise ValueError(
                f"matmul: shapes {a.shape} and {b.shape} do not align "
                f"({A2.shape[-1]} != {B2.shape[-2]})"
            )
        try:
            out2 = A2 @ B2  # (..., n, k) @ (..., k, m) -> (..., n, m)
        except ValueError:
            raise ValueError(
                f"matmul: batch dimensions of {a.shape} and {b.shape} cannot be broadcast"
            ) from None
        out = out2
        if A.ndim == 1:
            out = out[..., 0, :]
        if B.ndim == 1:
            out = out[..., 0]

        def backward(g):
            # BEGIN SOLUTION ch1.matmul_backward
            g2 = g.reshape(out2.shape)
            ga = gb = None
            if a.requires_grad:  # dL/dA = dL/dOut @ B^T, summed over broadcast batch dims
                ga = unbroadcast(g2 @ np.swapaxes(B2, -1, -2), A2.shape).reshape(A.shape)
            if b.requires_grad:  # dL/dB = A^T @ dL/dOut
                gb = unbroadcast(np.swapaxes(A2, -1, -2) @ g2, B2.shape).reshape(B.shape)
            return ga, gb
            # END SOLUTION
        return Tensor._make(out, (a, b), backward, "matmul")

    def __rmatmul__(self, other):
        return self._wrap(other).__matmul__(self)

    # -- comparisons give plain boolean tensors (no gradient) --------------------------------
    def __eq__(self, other):  # noqa: D105
        return Tensor(self.data == _as_array(other))

    def __ne__(self, other):
        return Tensor(self.data != _as_array(other))

    def __lt__(self, other):
        return Tensor(self.data < _as_array(other))

    def __le__(self, other):
        return Tensor(self.data <= _as_array(other))

    def __gt__(self, other):
        return Tensor(self.data > _as_array(other))

    def __ge__(self, other):
        return Tensor(self.data >= _as_array(other))

    # -- elementwise functions -----------------------------------------------------
    def _float_data(self) -> np.ndarray:
        """``data`` for a function with real values: integers and bools become
        float32 (torch's default dtype), where NumPy would give float64 (or
        float16 for int8)."""
        x = self.data
        return x if x.dtype.kind == "f" else x.astype(np.float32)

    def exp(self):
        out = np.exp(self._float_data())
        return Tensor._make(out, (self,), lambda g: (g * out,), "exp")

    def log(self):
        x = self._float_data()
        return Tensor._make(np.log(x), (self,), lambda g: (g / x,), "log")

    def sqrt(self):
        out = np.sqrt(self._float_data())
        return Tensor._make(out, (self,), lambda g: (g / (2 * out),), "sqrt")

    def tanh(self):
        out = np.tanh(self._float_data())
        return Tensor._make(out, (self,), lambda g: (g * (1 - out * out),), "tanh")

    def sigmoid(self):
        x = self._float_data()
        # split by sign so exp never overflows: 1/(1+e^-x) for x>=0, e^x/(1+e^x) otherwise
        e = np.exp(-np.abs(x))
        out = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        return Tensor._make(out, (self,), lambda g: (g * out * (1 - out),), "sigmoid")

    def relu(self):
        x = self.data
        out = np.maximum(x, 0)
        # gradient where not x <= 0: torch's threshold rule, which passes it through a NaN
        return Tensor._make(out, (self,), lambda g: (g * ~(x <= 0),), "relu")

    def abs(self):
        x = self.data
        # sign(x), with 0 for a NaN as torch's sgn (np.sign would give nan)
        return Tensor._make(np.abs(x), (self,),
                            lambda g: (g * ((x > 0).astype(g.dtype) - (x < 0)),), "abs")

    def clamp(self, min=None, max=None):
        """Limit to [min, max]; the gradient passes where the input is inside (bounds
        included), as in PyTorch."""
        if min is None and max is None:
            raise RuntimeError("clamp: at least one of 'min' or 'max' must not be None "
                               "(as torch.clamp)")
        for name, bound in (("min", min), ("max", max)):
            if isinstance(bound, Tensor):
                raise TypeError(f"clamp: {name} must be a number, got a Tensor (for tensor "
                                f"bounds use maximum/minimum)")
        x = self.data
        if x.dtype.kind != "f" and any(isinstance(v, numbers.Number) and not isinstance(v, numbers.Integral)
                                       for v in (min, max)):
            x = x.astype(np.float32)  # an integer tensor clamped to a float bound: float32, as torch
        out = np.clip(x, min, max)
        inside = np.ones(x.shape, dtype=bool)
        if min is not None:
            inside &= x >= min
        if max is not None:
            inside &= x <= max
        return Tensor._make(out, (self,), lambda g: (g * inside,), "clamp")

    clip = clamp

    def maximum(self, other):
        return maximum(self, other)

    def minimum(self, other):
        return minimum(self, other)

    # -- reductions ------------------------------------------------------------------
    def _dims(self, dim):
        """``dim`` (None, an int or a sequence of ints) as a tuple of non-negative axes.

        As in torch's reductions, ``None`` and an empty tuple both mean every dim;
        a dim listed twice is an error."""
        dims = () if dim is None else (dim,) if isinstance(dim, numbers.Integral) else tuple(dim)
        nd = self.data.ndim
        if not dims:
            return tuple(range(nd))
        for d in dims:
            if not isinstance(d, numbers.Integral):
                raise TypeError(f"dim must be an int or a tuple of ints, got {dim!r}")
            if not -max(nd, 1) <= d < max(nd, 1):
                raise IndexError(f"dim {d} is out of range for a tensor of {nd} dimensions")
        axes = tuple(d % nd for d in dims) if nd else ()
        if len(set(axes)) != len(axes):
            raise ValueError(f"dim {dim!r} names the same dimension more than once")
        return axes

    def _expand_back(self, g, dims, keepdim):
        """Broadcast a reduced gradient back over the reduced dims."""
        if not keepdim:
            g = np.expand_dims(g, dims)
        return np.broadcast_to(g, self.data.shape)

    def sum(self, dim=None, keepdim: bool = False):
        """Sum over ``dim``; integers and bools sum to int64, as in torch (NumPy would
        give uint64 for unsigned input)."""
        dims = self._dims(dim)
        acc = np.int64 if self.data.dtype.kind in "biu" else None
        out = np.sum(self.data, axis=dims, keepdims=keepdim, dtype=acc)
        return Tensor._make(np.asarray(out), (self,),
                            lambda g: (self._expand_back(g, dims, keepdim),), "sum")

    def mean(self, dim=None, keepdim: bool = False):
        if self.data.dtype.kind != "f":
            raise TypeError(f"mean: input must be floating point, got dtype {self.dtype} "
                            f"(as in PyTorch; use .float().mean())")
        dims = self._dims(dim)
        n = int(np.prod([self.data.shape[d] for d in dims])) if dims else 1
        out = np.mean(self.data, axis=dims, keepdims=keepdim)
        return Tensor._make(np.asarray(out, dtype=self.data.dtype), (self,),
                            lambda g: (self._expand_back(g / n, dims, keepdim),), "mean")

    def var(self, dim=None, keepdim: bool = False, correction: int = 1):
        """sum((x - mean)^2) / (n - correction), one node; backward dx = g * 2 (x - mean) / dof.

        With n - correction <= 0 that is a division by zero (inf, or nan for 0/0)
        and a warning, as in PyTorch."""
        out, xc, dims, dof = self._var(dim, keepdim, correction, "var")

        def backward(g):
            with np.errstate(divide="ignore", invalid="ignore"):  # dof <= 0: as the forward
                return (self._expand_back(g, dims, keepdim) * (2 * xc / dof),)
        return Tensor._make(out, (self,), backward, "var")

    def std(self, dim=None, keepdim: bool = False, correction: int = 1):
        """sqrt(var); where the std is 0 (a constant row) the gradient is 0, as torch
        gives, not the 0 * inf = nan of sqrt's chain rule."""
        v, xc, dims, dof = self._var(dim, keepdim, correction, "std")
        with np.errstate(invalid="ignore"):
            out = np.sqrt(v)

        def backward(g):
            with np.errstate(divide="ignore", invalid="ignore"):
                gv = np.where(out == 0, 0, g / (2 * out)).astype(g.dtype, copy=False)
                return (self._expand_back(gv, dims, keepdim) * (2 * xc / dof),)
        return Tensor._make(out, (self,), backward, "std")

    def _var(self, dim, keepdim, correction, op):
        """(variance, x - mean, dims, dof as an array of x's dtype) for var and std."""
        if self.data.dtype.kind != "f":
            raise TypeError(f"{op}: input must be floating point, got dtype {self.dtype} "
                            f"(as in PyTorch; use .float().{op}())")
        dims = self._dims(dim)
        x = self.data
        n = int(np.prod([x.shape[d] for d in dims])) if dims else 1
        with np.errstate(over="ignore", invalid="ignore"):
            mu = np.mean(x, axis=dims, keepdims=True)
            if x.size and not np.all(np.isfinite(mu)):
                # the sum overflowed (three values of 3e38 in float32): torch's
                # running mean never forms it, so neither do we
                mu = np.where(np.isfinite(mu), mu, np.sum(x / n, axis=dims, keepdims=True))
        xc = x - mu
        dof = n - correction
        if dof <= 0:
            warnings.warn(f"{op}(): degrees of freedom is <= 0. Correction should be strictly "
                          "less than the reduction factor (input numel divided by output "
                          "numel).", UserWarning, stacklevel=3)
        with np.errstate(divide="ignore", invalid="ignore"):  # torch divides by max(dof, 0) ...
            out = np.asarray(np.sum(xc * xc, axis=dims, keepdims=keepdim)
                             / np.asarray(max(dof, 0), dtype=x.dtype), dtype=x.dtype)
        return out, xc, dims, np.asarray(dof, dtype=x.dtype)  # ... and its backward by dof

    def amax(self, dim=None, keepdim: bool = False):
        """Maximum over ``dim``; the gradient is shared equally among ties."""
        return self._extreme(np.max, dim, keepdim, "amax")

    def amin(self, dim=None, keepdim: bool = False):
        """Minimum over ``dim``; the gradient is shared equally among ties."""
        return self._extreme(np.min, dim, keepdim, "amin")

    def _extreme(self, reduce, dim, keepdim, op):
        dims = self._dims(dim)
        x = self.data
        out = reduce(x, axis=dims, keepdims=True)

        def backward(g):
            hit = (x == out).astype(x.dtype)
            share = hit / hit.sum(axis=dims, keepdims=True)
            return (share * (g if keepdim else np.expand_dims(g, dims)),)
        res = out if keepdim else np.squeeze(out, axis=dims)
        return Tensor._make(np.asarray(res), (self,), backward, op)

    def max(self, dim=None, keepdim: bool = False):
        """``max()`` -> the maximum; ``max(dim)`` -> ``(values, indices)`` as in PyTorch
        (the gradient goes to the first maximal index only, as there); ``max(other)``
        with a tensor -> :func:`maximum`, as ``torch.max(input, other)``."""
        if isinstance(dim, Tensor):
            return maximum(self, dim)
        if dim is None:
            return self.amax()
        return self._extreme_along(np.argmax, dim, keepdim, "max")

    def min(self, dim=None, keepdim: bool = False):
        """As :meth:`max`, for the minimum (computed directly: ``-(-x).max()`` would
        wrap int8's -128 and fail on bool)."""
        if isinstance(dim, Tensor):
            return minimum(self, dim)
        if dim is None:
            return self.amin()
        return self._extreme_along(np.argmin, dim, keepdim, "min")

    def _extreme_along(self, arg, dim, keepdim, op):
        _check_one_dim(dim, op)
        d = self._dims(dim)[0]
        x = self.data
        idx = arg(x, axis=d)
        idx_k = np.expand_dims(idx, d)
        vals = np.take_along_axis(x, idx_k, axis=d)

        def backward(g):
            gx = np.zeros_like(x)
            np.put_along_axis(gx, idx_k, g if keepdim else np.expand_dims(g, d), axis=d)
            return (gx,)
        values = Tensor._make(vals if keepdim else np.squeeze(vals, d), (self,), backward, op)
        return MaxResult(values, Tensor(idx_k if keepdim else idx))

    def logsumexp(self, dim, keepdim: bool = False):
        """log(sum(exp(x))) over ``dim``, as m + log(sum(exp(x - m))) with m the max
        (so no exp overflows); an infinite m is replaced by 0, as torch does, so
        a row of -inf gives -inf. Backward: dx = g * exp(x - out) (= softmax(x))."""
        if _names_no_dim(dim):
            raise ValueError("logsumexp: dim must name at least one dimension, got ()")
        dims = self._dims(dim)
        x = self._float_data()
        if x.size == 0:
            m = np.zeros([1 if i in dims else n for i, n in enumerate(x.shape)], x.dtype)
        else:
            m = np.max(x, axis=dims, keepdims=True)
            m = np.where(np.isinf(m), 0, m).astype(x.dtype)
        with np.errstate(divide="ignore"):
            out = np.log(np.sum(np.exp(x - m), axis=dims, keepdims=True)) + m

        def backward(g):
            with np.errstate(invalid="ignore"):
                return (np.exp(x - out) * (g if keepdim else np.expand_dims(g, dims)),)
        res = out if keepdim else np.squeeze(out, axis=dims)
        return Tensor._make(np.asarray(res), (self,), backward, "logsumexp")

    def argmax(self, dim=None, keepdim: bool = False):
        """Index of the first maximum (a NaN counts as the maximum), as ``torch.argmax``;
        with ``dim=None`` the index into the flattened tensor (of shape (1, ..., 1)
        with ``keepdim``)."""
        return self._arg_extreme(np.argmax, dim, keepdim, "argmax")

    def argmin(self, dim=None, keepdim: bool = False):
        """Index of the first minimum, as ``torch.argmin``: see :meth:`argmax`."""
        return self._arg_extreme(np.argmin, dim, keepdim, "argmin")

    def _arg_extreme(self, arg, dim, keepdim, op):
        if dim is None:
            idx = arg(self.data)
            return Tensor(np.reshape(idx, (1,) * self.data.ndim) if keepdim else idx)
        _check_one_dim(dim, op)
        return Tensor(arg(self.data, axis=self._dims(dim)[0], keepdims=keepdim))

    # -- shape ---------------------------------------------------------------------
    def reshape(self, *shape):
        if len(shape) == 1 and not isinstance(shape[0], numbers.Integral):
            shape = tuple(shape[0])
        src = self.data.shape
        try:
            out = self.data.reshape(shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {src} "
                             f"({self.data.size} elements) into {tuple(shape)}") from None
        return Tensor._make(out, (self,), lambda g: (g.reshape(src),), "reshape")

    def view(self, *shape):
        """``reshape`` that never copies, as torch's: the result shares this tensor's memory,
        and a shape the strides cannot give (after a transpose, say) is an error, where
        ``reshape`` would copy. ``.contiguous().view(...)`` is torch's way around it."""
        out = self.reshape(*shape)
        if self.data.size and not np.shares_memory(out.data, self.data):
            raise RuntimeError(f"view: shape {out.shape} is not a view of this tensor of shape "
                               f"{self.shape} and strides {self.data.strides} (it would need a "
                               f"copy); use .reshape(...), or .contiguous().view(...)")
        return out

    def is_contiguous(self) -> bool:
        """Whether the elements lie in memory in row-major order, without gaps (torch's)."""
        return bool(self.data.flags.c_contiguous)

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        s = self.data.shape
        if not s:
            return self.reshape(1)
        start, end = self._dims(start_dim)[0], self._dims(end_dim)[0]
        if start > end:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} "
                             f"for shape {s}")
        return self.reshape(s[:start] + (-1,) + s[end + 1:])


    def unsqueeze(self, dim: int):
        nd = self.data.ndim
        if not -(nd + 1) <= dim <= nd:
            raise IndexError(f"unsqueeze: dim {dim} is out of range for a tensor of {nd} "
                             f"dimensions (expected [{-(nd + 1)}, {nd}])")
        d = dim % (nd + 1)

        return self.reshape(self.data.shape[:d] + (1,) + self.data.shape[d:])

    def squeeze(self, dim=None):
        """Remove size-1 dims: all, or those of ``dim`` (an int or a tuple of ints, each
        in range, as in PyTorch); a named dim that is not of size 1 stays."""
        s = self.data.shape
        if dim is None:
            return self.reshape(tuple(n for n in s if n != 1))
        if _names_no_dim(dim):
            return self  # squeeze(()) removes nothing, as in torch
        d = set(self._dims(dim))  # IndexError out of range; a 0-d tensor accepts dim 0 or -1
        kept = tuple(n for i, n in enumerate(s) if not (i in d and n == 1))
        return self if kept == s else self.reshape(kept)

    def expand(self, *shape):
        if len(shape) == 1 and not isinstance(shape[0], numbers.Integral):
            shape = tuple(shape[0])
        lead = len(shape) - self.data.ndim
        src = self.data.shape
        if lead < 0 or any(n == -1 for n in shape[:lead]):
            raise ValueError(f"expand: cannot expand shape {src} to {tuple(shape)} "
                             f"(-1 is only allowed for existing dims)")
        shape = tuple(src[i - lead] if n == -1 else n for i, n in enumerate(shape))
        try:
            out = np.broadcast_to(self.data, shape)
        except ValueError:
            raise ValueError(f"expand: cannot expand shape {src} to {shape} (only size-1 "
                             f"dims can grow)") from None
        return Tensor._make(out, (self,), lambda g: (unbroadcast(g, src),), "expand")

    def transpose(self, dim0: int, dim1: int):
        out = np.swapaxes(self.data, dim0, dim1)
        return Tensor._make(out, (self,), lambda g: (np.swapaxes(g, dim0, dim1),), "transpose")

    def permute(self, *dims):
        if len(dims) == 1 and not isinstance(dims[0], numbers.Integral):
            dims = tuple(dims[0])
        if sorted(d % self.data.ndim for d in dims) != list(range(self.data.ndim)):
            raise ValueError(f"permute: dims {dims} are not a permutation of {self.data.ndim} dimensions")
        inverse = np.argsort([d % self.data.ndim for d in dims])
        out = np.transpose(self.data, dims)
        return Tensor._make(out, (self,), lambda g: (np.transpose(g, inverse),), "permute")

    @property
    def T(self):
        return self.permute(tuple(reversed(range(self.data.ndim))))

    @property
    def mT(self):
        return self.transpose(-2, -1)

    def contiguous(self):
        """This tensor if it is contiguous, else a row-major copy of it (torch's)."""
        if self.data.flags.c_contiguous:
            return self
        return Tensor._make(np.ascontiguousarray(self.data), (self,), lambda g: (g,),
                            "contiguous")

    def __getitem__(self, index):
        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        x = self.data
        out = x[index]
        advanced = _is_advanced(index)

        def backward(g):
            gx = np.zeros_like(x)
            if advanced:
                np.add.at(gx, index, g)  # repeated indices each add their share
            else:
                gx[index] = g
            return (gx,)
        return Tensor._make(out, (self,), backward, "getitem")

    def masked_fill(self, mask, value: float):
        """Positions where ``mask`` is True take ``value``; their gradient is zero."""
        m = _as_array(mask)
        if m.dtype != np.bool_:
            raise TypeError(f"masked_fill: mask must be boolean, got dtype {m.dtype}")
        try:
            out = np.where(m, np.asarray(value, dtype=self.data.dtype), self.data)
        except ValueError:
            raise ValueError(f"masked_fill: mask of shape {m.shape} does not broadcast "
                             f"to the tensor's shape {self.shape}") from None
        if out.shape != self.data.shape:
            raise ValueError(f"masked_fill: mask of shape {m.shape} would enlarge the tensor "
                             f"of shape {self.shape}")
        src = self.data.shape
        return Tensor._make(out, (self,), lambda g: (unbroadcast(np.where(m, 0, g), src),),
                            "masked_fill")

    # -- in-place helpers used by optimizers (no graph) ------------------------------
    def _check_in_place(self, op: str) -> None:
        """In-place writes are not recorded in the graph, so one on a tensor that is in
        it would leave every gradient computed as if it had not happened: refuse,
        as torch does for a leaf (torch records one on a non-leaf; we cannot)."""
        if self.requires_grad and is_grad_enabled():
            what = ("a leaf Variable that requires grad is being used in an in-place operation"
                    if self.is_leaf else "in-place operations on a tensor in the graph are not "
                    "recorded, so its gradients would be wrong")
            raise RuntimeError(f"{op}: {what} (write under no_grad(), or into .detach())")

    def zero_(self):
        self._check_in_place("zero_")
        self.data[...] = 0
        return self

    def copy_(self, src):
        self._check_in_place("copy_")
        self.data[...] = _as_array(src)
        return self

    # functional aliases, as in PyTorch
    def softmax(self, dim: int):
        from . import functional as F
        return F.softmax(self, dim)

    def log_softmax(self, dim: int):
        from . import functional as F
        return F.log_softmax(self, dim)


def _names_no_dim(dim) -> bool:
    """``dim=()`` or ``[]``: every dim for a reduction (see ``_dims``), none for ``squeeze``."""
    return dim is not None and not isinstance(dim, numbers.Integral) and not tuple(dim)


def _check_one_dim(dim, op: str) -> None:
    if not isinstance(dim, numbers.Integral):
        raise TypeError(f"{op}: dim must be a single int, got {dim!r} (as in torch; "
                        f"amax/amin reduce over several dims)")


def _is_advanced(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, (list, np.ndarray)) for p in parts)


# ----------------------------------------------------------------------------
# constructors and multi-input functions
# ----------------------------------------------------------------------------

def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    """Build a tensor from a list, scalar or array (copies, as ``torch.tensor``)."""
    arr = np.array(_as_array(data, dtype), copy=True)
    return Tensor(arr, requires_grad=requires_grad)


def _shape(shape):
    return tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], numbers.Integral) else shape


def zeros(*shape, dtype=np.float32, requires_grad=False):
    return Tensor(np.zeros(_shape(shape), dtype=dtype), requires_grad)


def ones(*shape, dtype=np.float32, requires_grad=False):
    return Tensor(np.ones(_shape(shape), dtype=dtype), requires_grad)


def full(shape, fill_value, dtype=np.float32, requires_grad=False):
    return Tensor(np.full(shape, fill_value, dtype=dtype), requires_grad)


def zeros_like(t: Tensor, requires_grad=False):
    return Tensor(np.zeros_like(t.data), requires_grad)


def ones_like(t: Tensor, requires_grad=False):
    return Tensor(np.ones_like(t.data), requires_grad)


def randn(*shape, dtype=np.float32, requires_grad=False):
    """Standard normal samples from the seeded generator (see :func:`manual_seed`)."""
    return Tensor(_rng.standard_normal(_shape(shape)).astype(dtype), requires_grad)


def rand(*shape, dtype=np.float32, requires_grad=False):
    return Tensor(_rng.random(_shape(shape)).astype(dtype), requires_grad)


def arange(*args, dtype=None):
    return Tensor(np.arange(*args, dtype=dtype))


def cat(tensors, dim: int = 0) -> Tensor:
    """Concatenate along ``dim``; the gradient is split back into the pieces."""
    tensors = _tensor_list(tensors, "cat")
    tensors = _promoted(tensors)
    arrays = [t.data for t in tensors]
    try:
        out = np.concatenate(arrays, axis=dim)
    except ValueError:
        raise ValueError(f"cat: shapes {[a.shape for a in arrays]} differ outside dim {dim}") from None
    bounds = np.cumsum([a.shape[dim] for a in arrays])[:-1]
    return Tensor._make(out, tuple(tensors), lambda g: tuple(np.split(g, bounds, axis=dim)), "cat")


def stack(tensors, dim: int = 0) -> Tensor:
    """Stack equal-shaped tensors along a new ``dim``."""
    tensors = _tensor_list(tensors, "stack")
    shapes = {t.shape for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"stack: all tensors must have one shape, got {sorted(shapes)}")
    tensors = _promoted(tensors)
    out = np.stack([t.data for t in tensors], axis=dim)
    n = len(tensors)

    def backward(g):
        return tuple(np.take(g, i, axis=dim) for i in range(n))
    return Tensor._make(out, tuple(tensors), backward, "stack")


def _tensor_list(tensors, fn: str) -> list:
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{fn}: expected a non-empty sequence of tensors")
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"{fn}: tensors[{i}] is a {type(t).__name__}, expected a Tensor")
    return tensors


def _promoted(tensors: list) -> list:
    """The tensors cast to their common dtype by torch's rule (int64 with float32 is float32)."""
    dtype = functools.reduce(_promote_types, [t.data.dtype for t in tensors])
    return [_cast(t, dtype) for t in tensors]


def where(condition, input, other) -> Tensor:
    """``input`` where ``condition`` is True, else ``other`` (both may broadcast; a Python
    number is typed as in arithmetic, so where(c, int_tensor, 0.5) is float32, as torch)."""
    c = _as_array(condition)
    if c.dtype != np.bool_:
        raise TypeError(f"where: condition must be boolean, got dtype {c.dtype}")
    if isinstance(input, Tensor) or isinstance(other, Tensor):
        x = input if isinstance(input, Tensor) else other._wrap(input)
        y = other if isinstance(other, Tensor) else x._wrap(other)
    else:  # two numbers: torch's defaults (float32, int64, bool), then promoted as below
        x, y = Tensor(input), Tensor(other)
    dtype = _result_dtype(x, y)
    x, y = _cast(x, dtype), _cast(y, dtype)
    out = np.where(c, x.data, y.data)

    def backward(g):
        return (unbroadcast(np.where(c, g, 0), x.shape) if x.requires_grad else None,
                unbroadcast(np.where(c, 0, g), y.shape) if y.requires_grad else None)
    return Tensor._make(out, (x, y), backward, "where")


def _binary_extreme(input, other, pick, op: str) -> Tensor:
    a, b = (input if isinstance(input, Tensor) else Tensor(input))._operands(other, op)
    x, y = a.data, b.data
    out = pick(x, y)  # NaN propagates, as in torch

    def backward(g):
        # torch's rule: the losing side gets 0, where the two are equal each gets half,
        # and elsewhere (a NaN on either side: no comparison holds) both get all of g
        a_loses, b_loses = (x < y, x > y) if op == "maximum" else (x > y, x < y)
        wa = np.where(x == y, 0.5, ~a_loses).astype(g.dtype)
        wb = np.where(x == y, 0.5, ~b_loses).astype(g.dtype)
        return (unbroadcast(g * wa, x.shape) if a.requires_grad else None,
                unbroadcast(g * wb, y.shape) if b.requires_grad else None)
    return Tensor._make(out, (a, b), backward, op)


def maximum(input, other) -> Tensor:
    """Elementwise maximum (``torch.maximum``); ties split the gradient in half."""
    return _binary_extreme(input, other, np.maximum, "maximum")


def minimum(input, other) -> Tensor:
    """Elementwise minimum (``torch.minimum``); ties split the gradient in half."""
    return _binary_extreme(input, other, np.minimum, "minimum")


def logsumexp(input, dim, keepdim: bool = False) -> Tensor:
    """``torch.logsumexp``: see :meth:`Tensor.logsumexp`."""
    return (input if isinstance(input, Tensor) else Tensor(input)).logsumexp(dim, keepdim)
