"""Symmetric ("absmax") integer quantization, per tensor or per channel.

The grid is the signed integers -Q..Q with Q = 2^(bits-1) - 1 (127 for int8;
the code -128 is left unused so the grid is symmetric and 0 maps to 0).
One scale stretches it over the values:

    scale = max|x| / Q,    q = round(x / scale),    x_hat = q * scale

Every value inside [-max|x|, max|x|] lands within half a step of its code,
so |x - x_hat| <= scale / 2. The price of one scale per tensor: a single
outlier sets max|x| and every other value shares its coarse step. One scale
per channel (``dim``) or per block (:mod:`minigrad.quant.blockwise`) limits
the damage to that channel or block. Reference: Jacob et al. 2018,
"Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference" (symmetric case); Dettmers et al. 2022,
"LLM.int8()" (vector-wise absmax).
"""

from __future__ import annotations

import numpy as np

from ._checks import as_float_array, check_bits, check_dim, int_dtype, reduce_axes

__all__ = ["quantize_absmax", "dequantize_absmax", "absmax_qmax"]


def absmax_qmax(bits: int) -> int:
    """Largest code of the symmetric grid: Q = 2^(bits-1) - 1."""
    return 2 ** (bits - 1) - 1


def quantize_absmax(x, bits: int = 8, dim: int | None = None, narrow_range: bool = True):
    """Symmetric integer quantization: q = round(x / scale), scale = max|x| / Q.

    Args:
        x: float array of any shape.
        bits: 2..8; codes lie in [-(2^(bits-1) - 1), 2^(bits-1) - 1].
        dim: None for one scale per tensor; an axis for one scale per index
            along it (per channel: ``dim=0`` of a (out, in) weight gives one
            scale per output row).
        narrow_range: True (LLM.int8's absmax): codes -Q..Q, scale = max|x| / Q.
            False: torch's observer convention (``MinMaxObserver`` with
            ``qscheme=torch.per_tensor_symmetric``): codes qmin..qmax =
            -(Q+1)..Q, scale = max|x| / ((qmax - qmin) / 2) = max|x| / (Q + 1/2),
            so +max|x| rounds to Q + 1/2 and is clipped to Q, -max|x| lands on
            -(Q+1). torch also floors the scale at float32's eps; here an
            all-zero tensor keeps scale 0.
    Returns:
        (q, scale): ``q`` int8 of ``x``'s shape; ``scale`` float, shape ()
        per tensor or ``x``'s shape with every axis but ``dim`` set to 1
        (so it broadcasts against ``q``). An all-zero tensor or channel gets
        scale 0 and dequantizes to exact zeros.
    """
    fn = "quantize_absmax"
    x = as_float_array(x, fn)
    bits = check_bits(bits, fn)
    dim = check_dim(dim, x.ndim, fn)
    if x.dtype == np.float16:
        x = x.astype(np.float32)  # compute the scale in a format with room for max|x| / Q
    Q = absmax_qmax(bits)
    if not narrow_range:
        return _quantize_full_range(x, Q, dim, int_dtype(bits, signed=True))
    # BEGIN SOLUTION ch6.absmax
    amax = np.abs(x).max(axis=reduce_axes(x.ndim, dim), keepdims=dim is not None) \
        if x.size else np.zeros((), x.dtype)
    scale = (amax / Q).astype(x.dtype)
    # a zero scale (all-zero channel) would divide 0 by 0: divide by 1 there instead
    safe = np.where(scale > 0, scale, np.ones_like(scale))
    q = np.clip(np.rint(x / safe), -Q, Q).astype(int_dtype(bits, signed=True))
    # END SOLUTION
    return q, scale


def _quantize_full_range(x, Q: int, dim, dtype):
    """torch's symmetric observer: scale = max|x| / ((qmax - qmin) / 2), q in [-(Q+1), Q]."""
    amax = np.abs(x).max(axis=reduce_axes(x.ndim, dim), keepdims=dim is not None) \
        if x.size else np.zeros((), x.dtype)
    scale = (amax / ((Q - (-Q - 1)) / 2)).astype(x.dtype)
    # torch multiplies by 1 / scale (quantize_per_tensor, fake_quantize): so do we, for its bits
    inv = np.divide(1, scale, out=np.zeros_like(scale), where=scale > 0).astype(x.dtype)
    return np.clip(np.rint(x * inv), -Q - 1, Q).astype(dtype), scale


def dequantize_absmax(q, scale) -> np.ndarray:
    """x_hat = q * scale (``scale`` broadcasts, as returned by :func:`quantize_absmax`)."""
    q = np.asarray(q)
    scale = np.asarray(scale)
    if q.dtype.kind not in "iu":
        raise TypeError(f"dequantize_absmax: q must be an integer array, got dtype {q.dtype}")
    return q.astype(scale.dtype) * scale
