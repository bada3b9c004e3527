"""Bytes of a model's weights at 32, 16, 8 and 4 bits, scales included.

A weight stored in b bits costs b / 8 bytes; a blockwise format adds its
scales, ``scale_bits / blocksize`` bits per weight (double quantization:
``8 / b1 + 32 / (b1 * b2)``, see :mod:`minigrad.quant.double`). For
N = 1e9 parameters, in GB = 1e9 bytes:

    fp32 4 GB, fp16/bf16 2 GB, int8 1 GB, 4-bit 0.5 GB
    4-bit + fp32 absmax per 64 values:   0.5 + 1e9 * 4 / 64 B = 0.5625 GB
    4-bit + double-quantized absmax:     0.5 + 1e9 * (1/64 + 4/16384) B = 0.5159 GB
"""

from __future__ import annotations

import numpy as np

from .double import scale_bits_per_value

__all__ = ["GB", "bytes_per_param", "model_bytes", "memory_table", "quantized_nbytes"]

GB = 1e9  # decimal gigabyte, as model sizes are quoted


def bytes_per_param(bits: int, blocksize: int | None = None, scale_bits: int = 32,
                    double_quant: bool = False, blocksize2: int = 256) -> float:
    """bits / 8 for the code, plus the scales' share when ``blocksize`` is given."""
    if bits < 1:
        raise ValueError(f"bytes_per_param: bits must be >= 1, got {bits}")
    extra = 0.0 if blocksize is None else scale_bits_per_value(
        blocksize, scale_bits, double_quant, blocksize2)
    return (bits + extra) / 8


def model_bytes(n_params: float, bits: int, blocksize: int | None = None, scale_bits: int = 32,
                double_quant: bool = False, blocksize2: int = 256) -> float:
    """Bytes of ``n_params`` weights stored at ``bits`` bits (plus blockwise scales)."""
    if n_params < 0:
        raise ValueError(f"model_bytes: n_params must be >= 0, got {n_params}")
    return n_params * bytes_per_param(bits, blocksize, scale_bits, double_quant, blocksize2)


def memory_table(n_params: float = 1e9, blocksize: int = 64) -> list[tuple[str, float]]:
    """(format, GB) rows for a model of ``n_params`` weights, from fp32 down to NF4 + double quant."""
    return [
        ("fp32", model_bytes(n_params, 32) / GB),
        ("fp16 / bf16", model_bytes(n_params, 16) / GB),
        ("int8", model_bytes(n_params, 8) / GB),
        ("4-bit codes only", model_bytes(n_params, 4) / GB),
        (f"NF4 + fp32 absmax / {blocksize}", model_bytes(n_params, 4, blocksize) / GB),
        ("NF4 + double-quant absmax", model_bytes(n_params, 4, blocksize, double_quant=True) / GB),
    ]


def quantized_nbytes(codes: np.ndarray, state) -> int:
    """Bytes actually held by a quantized tensor: its codes plus its state's scales."""
    return int(np.asarray(codes).nbytes + state.nbytes())
