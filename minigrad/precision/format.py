"""A floating-point format: sign, exponent and mantissa bits, and what follows from them.

A normal value with exponent field E (1 <= E, and not the reserved top pattern)
and mantissa field M (m bits) is

    (-1)^s * (1 + M / 2^m) * 2^(E - bias),     bias = 2^(e-1) - 1,

and a subnormal (E = 0) is (-1)^s * (M / 2^m) * 2^(1 - bias): the grid keeps its
last spacing down to zero. Everything else is a consequence of e and m:

    eps              = 2^-m                      (spacing of the grid at 1.0)
    smallest normal  = 2^(1 - bias)              (``tiny``, as ``np.finfo``)
    smallest subnorm = 2^(1 - bias - m)
    max              = (2 - 2^-m) * 2^(2^e - 2 - bias)     (IEEE: top exponent is inf/NaN)

``float8_e4m3fn`` ("fn": finite, NaN only) gives up inf: its top exponent holds
normal values except the one pattern S.1111.111, which is NaN, so its max is
1.75 * 2^8 = 448 instead of 240 (Micikevicius et al. 2022, "FP8 Formats for Deep
Learning"). Attribute names follow ``torch.finfo`` / ``np.finfo``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Format", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2",
           "FORMATS", "get_format", "format_table"]


@dataclass(frozen=True)
class Format:
    """A binary floating-point format with ``exponent_bits`` and ``mantissa_bits``.

    ``has_inf``: IEEE-style (top exponent field = inf / NaN). ``False`` is the
    "fn" layout of float8_e4m3fn (only all-ones is NaN). ``saturate``: what a
    cast does with values beyond ``max`` (and inf) by default: clamp to +-max
    (True, PyTorch's float8_e4m3fn cast) or overflow to inf / NaN (False).
    """

    name: str
    exponent_bits: int
    mantissa_bits: int
    has_inf: bool = True
    saturate: bool = False

    @property
    def bits(self) -> int:
        return 1 + self.exponent_bits + self.mantissa_bits

    @property
    def bias(self) -> int:
        return 2 ** (self.exponent_bits - 1) - 1

    @property
    def min_exp(self) -> int:
        """Exponent of the smallest normal value (and of the subnormal spacing)."""
        return 1 - self.bias

    @property
    def max_exp(self) -> int:
        """Exponent of the largest finite value."""
        top = 2 ** self.exponent_bits - 1            # all-ones exponent field
        return (top - 1 if self.has_inf else top) - self.bias

    @property
    def max(self) -> float:
        m = self.mantissa_bits
        # "fn": the all-ones mantissa of the top exponent is NaN, so one step below 2 - 2^-m
        frac = 2 - 2.0 ** -m if self.has_inf else 2 - 2.0 ** (1 - m)
        return frac * 2.0 ** self.max_exp

    @property
    def min(self) -> float:
        """The most negative finite value, -max (as ``finfo.min``)."""
        return -self.max

    @property
    def eps(self) -> float:
        """Spacing between 1.0 and the next value, 2^-mantissa_bits."""
        return 2.0 ** -self.mantissa_bits

    @property
    def smallest_normal(self) -> float:
        return 2.0 ** self.min_exp

    @property
    def tiny(self) -> float:
        """Alias of ``smallest_normal`` (NumPy and PyTorch call it both)."""
        return self.smallest_normal

    @property
    def smallest_subnormal(self) -> float:
        return 2.0 ** (self.min_exp - self.mantissa_bits)

    @property
    def precision(self) -> int:
        """Decimal digits the format resolves, int(-log10(eps)), as ``np.finfo``."""
        return int(-math.log10(self.eps))

    @property
    def resolution(self) -> float:
        """10^-precision, as ``np.finfo`` / ``torch.finfo`` (1e-6 for fp32, 0.01 for bf16)."""
        return 10.0 ** -self.precision

    @property
    def itemsize(self) -> int:
        """Bytes per value."""
        return self.bits // 8

    def __repr__(self):
        return (f"Format({self.name}: 1 sign, {self.exponent_bits} exponent, {self.mantissa_bits} "
                f"mantissa bits; max={self.max:.6g}, eps={self.eps:.6g}, "
                f"smallest_normal={self.smallest_normal:.6g})")


float32 = Format("float32", 8, 23)
float16 = Format("float16", 5, 10)
bfloat16 = Format("bfloat16", 8, 7)
float8_e4m3fn = Format("float8_e4m3fn", 4, 3, has_inf=False, saturate=True)
float8_e5m2 = Format("float8_e5m2", 5, 2)

FORMATS = (float32, float16, bfloat16, float8_e4m3fn, float8_e5m2)

_ALIASES = {
    "float32": float32, "fp32": float32, "float": float32, "single": float32,
    "float16": float16, "fp16": float16, "half": float16,
    "bfloat16": bfloat16, "bf16": bfloat16,
    "float8_e4m3fn": float8_e4m3fn, "e4m3": float8_e4m3fn, "fp8_e4m3": float8_e4m3fn,
    "e4m3fn": float8_e4m3fn,
    "float8_e5m2": float8_e5m2, "e5m2": float8_e5m2, "fp8_e5m2": float8_e5m2,
}


def get_format(fmt, fn: str = "get_format") -> Format:
    """``fmt`` as a :class:`Format`: a Format, or a name ("fp16", "bfloat16", "e4m3", ...)."""
    if isinstance(fmt, Format):
        return fmt
    if isinstance(fmt, str) and fmt.lower() in _ALIASES:
        return _ALIASES[fmt.lower()]
    raise ValueError(f"{fn}: fmt must be a Format or one of {sorted(_ALIASES)}, got {fmt!r}")


def format_table(formats=FORMATS) -> list[dict]:
    """One row per format: bits, fields, max, smallest normal/subnormal, eps, decimal digits."""
    rows = []
    for f in (get_format(f, "format_table") for f in formats):
        rows.append({"format": f.name, "bits": f.bits, "exponent": f.exponent_bits,
                     "mantissa": f.mantissa_bits, "max": f.max,
                     "smallest_normal": f.smallest_normal,
                     "smallest_subnormal": f.smallest_subnormal, "eps": f.eps,
                     "digits": math.log10(2) * (f.mantissa_bits + 1)})
    return rows
