"""Autocast: run the matmul-type ops in a 16-bit format, everything else in fp32.

NumPy has no bfloat16 and its float16 matmul is slow and accumulates in 16
bits, so the low-precision format is *emulated*: a tensor "in fp16" is a
float32 array whose values lie on fp16's grid (:func:`minigrad.precision.round_to`).
:func:`cast_to` is the cast as a differentiable op; its backward rounds the
gradient to the same format, because the gradient of an fp16 tensor is an
fp16 tensor: that is where small gradients underflow to zero.

Inside ``with autocast("cpu", dtype="float16"):`` every ``nn.Linear`` computes

    y = cast(cast(x) @ cast(W)^T + cast(b))        # products summed in fp32, as tensor cores do

while the weights stay fp32 *master* weights: their ``.grad`` receives the
16-bit gradient, converted to fp32, and the optimizer updates the fp32 copy
(PyTorch's autocast does the same). The patch is installed on
``nn.Linear.forward`` on entering the outermost context and removed on leaving,
so no engine file changes and code outside the context is untouched.

Which op runs in which precision (as torch.autocast's op lists):

    ================================  ===========  ==========================================
    op                                precision    why
    ================================  ===========  ==========================================
    nn.Linear (matmul + bias)         fp16/bf16    most of the FLOPs; tensor cores; sums in fp32
    attention projections (Linear)    fp16/bf16    they are Linear layers
    relu, gelu, add, mul, dropout     inputs' own  elementwise: exact on the grid, or promoted
    softmax, log_softmax              fp32         exp overflows fp16 beyond 11; sums of many terms
    cross_entropy, mse_loss           fp32         log-sum-exp and a mean over the batch
    layer_norm, rms_norm              fp32         a variance is a sum of squares (overflow, cancellation)
    sum, mean (reductions)            fp32         adding many terms: fp16's 11 bits lose the small ones
    optimizer step, master weights    fp32         updates far below the 16-bit spacing of the weight
    ================================  ===========  ==========================================
"""

from __future__ import annotations

import contextlib

from .. import functional as F
from ..autograd import Function
from ..nn import Linear
from .format import Format, get_format
from .rounding import round_to

__all__ = ["cast_to", "autocast", "is_autocast_enabled", "get_autocast_dtype", "AUTOCAST_OPS"]

AUTOCAST_OPS = (
    ("nn.Linear (matmul + bias)", "low", "most of the FLOPs; tensor cores; products summed in fp32"),
    ("attention projections (Linear)", "low", "they are Linear layers"),
    ("relu, gelu, add, mul, dropout", "inputs", "elementwise: exact on the grid, or promoted to fp32"),
    ("softmax, log_softmax", "fp32", "exp overflows fp16 beyond 11; a sum of many terms"),
    ("cross_entropy, mse_loss", "fp32", "log-sum-exp and a mean over the batch"),
    ("layer_norm, rms_norm", "fp32", "a variance is a sum of squares: overflow and cancellation"),
    ("sum, mean (reductions)", "fp32", "adding many terms: 11 significant bits lose the small ones"),
    ("optimizer step (master weights)", "fp32", "updates far below the 16-bit spacing of the weight"),
)


class _CastTo(Function):
    """Round to a format's grid; the gradient is rounded to the same format."""

    @staticmethod
    def forward(ctx, x, fmt):
        ctx.fmt = fmt
        return round_to(x, fmt).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        return round_to(grad, ctx.fmt).astype(grad.dtype, copy=False), None


def cast_to(x, fmt):
    """Differentiable cast of a Tensor to ``fmt`` (values on its grid, dtype unchanged).

    forward: round_to(x, fmt);  backward: round_to(grad, fmt)  (an fp16 tensor's
    gradient is fp16: below 2^-25 it becomes 0, above 65504 inf).

    Args:
        x: Tensor, any shape, float32 or float64.  fmt: Format or name ("fp16", "bf16", ...).
    Returns:
        Tensor of x's shape and dtype.
    """
    return _CastTo.apply(x, get_format(fmt, "cast_to"))


# ----------------------------------------------------------------------------
# the autocast context
# ----------------------------------------------------------------------------

_state = {"fmt": None, "depth": 0, "forward": None}


def _autocast_linear_forward(self, input):
    fmt = _state["fmt"]
    if fmt is None:                               # an inner autocast(enabled=False)
        return _state["forward"](self, input)
    b = None if self.bias is None else cast_to(self.bias, fmt)
    out = F.linear(cast_to(input, fmt), cast_to(self.weight, fmt), b)   # fp32 accumulation
    return cast_to(out, fmt)


def is_autocast_enabled() -> bool:
    return _state["fmt"] is not None


def get_autocast_dtype() -> Format | None:
    """The format Linear layers compute in right now (None outside autocast)."""
    return _state["fmt"]


@contextlib.contextmanager
def autocast(device_type: str = "cpu", dtype="bfloat16", enabled: bool = True):
    """``torch.autocast``: inside, ``nn.Linear`` runs in ``dtype`` (see the table above).

    Args:
        device_type: "cpu" (the only device; kept so calls read as in PyTorch).
        dtype: "float16" / "bfloat16" (or a Format of 16 bits or fewer); PyTorch's CPU
            default is bfloat16.
        enabled: False runs the block in fp32 (an inner ``autocast(enabled=False)``
            switches it off for a region).
    """
    if device_type != "cpu":
        raise ValueError(f"autocast: device_type must be 'cpu', got {device_type!r}")
    fmt = get_format(dtype, "autocast")
    if fmt.bits > 16:
        raise ValueError(f"autocast: dtype must be a format of at most 16 bits "
                         f"(float16, bfloat16, fp8), got {fmt.name}")
    prev = _state["fmt"]
    if _state["depth"] == 0:
        _state["forward"] = Linear.forward
        Linear.forward = _autocast_linear_forward
    _state["depth"] += 1
    _state["fmt"] = fmt if enabled else None
    try:
        yield
    finally:
        _state["fmt"] = prev
        _state["depth"] -= 1
        if _state["depth"] == 0:
            Linear.forward = _state["forward"]
            _state["forward"] = None
