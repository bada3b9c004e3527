"""Rounding a float32/float64 value onto a format's grid, bit for bit.

Between 2^e and 2^(e+1) a format with m mantissa bits has 2^m evenly spaced
values, ``quantum = 2^(e - m)`` apart; below the smallest normal 2^emin the
spacing stays 2^(emin - m) (subnormals). So rounding is one line per value:

    e = max(floor(log2 |x|), emin)
    round(x) = sign(x) * rint(|x| / 2^(e - m)) * 2^(e - m)

``np.rint`` rounds half to even, IEEE's default: a tie goes to the neighbour
whose last mantissa bit is 0. Division by a power of two is exact, so the
result is exact. Then the edges: a result above ``max`` overflows to inf (or,
for a saturating cast, to +-max), one below half the smallest subnormal
becomes a zero that keeps the sign, and NaN stays NaN.
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..tensor import Tensor
from .format import Format, bfloat16, float16, float32, get_format

__all__ = ["round_to", "round_to_reference", "spacing", "as_float_array"]


def as_float_array(x, fn: str, arg: str = "x") -> np.ndarray:
    """``x`` (ndarray, Tensor, float or nested list) as a floating-point ndarray."""
    a = x.data if isinstance(x, Tensor) else np.asarray(x)
    if a.dtype.kind != "f":
        raise TypeError(f"{fn}: {arg} must be a floating-point array, got dtype {a.dtype} "
                        f"(cast integers with .astype(np.float32) first; bit patterns go to "
                        f"from_bits)")
    return a


def _round_magnitude(a: np.ndarray, f: Format) -> np.ndarray:
    """|x| (float64, finite, >= 0) rounded to nearest-even on the grid of ``f``."""
    # BEGIN SOLUTION ch5.round_nearest_even
    _, E = np.frexp(a)                               # a = frac * 2^E, frac in [0.5, 1)
    e = np.maximum(E - 1, f.min_exp)                 # binade of a; subnormals share emin's
    quantum = np.ldexp(1.0, e - f.mantissa_bits)     # spacing of the grid there
    return np.rint(a / quantum) * quantum            # rint: ties to even
    # END SOLUTION


def round_to_reference(x, fmt, saturate: bool | None = None) -> np.ndarray:
    """Round ``x`` to the nearest value of ``fmt`` (ties to even), as a cast would.

    The readable route, for every format: the module docstring's formula in
    float64. :func:`round_to` gives the same bits, faster on float32 input.

    fp16 agrees with ``x.astype(np.float16)`` and bf16 / fp8 with PyTorch's
    ``tensor.to(torch.bfloat16 / float8_e4m3fn / float8_e5m2)``, bit for bit.

    Args:
        x: float array (float32 or float64; any shape), Tensor or float.
        fmt: a :class:`Format` or its name ("fp16", "bf16", "e4m3", ...).
        saturate: beyond ``max`` (and for inf), clamp to +-max instead of
            overflowing to inf (NaN for formats without inf). None: the
            format's default (PyTorch's float8_e4m3fn cast saturates; the
            others overflow).
    Returns:
        float32 array of ``x``'s shape holding values of ``fmt`` (every fp16,
        bf16 and fp8 value is exactly a float32).
    """
    f = get_format(fmt, "round_to_reference")
    x = as_float_array(x, "round_to_reference")
    sat = f.saturate if saturate is None else bool(saturate)
    with np.errstate(invalid="ignore", over="ignore"):   # NaN payloads warn when widened
        xd = x.astype(np.float64)
        a = np.abs(xd)
        r = _round_magnitude(np.where(np.isfinite(a), a, 0.0), f)
    over = (r > f.max) | (np.isinf(a) & (sat or not f.has_inf))
    beyond = f.max if sat else (np.inf if f.has_inf else np.nan)
    r = np.where(over, beyond, np.where(np.isinf(a), np.inf, r))
    r = np.where(np.isnan(xd), np.nan, np.copysign(r, xd))   # copysign keeps -0.0
    return r.astype(np.float32)


# BEGIN KERNEL ch5.round_nearest_even
def _bfloat16_fast(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 on the bits: add 0x7FFF plus the lowest kept bit, drop the low 16 bits
    (round half to even; a carry that reaches the exponent is the next binade, or inf)."""
    b = np.ascontiguousarray(x, np.float32).view(np.uint32).reshape(x.shape)   # keeps 0-d
    r = (b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return np.where(np.isnan(x), x, r.view(np.float32))   # a NaN's payload must not carry to inf


def _float16_fast(x: np.ndarray) -> np.ndarray:
    """float32 -> fp16 values: keep 11 significant bits of the float32 bits (round half to
    even at bit 13); fp16's subnormal range rounds to multiples of 2^-24; beyond max, inf."""
    b = np.ascontiguousarray(x, np.float32).view(np.uint32).reshape(x.shape)   # keeps 0-d
    r = (b + np.uint32(0x0FFF) + ((b >> np.uint32(13)) & np.uint32(1))) & np.uint32(0xFFFFE000)
    y = r.view(np.float32)
    a = np.abs(x)
    y = np.where(a < np.float32(2.0 ** -14), np.rint(x * np.float32(2.0 ** 24)) * np.float32(2.0 ** -24), y)
    y = np.where(np.abs(y) > np.float32(65504.0), np.copysign(np.float32(np.inf), x), y)
    return np.where(np.isnan(x), x, y)
# END KERNEL


def round_to(x, fmt, saturate: bool | None = None) -> np.ndarray:
    """Round ``x`` to the nearest value of ``fmt`` (ties to even), as a cast would.

    :func:`round_to_reference` (the readable formula) runs under
    ``minigrad.kernels.use("reference")``; with the fast kernels (the default),
    float32 input to fp16 or bf16 without saturation is rounded on the float32
    bits instead, the same bits (tests/test_formats.py holds the two equal).
    ``benchmarks/bench_formats.py``: bf16 2-40x NumPy's fp16
    cast; fp16 8x it on gradient-sized values (NumPy's cast is slow near the
    subnormals), 2.5x slower on values of order 1. Autocast calls this
    on every Linear's inputs, outputs and gradients.

    Args:
        x: float array (float32 or float64; any shape), Tensor or float.
        fmt: a :class:`Format` or its name ("fp16", "bf16", "e4m3", ...).
        saturate: as in :func:`round_to_reference`.
    Returns:
        float32 array of ``x``'s shape holding values of ``fmt``.
    """
    f = get_format(fmt, "round_to")
    x = as_float_array(x, "round_to")
    # BEGIN KERNEL ch5.round_nearest_even
    if kernels.fast() and x.dtype == np.float32 and not (f.saturate if saturate is None else saturate):
        with np.errstate(over="ignore", invalid="ignore"):
            if f == float16:
                return _float16_fast(x)
            if f == bfloat16:
                return _bfloat16_fast(x)
            if f == float32:
                return x.copy()
    # END KERNEL
    return round_to_reference(x, f, saturate)


def spacing(x, fmt) -> np.ndarray:
    """Gap between ``round_to(x, fmt)`` and the next value of larger magnitude.

    ``2^(max(e, emin) - m)`` with e = floor(log2 |x|); the sign follows x, as
    ``np.spacing`` (with which it agrees on fp16 and fp32 below ``max``; at
    ``max`` NumPy answers inf, the next value being inf, this gives the gap
    the exponent implies). Relative spacing |spacing / x| lies in
    (eps / 2, eps]. Non-finite x gives NaN.

    Args:
        x: float array, any shape.  fmt: a :class:`Format` or its name.
    Returns:
        float64 array of ``x``'s shape.
    """
    f = get_format(fmt, "spacing")
    x = as_float_array(x, "spacing")
    r = np.abs(round_to(x, f, saturate=True).astype(np.float64))
    _, E = np.frexp(r)
    gap = np.ldexp(1.0, np.maximum(E - 1, f.min_exp) - f.mantissa_bits)
    return np.where(np.isfinite(x), np.copysign(gap, x), np.nan)
