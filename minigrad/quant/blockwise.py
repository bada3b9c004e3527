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

Two grids. The chapter's first step, :func:`quantize_blockwise_linear`, uses the
evenly spaced integers above (int8 codes -Q..Q). bitsandbytes'
``quantize_blockwise`` (and so minigrad's) looks values up in a 256-entry code
book instead, by default the *dynamic* map of :func:`create_dynamic_map`
(Dettmers 2015, "8-Bit Approximations for Parallelism in Deep Learning"): a
sign, a run of zeros that acts as a decimal exponent (7 decades, 1e-6 to 1),
and the remaining bits as an evenly spaced fraction, so small values keep
nearly the relative precision of large ones. The codes are uint8 indices:

    idx_i = nearest k of code[k] to x_i / absmax[b],   x_hat_i = code[idx_i] * absmax[b]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import numbers

from ._checks import as_float32_input, as_float_array, check_bits, check_blocksize
from .absmax import absmax_qmax

__all__ = ["QuantState", "quantize_blockwise", "dequantize_blockwise", "quantize_blockwise_linear",
           "create_dynamic_map", "linear_map", "blockwise_absmax", "blocksize_sweep"]


@dataclass
class QuantState:
    """What dequantization needs besides the codes (bitsandbytes' ``QuantState``).

    Attributes:
        absmax: (blocks,) float32, one absmax per block; 8-bit codes when
            ``nested`` (double quantization: uint8 indices into bitsandbytes'
            dynamic map, or int8 for ``quantize_blockwise_linear``), decoded
            with ``state2``.
        shape: the original tensor's shape.
        dtype: the original tensor's dtype (dequantization returns it).
        blocksize: values per block.
        code: float32 values of the codes in [-1, 1]: (2Q+1,) for the linear
            grid, (16,) for nf4/fp4, up to (256,) for a code book.
        quant_type: "int8" (int2..int8 for other ``bits``: int8 codes -Q..Q),
            "code" (uint8 indices into ``code``), "nf4" or "fp4".
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


def check_state(state, fn: str, quant_types) -> np.ndarray:
    """Validate ``state`` before a kernel indexes with it; return its scales, (blocks,) float32.

    A state reloaded from a checkpoint, or edited, can disagree with itself: a
    blocksize that no longer matches the number of absmax values, or a code book
    of the wrong length, would make the kernels read past their arrays.
    """
    if not isinstance(state, QuantState):
        raise TypeError(f"{fn}: state must be a QuantState, got {type(state).__name__}")
    if state.quant_type not in quant_types:
        raise ValueError(f"{fn}: state.quant_type is {state.quant_type!r}; expected one of "
                         f"{tuple(quant_types)}")
    bs = state.blocksize
    if isinstance(bs, bool) or not isinstance(bs, numbers.Integral) or bs < 1:
        raise ValueError(f"{fn}: state.blocksize must be an integer >= 1, got {bs!r}")
    try:
        n = state.numel
    except (TypeError, ValueError):
        raise ValueError(f"{fn}: state.shape must be a tuple of sizes, got {state.shape!r}") from None
    blocks = -(-n // int(bs))
    absmax = np.asarray(state.absmax)
    if absmax.shape != (blocks,):
        raise ValueError(f"{fn}: state.absmax has shape {absmax.shape}, expected ({blocks},): one "
                         f"per block of {bs} for {n} values (was blocksize changed?)")
    if state.nested:
        if state.offset is None or not np.isfinite(state.offset):
            raise ValueError(f"{fn}: a nested state needs a finite offset, got {state.offset!r}")
        if state.state2.numel != blocks:
            raise ValueError(f"{fn}: state.state2 describes {state.state2.numel} absmax values, "
                             f"expected {blocks}")
    scales = np.ascontiguousarray(state.scales(), dtype=np.float32)
    if not np.isfinite(scales).all() or (scales < 0).any():
        raise ValueError(f"{fn}: state.absmax must be finite and >= 0")
    code = np.asarray(state.code)
    qt = state.quant_type
    k = 16 if qt in ("nf4", "fp4") else \
        2 * absmax_qmax(int(qt[3:])) + 1 if qt.startswith("int") else None   # "code": 2..256
    if code.ndim != 1 or code.dtype.kind != "f" or (k is not None and code.size != k) or \
            not 2 <= code.size <= 256:
        want = f"({k},)" if k is not None else "(2..256,)"
        raise ValueError(f"{fn}: state.code must be a {want} float array for quant_type "
                         f"{state.quant_type!r}, got shape {code.shape} dtype {code.dtype}")
    if not np.isfinite(code).all():
        raise ValueError(f"{fn}: state.code must be finite")
    return scales



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


def linear_map(bits: int = 8) -> np.ndarray:
    """The linear grid as a code book: (2Q + 1,) float32 values k / Q, k = -Q..Q."""
    Q = absmax_qmax(check_bits(bits, "linear_map"))
    return (np.arange(-Q, Q + 1) / Q).astype(np.float32)


def create_dynamic_map(signed: bool = True, max_exponent_bits: int = 7,
                       total_bits: int = 8) -> np.ndarray:
    """bitsandbytes' dynamic 8-bit code book (``create_dynamic_map``, same defaults, same values).

    Dynamic tree quantization (Dettmers 2015): after the sign bit, the number of
    leading zeros e (0..max_exponent_bits - 1) is a decimal exponent and the
    bits after the first 1 an evenly spaced fraction. Decade i (value scale
    10^(i - max_exponent_bits + 1)) holds 2^i fractions (signed; 2^(i+1) unsigned),
    the midpoints of ``linspace(0.1, 1, 2^i + 1)``: the smallest decades get the
    fewest codes. Then 0 and 1 are added and the list is sorted: 256 values, from
    1e-7 to 1 in magnitude, for the 7-bit default (the most negative is -0.993:
    the largest magnitude of a block, divided by its absmax, is 1 only if positive).

    The fractions come from ``torch.linspace`` in bitsandbytes; torch 2.13's CPU
    version rounds each one once (fused multiply-add), older builds twice, so the
    map can differ by one ulp between installs. This follows torch 2.13.

    Returns:
        (256,) float32, sorted ascending (padded with zeros if the type has fewer codes).
    """
    from .nf4 import _linspace32

    non_sign_bits = total_bits - 1
    if not 1 <= max_exponent_bits <= non_sign_bits or total_bits > 8:
        raise ValueError(f"create_dynamic_map: need 1 <= max_exponent_bits <= total_bits - 1 and "
                         f"total_bits <= 8, got {max_exponent_bits}, {total_bits}")
    data = []
    decade = np.float32(1.0)
    for i in range(max_exponent_bits):
        items = 2 ** (i + non_sign_bits - max_exponent_bits + (0 if signed else 1)) + 1
        edges = _linspace32(0.1, 1, items, fused=True).astype(np.float32)
        means = (edges[:-1] + edges[1:]) / np.float32(2)             # float32, as torch does
        decade = np.float32(10.0 ** (i - max_exponent_bits + 1))
        data += list(decade * means)
        if signed:
            data += list(-decade * means)
    extra = 2 ** (non_sign_bits - max_exponent_bits) - 1             # all exponent bits zero
    if extra > 0:
        edges = _linspace32(0.1, 1, extra + 1, fused=True).astype(np.float32)
        means = (edges[:-1] + edges[1:]) / np.float32(2)
        data += list(decade * means)
        if signed:
            data += list(-decade * means)
    data += [0.0, 1.0]
    data += [0.0] * (256 - len(data))
    return np.sort(np.array(data, np.float32))


_DYNAMIC = None


def _default_code() -> np.ndarray:
    global _DYNAMIC
    if _DYNAMIC is None:
        _DYNAMIC = create_dynamic_map()
        _DYNAMIC.flags.writeable = False          # shared by every state that uses it
    return _DYNAMIC


def _check_code(code, fn: str) -> np.ndarray:
    code = np.asarray(code)
    if code.ndim != 1 or code.dtype.kind != "f" or not 2 <= code.size <= 256:
        raise ValueError(f"{fn}: code must be a 1-D float array of 2..256 values, got shape "
                         f"{code.shape} dtype {code.dtype}")
    code = code.astype(np.float32)
    if not np.isfinite(code).all() or np.abs(code).max() > 1 or (np.diff(code) < 0).any():
        raise ValueError(f"{fn}: code must be sorted ascending, finite, within [-1, 1]")
    return code


def quantize_blockwise(x, code=None, blocksize: int = 4096, compress_statistics: bool = False):
    """Blockwise quantization with a code book, as ``bitsandbytes.functional.quantize_blockwise``.

    Each block of ``blocksize`` values is divided by its absmax and every value
    replaced by the index of the nearest entry of ``code``: x * (1 / absmax)
    compared with the float32 midpoints between entries, a value exactly on a
    midpoint taking the lower one. That is bitsandbytes' PyTorch kernel
    (``torch.bucketize`` over the midpoints), bit for bit; bitsandbytes 0.50's
    CPU C kernel divides instead and its search misplaces values below about
    1e-4 of the absmax (tests/test_bnb_oracle.py).

    Args:
        x: float array of any shape (computed in float32; float64 values beyond
            float32's range are refused).
        code: sorted (k,) float32 values in [-1, 1], k <= 256; default
            :func:`create_dynamic_map` (bitsandbytes' default). ``linear_map()``
            gives evenly spaced codes (see also :func:`quantize_blockwise_linear`).
        blocksize: values per block, >= 1 (bitsandbytes' default 4096; its 8-bit
            optimizers use 256).
        compress_statistics: double-quantize the absmax (``nested`` in bitsandbytes:
            the mean removed, then this function with the dynamic map and the
            same ``blocksize``).
    Returns:
        (q, state): ``q`` uint8 indices into ``code``, of ``x``'s shape; ``state`` a
        :class:`QuantState` with ``quant_type="code"``.
    """
    fn = "quantize_blockwise"
    code = _default_code() if code is None else _check_code(code, fn)
    blocksize = check_blocksize(blocksize, fn)
    orig, flat = as_float32_input(x, fn)
    from . import kernels
    from .nf4 import code_midpoints

    mids, order = code_midpoints(code)
    q = np.empty(flat.size, np.uint8)
    absmax = np.empty(-(-flat.size // blocksize), np.float32)
    kernel = kernels.get("quantize_blockwise_code")
    if kernel is not None:
        kernel(flat, blocksize, mids, order, q, absmax)
    else:   # the readable route through the exercises (minigrad.kernels.use("reference"), a release)
        from .nf4 import nearest_code

        absmax[:] = blockwise_absmax(flat, blocksize)
        q[:] = nearest_code(kernels.scale_blocks(flat, absmax, blocksize, 1.0), code)
    state = QuantState(absmax=absmax, shape=orig.shape, dtype=orig.dtype, blocksize=blocksize,
                       code=code, quant_type="code")
    return q.reshape(orig.shape), _maybe_compress(state, compress_statistics, blocksize, "dynamic")


def _maybe_compress(state: QuantState, compress: bool, blocksize2: int,
                    second_level: str) -> QuantState:
    if not compress:
        return state
    from .double import compress_statistics
    return compress_statistics(state, blocksize2, second_level)


def quantize_blockwise_linear(x, blocksize: int = 64, bits: int = 8,
                              compress_statistics: bool = False):
    """Blockwise symmetric quantization to ``bits``-bit integers, one absmax per block.

    The chapter's first step: the evenly spaced grid -Q..Q (the code book
    ``linear_map(bits)``), stored as the integers themselves.

    Args:
        x: float array of any shape and size (the last block may be partial).
        blocksize: values per block, >= 1 (bitsandbytes uses 64 .. 4096).
        bits: 2..8; codes in [-Q, Q], Q = 2^(bits-1) - 1, stored as int8.
        compress_statistics: double-quantize the absmax (the 8-bit integer grid,
            blocks of 256: see :func:`minigrad.quant.double.compress_statistics`).
    Returns:
        (q, state): ``q`` int8 of ``x``'s shape; ``state`` a :class:`QuantState`.
        An all-zero block has absmax 0 and dequantizes to zeros.
    """
    fn = "quantize_blockwise_linear"
    blocksize = check_blocksize(blocksize, fn)
    bits = check_bits(bits, fn)
    orig, flat = as_float32_input(x, fn)
    from . import kernels

    Q = absmax_qmax(bits)
    q = np.empty(flat.size, np.int8)
    absmax = np.empty(-(-flat.size // blocksize), np.float32)
    kernel = kernels.get("quantize_blockwise_int")
    if kernel is not None:
        kernel(flat, blocksize, Q, q, absmax)
    else:   # the readable route through the exercise (minigrad.kernels.use("reference"), a release)
        absmax[:] = blockwise_absmax(flat, blocksize)
        q[:] = np.clip(np.rint(kernels.scale_blocks(flat, absmax, blocksize, Q)), -Q, Q)
    state = QuantState(absmax=absmax, shape=orig.shape, dtype=orig.dtype, blocksize=blocksize,
                       code=linear_map(bits), quant_type=f"int{bits}")
    return q.reshape(orig.shape), _maybe_compress(state, compress_statistics, 256, "int8")


_INT_TYPES = tuple(f"int{b}" for b in range(2, 9))


def dequantize_blockwise(q, state: QuantState, out: np.ndarray | None = None) -> np.ndarray:
    """x_hat = code[q] * absmax[block] (or q * absmax[block] / Q for the linear grid).

    Args:
        q: uint8 indices from :func:`quantize_blockwise`, or int8 codes from
            :func:`quantize_blockwise_linear`.
        state: its :class:`QuantState` (checked against ``q`` before any kernel runs).
        out: optional float32 array of ``state.shape`` to write into (no allocation).
    Returns:
        ``state.dtype`` array of ``state.shape`` (``out`` itself when given).
    """
    fn = "dequantize_blockwise"
    q = np.asarray(q)
    if isinstance(state, QuantState) and state.quant_type in ("nf4", "fp4"):
        raise ValueError(f"{fn}: state is {state.quant_type!r}; use dequantize_4bit for nf4/fp4")
    scales = check_state(state, fn, _INT_TYPES + ("code",))
    linear = state.quant_type != "code"
    want = np.int8 if linear else np.uint8
    if q.dtype != want:
        raise TypeError(f"{fn}: q must be {np.dtype(want)} codes for a {state.quant_type!r} "
                        f"state, got dtype {q.dtype}")
    if q.size != state.numel:
        raise ValueError(f"{fn}: q has {q.size} values, state expects "
                         f"{state.numel} (shape {state.shape})")
    if out is None:
        flat = np.empty(q.size, np.float32)
    elif not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.size != q.size or \
            not out.flags.c_contiguous:
        raise ValueError(f"{fn}: out must be a contiguous float32 array of "
                         f"{q.size} values, got {getattr(out, 'dtype', type(out))} with "
                         f"{getattr(out, 'size', '?')}")
    else:
        flat = out.reshape(-1)
    from . import kernels

    qf = np.ascontiguousarray(q).reshape(-1)
    if linear:
        Q = absmax_qmax(int(state.quant_type[3:]))
        if q.size and np.abs(qf.astype(np.int16)).max() > Q:
            raise ValueError(f"{fn}: q has codes beyond [-{Q}, {Q}] of {state.quant_type}")
        kernels.get("dequantize_blockwise_int")(qf, scales, state.blocksize, Q, flat)
    else:
        code = np.array(state.code, np.float32)   # a writeable copy: one numba specialization
        if code.size < 256 and q.size and qf.max() >= code.size:
            raise ValueError(f"{fn}: q has index {qf.max()}, beyond the {code.size} entries of "
                             f"state.code")
        kernels.get("dequantize_blockwise_code")(qf, scales, code, state.blocksize, flat)
    if out is not None:
        return out
    return flat.reshape(state.shape).astype(state.dtype, copy=False)


def blocksize_sweep(x, blocksizes, bits: int = 8) -> dict:
    """Mean and max |x - x_hat| of linear blockwise quantization at each block size, plus per tensor.

    Returns:
        {"blocksize": list, "mean": list, "max": list, "per_tensor_mean": float,
        "per_tensor_max": float}: the numbers behind "error vs block size".
    """
    x = as_float_array(x, "blocksize_sweep")
    out = {"blocksize": list(blocksizes), "mean": [], "max": []}
    for b in blocksizes:
        q, st = quantize_blockwise_linear(x, b, bits)
        err = np.abs(x - dequantize_blockwise(q, st))
        out["mean"].append(float(err.mean()))
        out["max"].append(float(err.max()))
    q, st = quantize_blockwise_linear(x, max(x.size, 1), bits)   # one block: one scale per tensor
    err = np.abs(x - dequantize_blockwise(q, st))
    out["per_tensor_mean"], out["per_tensor_max"] = float(err.mean()), float(err.max())
    return out
