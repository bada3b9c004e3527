"""Integer matrix multiply: int8 x int8 products summed in an int32 accumulator.

With activations quantized per row (scale s_x[i]) and weights per output
channel (scale s_w[j]), a linear layer becomes

    y[i, j] = sum_k x[i, k] W[j, k] ~= s_x[i] s_w[j] * sum_k qx[i, k] qW[j, k]

The sum is all integer: one int32 matmul, then one float multiply per output
("rescale"). The accumulator must be wide: each product is up to
Q^2 = 127^2 = 16129, so an int16 accumulator can overflow after 3 terms;
int32 holds k * 16129 for k up to 133,000. Reference: Jacob et al. 2018
(integer-arithmetic-only inference, int32 accumulators); Dettmers et al.
2022, "LLM.int8()" (vector-wise scales: rows of X, columns of W).
"""

from __future__ import annotations

import math

import numpy as np

from ._checks import as_float_array
from .absmax import absmax_qmax, quantize_absmax

__all__ = ["int8_matmul", "int8_linear", "accumulator_bits"]


def accumulator_bits(k: int, bits: int = 8) -> int:
    """Bits of a signed accumulator that cannot overflow summing ``k`` products of
    ``bits``-bit symmetric codes: max |sum| = k * Q^2, plus a sign bit."""
    if k < 1:
        raise ValueError(f"accumulator_bits: k must be >= 1, got {k}")
    Q = absmax_qmax(bits)
    return math.ceil(math.log2(k * Q * Q + 1)) + 1


def int8_matmul(A, B) -> np.ndarray:
    """C = A @ B for int8 A (m, k) and B (k, n), accumulated in int32: (m, n) int32."""
    A, B = np.asarray(A), np.asarray(B)
    if A.dtype != np.int8 or B.dtype != np.int8:
        raise TypeError(f"int8_matmul: A and B must be int8, got {A.dtype} and {B.dtype}")
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[0]:
        raise ValueError(f"int8_matmul: shapes {A.shape} and {B.shape} do not align")
    if A.shape[1] * 128 * 128 >= 2 ** 31:
        raise ValueError(f"int8_matmul: k = {A.shape[1]} could overflow the int32 accumulator")
    # widen before multiplying: int8 * int8 in int8 would wrap at 127
    return A.astype(np.int32) @ B.astype(np.int32)


def int8_linear(x, weight_q, weight_scale, bias=None) -> np.ndarray:
    """y = x W^T + b with x quantized per row and W per output channel, int32 accumulation.

    Args:
        x: (..., in) float.
        weight_q: (out, in) int8, from ``quantize_absmax(W, dim=0)``.
        weight_scale: (out, 1) float, its scales.
        bias: (out,) float or None.
    Returns:
        (..., out) float32.
    """
    x = as_float_array(x, "int8_linear")
    lead, k = x.shape[:-1], x.shape[-1]
    x2 = x.reshape(-1, k).astype(np.float32)                     # (..., in) -> (N, in)
    xq, xs = quantize_absmax(x2, bits=8, dim=0)                  # (N, in) int8, (N, 1)
    acc = int8_matmul(xq, np.ascontiguousarray(weight_q.T))     # (N, out) int32
    y = acc.astype(np.float32) * (xs * np.asarray(weight_scale, np.float32).reshape(1, -1))
    if bias is not None:
        y += np.asarray(bias, np.float32)
    return y.reshape(*lead, -1)
