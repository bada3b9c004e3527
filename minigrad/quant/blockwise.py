"""Blockwise absmax quantization: one scale per block of ``blocksize`` values.

The tensor is flattened and cut into blocks of ``blocksize`` consecutive
values (the last block may be shorter); each block keeps its own absmax:

    absmax[b] = max_{i in b} |x_i|,   q_i = round(x_i * Q / absmax[b]),
    x_hat_i = q_i * absmax[b] / Q,    |x_i - x_hat_i| <= absmax[b] / (2Q)

An outlier now coarsens only the step of its own block instead of the whole
tensor. The cost is one float32 absmax per block: 32 / blocksize extra bits
per value (0.5 bit at blocksize 64), which double quantization
(:mod:`minigrad.quant.double`) shrinks. Reference: Dettmers et al. 2022,
"8-bit Optimizers via Block-wise Quantization" (ICLR 2022); the function and
field names follow bitsandbytes (``quantize_blockwise``, ``QuantState``).
The loops run in :mod:`minigrad.quant.kernels` (numba, NumPy reference).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._checks import as_float_array, check_bits, check_blocksize
from .absmax import absmax_qmax

__all__ = ["QuantState", "quantize_blockwise", "dequantize_blockwise", "blockwise_absmax",
           "blocksize_sweep"]


@dataclass
class QuantState:
    """What dequantization needs besides the codes (bitsandbytes' ``QuantState``).

    Attributes:
        absmax: (blocks,) float32, one absmax per block; int8 codes when
            ``nested`` (double quantization), to be decoded with ``state2``.
        shape: the original tensor's shape.
        dtype: the original tensor's dtype (dequantization returns it).
        blocksize: values per block.
        code: (2^bits,) or (2Q+1,) float32 values of the codes in [-1, 1].
        quant_type: "int8" (int2..int8 for other ``bits``), "nf4" or "fp4".
        offset: with double quantization, the mean subtracted from absmax.
        state2: with double quantization, the state of the quantized absmax.
    """

    absmax: np.ndarray
    shape: tuple
    dtype: np.dtype
    blocksize: int
    code: np.ndarray
    quant_type: str
    offset: float | None = None
    state2: QuantState | None = None

    @property
    def nested(self) -> bool:
        return self.state2 is not None

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def scales(self) -> np.ndarray:
        """The per-block absmax as float32, decoding it first when double-quantized."""
        if not self.nested:
            return self.absmax
        return dequantize_blockwise(self.absmax, self.state2) + np.float32(self.offset)

    def nbytes(self) -> int:
        """Bytes of the scales actually stored (absmax, and offset + state2 when nested)."""
        n = self.absmax.nbytes
        if self.nested:
            n += np.float32(self.offset).nbytes + self.state2.nbytes()
        return n


def _flat_float32(x, fn: str) -> tuple[np.ndarray, np.ndarray]:
    a = as_float_array(x, fn)
    return a, np.ascontiguousarray(a, dtype=np.float32).reshape(-1)


def blockwise_absmax(x, blocksize: int) -> np.ndarray:
    """max|x| over each block of ``blocksize`` consecutive values of flattened ``x``.

    Args:
        x: float array, any shape (flattened in C order).
    Returns:
        (ceil(x.size / blocksize),) absmax, the last block possibly partial.
    """
    x = np.asarray(x).reshape(-1)
    blocksize = check_blocksize(blocksize, "blockwise_absmax")
    # BEGIN SOLUTION ch6.blockwise_absmax
    n = x.size
    pad = (-n) % blocksize
    # zeros never win a max of absolute values, so padding the tail is harmless
    padded = np.concatenate([np.abs(x), np.zeros(pad, dtype=x.dtype)])
    return padded.reshape(-1, blocksize).max(axis=1)               # (blocks, blocksize) -> (blocks,)
    # END SOLUTION


def quantize_blockwise(x, blocksize: int = 64, bits: int = 8, compress_statistics: bool = False):
    """Blockwise symmetric quantization to ``bits``-bit integers, one absmax per block.

    Args:
        x: float array of any shape and size (the last block may be partial).
        blocksize: values per block, >= 1 (bitsandbytes uses 64 .. 4096).
        bits: 2..8; codes in [-Q, Q], Q = 2^(bits-1) - 1, stored as int8.
        compress_statistics: double-quantize the absmax (8-bit, blocks of 256).
    Returns:
        (q, state): ``q`` int8 of ``x``'s shape; ``state`` a :class:`QuantState`.
        An all-zero block has absmax 0 and dequantizes to zeros.
    """
    fn = "quantize_blockwise"
    blocksize = check_blocksize(blocksize, fn)
    bits = check_bits(bits, fn)
    orig, flat = _flat_float32(x, fn)
    from . import kernels

    Q = absmax_qmax(bits)
    q = np.empty(flat.size, np.int8)
    absmax = np.empty(-(-flat.size // blocksize), np.float32)
    kernel = kernels.get("quantize_blockwise_int")
    if kernel is not None:
        kernel(flat, blocksize, Q, q, absmax)
    else:   # the readable route through the exercise (kernels.use("exercises"), a release)
        absmax[:] = blockwise_absmax(flat, blocksize)
        inv = np.zeros_like(absmax)
        np.divide(np.float32(Q), absmax, out=inv, where=absmax > 0)      # 0 for an all-zero block
        q[:] = np.clip(np.rint(flat * np.repeat(inv, blocksize)[:flat.size]), -Q, Q)
    state = QuantState(absmax=absmax, shape=orig.shape, dtype=orig.dtype, blocksize=blocksize,
                       code=(np.arange(-Q, Q + 1) / Q).astype(np.float32), quant_type=f"int{bits}")
    if compress_statistics:
        from .double import compress_statistics as _compress
        state = _compress(state)
    return q.reshape(orig.shape), state


def dequantize_blockwise(q, state: QuantState, out: np.ndarray | None = None) -> np.ndarray:
    """x_hat = q * absmax[block] / Q, in ``state.dtype`` and ``state.shape``.

    Args:
        q: int8 codes from :func:`quantize_blockwise`.
        state: its :class:`QuantState`.
        out: optional float32 array of ``state.shape`` to write into (no allocation).
    """
    q = np.asarray(q)
    if q.dtype != np.int8:
        raise TypeError(f"dequantize_blockwise: q must be int8 codes, got dtype {q.dtype}")
    if q.size != state.numel:
        raise ValueError(f"dequantize_blockwise: q has {q.size} values, state expects "
                         f"{state.numel} (shape {state.shape})")
    if not state.quant_type.startswith("int"):
        raise ValueError(f"dequantize_blockwise: state is {state.quant_type!r}; "
                         f"use dequantize_4bit for nf4/fp4")
    from . import kernels

    Q = absmax_qmax(int(state.quant_type[3:]))
    if out is None:
        flat = np.empty(q.size, np.float32)
    elif out.dtype != np.float32 or out.size != q.size or not out.flags.c_contiguous:
        raise ValueError(f"dequantize_blockwise: out must be a contiguous float32 array of "
                         f"{q.size} values, got {out.dtype} with {out.size}")
    else:
        flat = out.reshape(-1)
    kernels.get("dequantize_blockwise_int")(np.ascontiguousarray(q).reshape(-1), state.scales(),
                                            state.blocksize, Q, flat)
    if out is not None:
        return out
    return flat.reshape(state.shape).astype(state.dtype, copy=False)


def blocksize_sweep(x, blocksizes, bits: int = 8) -> dict:
    """Mean and max |x - x_hat| of blockwise quantization at each block size, plus per tensor.

    Returns:
        {"blocksize": list, "mean": list, "max": list, "per_tensor_mean": float,
        "per_tensor_max": float}: the numbers behind "error vs block size".
    """
    x = as_float_array(x, "blocksize_sweep")
    out = {"blocksize": list(blocksizes), "mean": [], "max": []}
    for b in blocksizes:
        q, st = quantize_blockwise(x, b, bits)
        err = np.abs(x - dequantize_blockwise(q, st))
        out["mean"].append(float(err.mean()))
        out["max"].append(float(err.max()))
    q, st = quantize_blockwise(x, max(x.size, 1), bits)   # one block: one scale per tensor
    err = np.abs(x - dequantize_blockwise(q, st))
    out["per_tensor_mean"], out["per_tensor_max"] = float(err.mean()), float(err.max())
    return out
