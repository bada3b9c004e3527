"""Bit patterns: a value of a format as its sign, exponent and mantissa fields.

    bits = sign << (e + m) | exponent_field << m | mantissa_field

decoded as (-1)^s (1 + M/2^m) 2^(E - bias) for E >= 1 (normal),
(-1)^s (M/2^m) 2^(1 - bias) for E = 0 (subnormal), and inf / NaN for the
all-ones exponent of IEEE formats (float8_e4m3fn: only S.1111.111 is NaN).
Codes are held in the smallest unsigned integer that fits (uint8, uint16,
uint32); values in float32.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .format import Format, get_format
from .rounding import as_float_array, round_to

__all__ = ["to_bits", "from_bits", "decompose", "bit_string", "FloatFields", "bits_dtype",
           "nan_bits", "representable_values"]


def bits_dtype(fmt) -> np.dtype:
    """uint8 / uint16 / uint32: the integer type holding one code of ``fmt``."""
    f = get_format(fmt, "bits_dtype")
    return np.dtype({8: np.uint8, 16: np.uint16, 32: np.uint32}[f.bits])


def nan_bits(fmt) -> int:
    """The NaN code produced here: quiet NaN (exponent all ones, top mantissa bit)
    for IEEE formats; all ones (S.1111.111) for float8_e4m3fn, its only NaN."""
    f = get_format(fmt, "nan_bits")
    exp_all = (1 << f.exponent_bits) - 1
    mant = (1 << (f.mantissa_bits - 1)) if f.has_inf else (1 << f.mantissa_bits) - 1
    return exp_all << f.mantissa_bits | mant


class FloatFields(NamedTuple):
    """The three fields of a code, as integer arrays (raw, before the bias)."""

    sign: np.ndarray
    exponent: np.ndarray
    mantissa: np.ndarray


def to_bits(x, fmt, saturate: bool | None = None) -> np.ndarray:
    """The code of ``round_to(x, fmt)``: sign | biased exponent | mantissa.

    Args:
        x: float array, any shape.  fmt: a :class:`Format` or its name.
        saturate: as in :func:`round_to`.
    Returns:
        unsigned integer array (:func:`bits_dtype`) of ``x``'s shape. NaN
        becomes :func:`nan_bits` with x's sign.
    """
    f = get_format(fmt, "to_bits")
    x = as_float_array(x, "to_bits")
    r = round_to(x, f, saturate).astype(np.float64)
    m, emin = f.mantissa_bits, f.min_exp
    a = np.abs(r)
    finite = np.isfinite(a)
    a0 = np.where(finite, a, 0.0)
    normal = a0 >= f.smallest_normal
    _, E = np.frexp(a0)
    e = np.where(normal, E - 1, emin)
    exp_field = np.where(normal, e + f.bias, 0)
    mant = np.ldexp(a0, m - e) - np.where(normal, 2 ** m, 0)   # M = (a / 2^e - 1) 2^m, exact
    code = exp_field.astype(np.int64) << m | mant.astype(np.int64)
    code = np.where(np.isinf(a), ((1 << f.exponent_bits) - 1) << m, code)
    code = np.where(np.isnan(a), nan_bits(f), code)
    code = code | (np.signbit(r).astype(np.int64) << (f.bits - 1))
    return code.astype(bits_dtype(f))


def decompose(x, fmt) -> FloatFields:
    """Sign, biased exponent and mantissa fields of ``round_to(x, fmt)`` (for teaching)."""
    f = get_format(fmt, "decompose")
    code = to_bits(x, f).astype(np.int64)
    m, e = f.mantissa_bits, f.exponent_bits
    return FloatFields(code >> (e + m), (code >> m) & ((1 << e) - 1), code & ((1 << m) - 1))


def from_bits(bits, fmt) -> np.ndarray:
    """Decode codes of ``fmt`` into float32 values.

    Args:
        bits: integer array, any shape, each in [0, 2^fmt.bits).
        fmt: a :class:`Format` or its name.
    Returns:
        float32 array of ``bits``' shape.
    """
    f = get_format(fmt, "from_bits")
    b = np.asarray(bits)
    if b.dtype.kind not in "iu":
        raise TypeError(f"from_bits: bits must be an integer array, got dtype {b.dtype}")
    if b.size and (b.min() < 0 or b.max() >= 1 << f.bits):
        raise ValueError(f"from_bits: bits must lie in [0, 2^{f.bits}) for {f.name}, "
                         f"got values in [{b.min()}, {b.max()}]")
    b = b.astype(np.int64)
    m, ne = f.mantissa_bits, f.exponent_bits
    # BEGIN SOLUTION ch5.decode_bits
    sign = np.where(b >> (ne + m) & 1, -1.0, 1.0)
    E = b >> m & ((1 << ne) - 1)
    M = b & ((1 << m) - 1)
    top = E == (1 << ne) - 1
    normal = (1.0 + np.ldexp(M, -m)) * np.ldexp(1.0, E - f.bias)
    subnormal = np.ldexp(M, -m) * np.ldexp(1.0, f.min_exp)
    value = np.where(E == 0, subnormal, normal)
    if f.has_inf:
        value = np.where(top, np.where(M == 0, np.inf, np.nan), value)
    else:
        value = np.where(top & (M == (1 << m) - 1), np.nan, value)
    return (sign * value).astype(np.float32)
    # END SOLUTION


def bit_string(x, fmt) -> str:
    """One value's code as 'sign exponent mantissa' digits, e.g. fp16 1.0 -> '0 01111 0000000000'."""
    f = get_format(fmt, "bit_string")
    x = as_float_array(x, "bit_string")
    if x.size != 1:
        raise ValueError(f"bit_string: x must be a single value, got shape {x.shape}")
    s, e, m = (int(v) for v in decompose(x.reshape(()), f))
    return f"{s} {e:0{f.exponent_bits}b} {m:0{f.mantissa_bits}b}"


def representable_values(fmt: Format | str, finite: bool = True) -> np.ndarray:
    """Every value of a format of at most 16 bits, sorted (-0 dropped), as float32.

    65 536 values for fp16 / bf16, 256 for fp8: what the grid plots use.
    """
    f = get_format(fmt, "representable_values")
    if f.bits > 16:
        raise ValueError(f"representable_values: fmt must have at most 16 bits, "
                         f"{f.name} has {f.bits} (2^{f.bits} values)")
    v = from_bits(np.arange(1 << f.bits), f)
    v = v[~np.isnan(v)] if not finite else v[np.isfinite(v)]
    return np.unique(v)      # -0.0 == 0.0: unique keeps one zero
