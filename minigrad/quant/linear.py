"""QuantLinear: a linear layer whose weight is stored as int8 or 4-bit codes.

Two ways to use a quantized weight, as the libraries do:
- int8 (LLM.int8()-style, Dettmers et al. 2022): quantize the input per
  row on the fly and multiply in integers (:func:`int8_linear`).
- nf4/fp4 (QLoRA, Dettmers et al. 2023): dequantize the weight to float32
  just before the matmul; storage is 4 bits, compute is float.

The weight is frozen (no gradient); the input still gets one, through the
dequantized weight (straight-through for the input's quantization), so a
QuantLinear can sit inside a model that is being fine-tuned (QLoRA).
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..autograd import Function
from ..nn import Linear, Module, Parameter
from ..tensor import Tensor
from .absmax import dequantize_absmax, quantize_absmax
from .int8_matmul import int8_linear
from .nf4 import dequantize_4bit, quantize_4bit

__all__ = ["QuantLinear"]

WEIGHT_DTYPES = ("int8", "nf4", "fp4")


class _Int8Linear(Function):
    """Forward in integers; backward d(x) = g @ W_hat (the rounding of x passed straight through)."""

    @staticmethod
    def forward(ctx, x, weight_q, weight_scale):
        ctx.w_hat = dequantize_absmax(weight_q, weight_scale)   # (out, in)
        return int8_linear(x, weight_q, weight_scale).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        return (g @ ctx.w_hat).astype(g.dtype, copy=False), None, None


class QuantLinear(Module):
    """y = x W_hat^T + b with W stored as int8 (per output channel) or NF4/FP4 (blockwise).

    Args:
        weight: (out_features, in_features) float array.
        bias: (out_features,) float array or None (kept in float, trainable).
        weight_dtype: "int8", "nf4" or "fp4".
        blocksize: block size of the 4-bit formats.
        compress_statistics: double-quantize the 4-bit formats' absmax.
    """

    def __init__(self, weight, bias=None, weight_dtype: str = "int8", blocksize: int = 64,
                 compress_statistics: bool = False):
        super().__init__()
        if weight_dtype not in WEIGHT_DTYPES:
            raise ValueError(f"QuantLinear: weight_dtype must be one of {WEIGHT_DTYPES}, "
                             f"got {weight_dtype!r}")
        W = np.asarray(weight.data if isinstance(weight, Tensor) else weight)
        if W.ndim != 2:
            raise ValueError(f"QuantLinear: weight must be 2-D (out, in), got shape {W.shape}")
        self.out_features, self.in_features = W.shape
        self.weight_dtype = weight_dtype
        if weight_dtype == "int8":
            q, scale = quantize_absmax(W.astype(np.float32), bits=8, dim=0)
            self.register_buffer("weight_q", q)              # (out, in) int8
            self.register_buffer("weight_scale", scale)      # (out, 1) float32
        else:
            packed, state = quantize_4bit(W.astype(np.float32), blocksize=blocksize,
                                          compress_statistics=compress_statistics,
                                          quant_type=weight_dtype)
            self.register_buffer("weight_packed", packed)    # (out * in / 2,) uint8
            self.quant_state = state
        self.bias = None if bias is None else Parameter(np.asarray(
            bias.data if isinstance(bias, Tensor) else bias, np.float32).copy())

    @classmethod
    def from_linear(cls, linear: Linear, weight_dtype: str = "int8", blocksize: int = 64,
                    compress_statistics: bool = False) -> QuantLinear:
        return cls(linear.weight, linear.bias, weight_dtype, blocksize, compress_statistics)

    def dequantized_weight(self) -> np.ndarray:
        """W_hat, (out, in) float32."""
        if self.weight_dtype == "int8":
            return dequantize_absmax(self.weight_q, self.weight_scale)
        return dequantize_4bit(self.weight_packed, self.quant_state)

    def weight_nbytes(self) -> int:
        """Bytes held for the weight: codes plus scales (the bias not included)."""
        if self.weight_dtype == "int8":
            return self.weight_q.nbytes + self.weight_scale.nbytes
        return self.weight_packed.nbytes + self.quant_state.nbytes()

    def forward(self, input) -> Tensor:
        x = input if isinstance(input, Tensor) else Tensor(input)
        if self.weight_dtype == "int8":
            y = _Int8Linear.apply(x, self.weight_q, self.weight_scale)
            return y if self.bias is None else y + self.bias
        return F.linear(x, Tensor(self.dequantized_weight().astype(x.dtype)), self.bias)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"weight_dtype={self.weight_dtype}, bias={self.bias is not None}")
