"""Affine (asymmetric) integer quantization with a zero point.

The unsigned grid 0..Q, Q = 2^bits - 1, is stretched over [lo, hi], the
range of the values widened to include 0:

    scale = (hi - lo) / Q,   zero_point = round(-lo / scale)
    q = clip(round(x / scale) + zero_point, 0, Q),   x_hat = (q - zero_point) * scale

``zero_point`` is an integer code, so the real value 0 is represented
exactly (q = zero_point): zero padding and ReLU zeros stay zero. On skewed
data (all positive after a ReLU, say) absmax wastes the negative half of its
grid; affine spends all 2^bits codes on the range actually used, so its step
is up to twice finer. Error: |x - x_hat| <= scale / 2. Reference: Jacob et
al. 2018, "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", eq. (1)-(2).
"""

from __future__ import annotations

import numpy as np

from ._checks import as_float_array, check_bits, check_dim, int_dtype, reduce_axes

__all__ = ["quantize_affine", "dequantize_affine"]


def quantize_affine(x, bits: int = 8, dim: int | None = None):
    """Asymmetric quantization to the unsigned grid 0..2^bits - 1.

    Args:
        x: float array of any shape.
        bits: 2..8.
        dim: None (per tensor) or the channel axis (one scale and zero point
            per index along it).
    Returns:
        (q, scale, zero_point): ``q`` uint8 of ``x``'s shape; ``scale``
        float and ``zero_point`` uint8, shape () or broadcastable against
        ``q`` (every axis but ``dim`` of size 1). An all-zero tensor or
        channel gets scale 1 and zero point 0.
    """
    fn = "quantize_affine"
    x = as_float_array(x, fn)
    bits = check_bits(bits, fn)
    dim = check_dim(dim, x.ndim, fn)
    if x.dtype == np.float16:
        x = x.astype(np.float32)
    Q = 2 ** bits - 1
    axes, keep = reduce_axes(x.ndim, dim), dim is not None
    # BEGIN SOLUTION ch6.affine
    # widen the range to include 0, so that 0 gets its own code
    lo = np.minimum(x.min(axis=axes, keepdims=keep), 0) if x.size else np.zeros((), x.dtype)
    hi = np.maximum(x.max(axis=axes, keepdims=keep), 0) if x.size else np.zeros((), x.dtype)
    scale = ((hi - lo) / Q).astype(x.dtype)
    scale = np.where(scale > 0, scale, np.ones_like(scale))  # all zeros: any scale is exact
    zero_point = np.clip(np.rint(-lo / scale), 0, Q)
    q = np.clip(np.rint(x / scale) + zero_point, 0, Q)
    # END SOLUTION
    udt = int_dtype(bits, signed=False)
    return q.astype(udt), scale, zero_point.astype(udt)


def dequantize_affine(q, scale, zero_point) -> np.ndarray:
    """x_hat = (q - zero_point) * scale, the subtraction done in a signed type."""
    q = np.asarray(q)
    if q.dtype.kind not in "iu":
        raise TypeError(f"dequantize_affine: q must be an integer array, got dtype {q.dtype}")
    scale = np.asarray(scale)
    # uint8 - uint8 would wrap around below zero: subtract as int32
    return (q.astype(np.int32) - np.asarray(zero_point).astype(np.int32)).astype(scale.dtype) * scale
