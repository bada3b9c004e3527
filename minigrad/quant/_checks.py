"""Input checks shared by the quantizers: raised at the public boundary, naming
the function, the argument and the range that was expected."""

from __future__ import annotations

import numbers

import numpy as np

from ..tensor import Tensor


def as_float_array(x, fn: str, arg: str = "x") -> np.ndarray:
    """``x`` (ndarray, Tensor or nested list) as a finite floating-point ndarray."""
    a = x.data if isinstance(x, Tensor) else np.asarray(x)
    if a.dtype.kind != "f":
        raise TypeError(f"{fn}: {arg} must be a floating-point array, got dtype {a.dtype} "
                        f"(cast integers with .astype(np.float32) first)")
    if a.size and not np.isfinite(a).all():
        bad = "NaN" if np.isnan(a).any() else "inf"
        raise ValueError(f"{fn}: {arg} contains {bad}; quantization needs finite values")
    return a


FLOAT32_MAX = float(np.finfo(np.float32).max)


def as_float32_input(x, fn: str, arg: str = "x") -> tuple[np.ndarray, np.ndarray]:
    """(x as given, x as a flat contiguous float32 array) for the blockwise quantizers.

    They compute in float32, as bitsandbytes does (it takes float32, float16 and
    bfloat16 tensors). A finite float64 value beyond float32's range would become
    inf in the cast and dequantize to NaN, so it is refused here instead.
    """
    a = as_float_array(x, fn, arg)
    if a.dtype.itemsize > 4 and a.size and np.abs(a).max() > FLOAT32_MAX:
        raise ValueError(f"{fn}: {arg} has values up to {np.abs(a).max():.3g}, beyond float32's "
                         f"range (|x| <= {FLOAT32_MAX:.4g}); blockwise quantization computes "
                         f"in float32, as bitsandbytes does: rescale x first")
    return a, np.ascontiguousarray(a, dtype=np.float32).reshape(-1)


def check_bits(bits, fn: str, low: int = 2, high: int = 8) -> int:
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or not low <= bits <= high:
        raise ValueError(f"{fn}: bits must be an integer in [{low}, {high}], got {bits!r}")
    return int(bits)


def check_blocksize(blocksize, fn: str) -> int:
    if isinstance(blocksize, bool) or not isinstance(blocksize, numbers.Integral) or blocksize < 1:
        raise ValueError(f"{fn}: blocksize must be an integer >= 1, got {blocksize!r}")
    return int(blocksize)


def check_dim(dim, ndim: int, fn: str):
    if dim is None:
        return None
    if not isinstance(dim, numbers.Integral) or not -ndim <= dim < ndim:
        raise ValueError(f"{fn}: dim must be None or an axis in [{-ndim}, {ndim - 1}], got {dim!r}")
    return int(dim) % ndim


def int_dtype(bits: int, signed: bool) -> np.dtype:
    """The smallest NumPy integer type that holds a ``bits``-bit code (all <= 8 bits: one byte)."""
    return np.dtype(np.int8 if signed else np.uint8) if bits <= 8 else \
        np.dtype(np.int16 if signed else np.uint16)


def reduce_axes(ndim: int, dim):
    """Axes to reduce over: all of them (per tensor), or all but ``dim`` (per channel)."""
    return None if dim is None else tuple(i for i in range(ndim) if i != dim)
