"""Chapter 5 (first half): number formats.

Read in this order: :mod:`format` (a format as sign, exponent and mantissa
bits; range, spacing, eps; fp32, fp16, bf16, fp8 e4m3fn and e5m2),
:mod:`rounding` (round to nearest even onto a format's grid, overflow,
underflow, spacing), :mod:`bits` (codes: encode, decode, the fields).

Values of every format are held in float32 arrays on the format's grid, so
the rest of minigrad computes with them unchanged. Loss scaling and mixed
precision training live in :mod:`minigrad.amp`.
"""

from .bits import (FloatFields, bit_string, bits_dtype, decompose, from_bits, nan_bits,
                   representable_values, to_bits)
from .format import (FORMATS, Format, bfloat16, float8_e4m3fn, float8_e5m2, float16, float32,
                     format_table, get_format)
from .rounding import round_to, spacing

__all__ = [
    "Format", "FORMATS", "get_format", "format_table",
    "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2",
    "round_to", "spacing",
    "to_bits", "from_bits", "decompose", "bit_string", "FloatFields", "bits_dtype", "nan_bits",
    "representable_values",
]
