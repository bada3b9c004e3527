"""4-bit code books (NF4 and FP4), nearest-code lookup and two codes per byte.

A 4-bit code indexes a table of 16 values in [-1, 1]; a block of
``blocksize`` values is divided by its absmax and each value replaced by the
index of its nearest table entry:

    idx_i = argmin_k |x_i / absmax[b] - code[k]|,   x_hat_i = code[idx_i] * absmax[b]

NF4 (NormalFloat, Dettmers et al. 2023, QLoRA, section 3) places the 16
values at quantiles of the standard normal, so normally distributed weights
use the codes far more evenly than a uniform 4-bit grid (exactly evenly
only if the block absmax were the outermost quantile). Construction (bitsandbytes'
``create_normal_map``): 8 positive quantiles at probabilities evenly spaced
from ``offset`` down to 0.5, 7 negative ones from ``offset`` down to 0.5,
and an exact 0, all divided by the largest so the ends are -1 and +1. The
asymmetry (8 positive, 7 negative) buys an exact zero with an even number
of codes. ``offset = 0.9677083`` is the mean of 1 - 1/(2*15) and
1 - 1/(2*16): the outermost quantile of the normal cannot be +inf, so it is
taken half a bin in from the edge.

FP4 is bitsandbytes' 4-bit float (1 sign, 2 exponent, 1 mantissa bit, in
its own bit order), normalized so its largest magnitude is 1.

Two 4-bit codes share a byte, the first in the high nibble (as
bitsandbytes packs them), so n values take ceil(n / 2) bytes.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_float32_input, check_blocksize
from .blockwise import QuantState, check_state

__all__ = ["create_normal_map", "get_4bit_type", "NF4_OFFSET", "nearest_code", "code_midpoints",
           "pack_4bit", "unpack_4bit", "quantize_4bit", "dequantize_4bit", "code_book_errors"]

# 0.5 * ((1 - 1/30) + (1 - 1/32)) = 0.96770833..., rounded as bitsandbytes writes it
NF4_OFFSET = 0.9677083

# bitsandbytes' FP4 table before normalization (bitsandbytes/functional.py,
# get_4bit_type("fp4")): index bit 3 is the sign. Codes 0 and 8 both decode to +0.0:
# bitsandbytes writes the integer -0 (which is 0), and its C decoder returns 0.0f for both.
_FP4_RAW = [0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0,
            0.0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0]


def _linspace32(start: float, stop: float, n: int, fused: bool = False) -> np.ndarray:
    """Evenly spaced float32 probabilities, formed as torch.linspace forms them (first half
    counted up from ``start``, second half down from ``stop``). bitsandbytes builds NF4 from
    float32 probabilities; doing the same reproduces its published table bit for bit.
    ``fused``: round ``start + step * i`` once (a fused multiply-add), as torch 2.13's CPU
    linspace does; the published NF4 table was made with two roundings."""
    a, b = np.float32(start), np.float32(stop)
    step = (b - a) / np.float32(n - 1)
    i = np.arange(n)
    if fused:   # a float32 product is exact in float64: one rounding, at the end
        up = (np.float64(a) + np.float64(step) * i).astype(np.float32)
        down = (np.float64(b) - np.float64(step) * (n - 1 - i)).astype(np.float32)
    else:
        up = a + step * i.astype(np.float32)
        down = b - step * (n - 1 - i).astype(np.float32)
    return np.where(i < n // 2, up, down).astype(np.float64)


def create_normal_map(offset: float = NF4_OFFSET, use_extra_value: bool = True) -> np.ndarray:
    """The NF4 code book: 16 sorted float32 values, normal quantiles scaled to [-1, 1].

    With ``use_extra_value`` (NF4): Phi^-1 at 9 probabilities evenly spaced
    in [0.5, offset] gives 8 positive values (dropping the 0 at p = 0.5),
    Phi^-1 at 8 probabilities in [0.5, offset] gives 7 negative ones, plus 0.
    Without it: 7 + 7 + two zeros (a symmetric type with a wasted code).
    """
    from scipy.special import ndtri  # inverse of the standard normal CDF

    if not 0.5 < offset < 1:
        raise ValueError(f"create_normal_map: offset must be in (0.5, 1), got {offset}")
    n_pos = 9 if use_extra_value else 8
    pos = ndtri(_linspace32(offset, 0.5, n_pos)[:-1])       # 8 (or 7) values > 0
    neg = -ndtri(_linspace32(offset, 0.5, 8)[:-1])           # 7 values < 0
    zeros = [0.0] * (16 - len(pos) - len(neg))
    v = np.sort(np.concatenate([pos, zeros, neg])).astype(np.float32)
    return v / v.max()


def get_4bit_type(quant_type: str) -> np.ndarray:
    """The 16-entry float32 code book of ``quant_type`` ("nf4" or "fp4"), max |code| = 1."""
    if quant_type == "nf4":
        return create_normal_map()
    if quant_type == "fp4":
        raw = np.array(_FP4_RAW, np.float32)
        return raw / np.abs(raw).max()
    raise ValueError(f"get_4bit_type: quant_type must be 'nf4' or 'fp4', got {quant_type!r}")


def code_midpoints(code) -> tuple[np.ndarray, np.ndarray]:
    """(mids, order): midpoints between the sorted distinct code values, and the
    code index of each sorted value (the first index when a value repeats, as +0/-0).

    A value v is nearest to sorted value number ``searchsorted(mids, v)``:
    everything between two midpoints rounds to the code between them.
    """
    code = np.asarray(code, np.float32)
    values, first = np.unique(code, return_index=True)      # sorted, -0 merged into +0
    mids = ((values[:-1].astype(np.float64) + values[1:]) / 2).astype(np.float32)
    return mids, first.astype(np.uint8)


def nearest_code(v, code) -> np.ndarray:
    """Index of the nearest entry of ``code`` for every value of ``v``.

    A value exactly on a (float32) midpoint between two codes gets the lower one.

    Args:
        v: float array, any shape (values already divided by their absmax).
        code: (k,) code book, k <= 256.
    Returns:
        uint8 array of ``v``'s shape.
    """
    v = np.asarray(v)
    # BEGIN SOLUTION ch6.nearest_code
    mids, order = code_midpoints(code)
    # a value at exactly a midpoint goes to the lower code (side="left"), as argmin would
    return order[np.searchsorted(mids, v.astype(np.float32), side="left")]
    # END SOLUTION


def pack_4bit(idx) -> np.ndarray:
    """Two 4-bit codes per byte, the first in the high nibble: byte = idx[2j] << 4 | idx[2j+1].

    Args:
        idx: (n,) integer codes in 0..15; an odd n is padded with code 0.
    Returns:
        (ceil(n / 2),) uint8.
    """
    idx = np.asarray(idx).reshape(-1)
    if idx.dtype.kind not in "iub":
        raise TypeError(f"pack_4bit: idx must hold integer codes, got dtype {idx.dtype} "
                        f"(a float code would be truncated)")
    if idx.size and (idx.min() < 0 or idx.max() > 15):
        raise ValueError(f"pack_4bit: codes must be in [0, 15], got range "
                         f"[{idx.min()}, {idx.max()}]")
    # BEGIN SOLUTION ch6.pack_4bit
    if idx.size % 2:
        idx = np.append(idx, 0)
    idx = idx.astype(np.uint8)
    return (idx[0::2] << 4) | idx[1::2]
    # END SOLUTION


def unpack_4bit(packed, n: int) -> np.ndarray:
    """Inverse of :func:`pack_4bit`: the first ``n`` codes, uint8 in 0..15."""
    packed = np.asarray(packed, np.uint8).reshape(-1)
    if not 0 <= n <= 2 * packed.size:
        raise ValueError(f"unpack_4bit: n must be in [0, {2 * packed.size}], got {n}")
    idx = np.empty(2 * packed.size, np.uint8)
    idx[0::2] = packed >> 4
    idx[1::2] = packed & 0x0F
    return idx[:n]


def quantize_4bit(x, blocksize: int = 64, compress_statistics: bool = False,
                  quant_type: str = "fp4"):
    """Blockwise 4-bit quantization with a code book, two codes per byte.

    Args:
        x: float array of any shape.
        blocksize: values per absmax block, >= 1 (QLoRA uses 64).
        compress_statistics: double-quantize the absmax as bitsandbytes does: the
            mean removed, then 8-bit dynamic-map codes in blocks of 256.
        quant_type: "fp4" (the default, as in bitsandbytes) or "nf4" (QLoRA's
            choice for normally distributed weights: pass it explicitly, as
            ``bnb_4bit_quant_type="nf4"`` is passed to bitsandbytes).
    Returns:
        (packed, state): ``packed`` (ceil(x.size / 2),) uint8, so 4 bits per
        value in memory; ``state`` a :class:`QuantState` (absmax, shape,
        dtype, blocksize, code, quant_type, and offset/state2 when nested).
    """
    fn = "quantize_4bit"
    blocksize = check_blocksize(blocksize, fn)
    code = get_4bit_type(quant_type)
    orig, flat = as_float32_input(x, fn)
    from . import kernels

    mids, order = code_midpoints(code)
    packed = np.empty(-(-flat.size // 2), np.uint8)
    absmax = np.empty(-(-flat.size // blocksize), np.float32)
    kernel = kernels.get("quantize_4bit")
    if kernel is not None:
        kernel(flat, blocksize, mids, order, packed, absmax)
    else:   # the readable route through the exercises (minigrad.kernels.use("reference"), a release)
        from .blockwise import blockwise_absmax

        absmax[:] = blockwise_absmax(flat, blocksize)
        scaled = np.zeros(2 * packed.size, np.float32)        # an odd tail pads with 0.0
        scaled[:flat.size] = kernels.scale_blocks(flat, absmax, blocksize, 1.0)   # as the kernels
        packed[:] = pack_4bit(nearest_code(scaled, code))
    state = QuantState(absmax=absmax, shape=orig.shape, dtype=orig.dtype, blocksize=blocksize,
                       code=code, quant_type=quant_type)
    if compress_statistics:
        from .double import compress_statistics as _compress
        state = _compress(state, 256, "dynamic")
    return packed, state


def dequantize_4bit(packed, state: QuantState) -> np.ndarray:
    """x_hat_i = code[idx_i] * absmax[i // blocksize], reshaped to ``state.shape``."""
    packed = np.asarray(packed)
    if packed.dtype != np.uint8:
        raise TypeError(f"dequantize_4bit: packed must be uint8, got dtype {packed.dtype}")
    if isinstance(state, QuantState) and state.quant_type not in ("nf4", "fp4"):
        raise ValueError(f"dequantize_4bit: state is {state.quant_type!r}; "
                         f"use dequantize_blockwise for integer codes")
    scales = check_state(state, "dequantize_4bit", ("nf4", "fp4"))
    n = state.numel
    if packed.size != -(-n // 2):
        raise ValueError(f"dequantize_4bit: packed has {packed.size} bytes, state expects "
                         f"{-(-n // 2)} for {n} values")
    from . import kernels

    out = np.empty(n, np.float32)
    kernels.get("dequantize_4bit")(np.ascontiguousarray(packed).reshape(-1), scales,
                                   np.ascontiguousarray(state.code, np.float32), state.blocksize, out)
    return out.reshape(state.shape).astype(state.dtype, copy=False)


def code_book_errors(x, blocksize: int = 64) -> dict:
    """Chapter 6's comparison as data: mean |x - dequantize(quantize(x))| with the NF4 and
    FP4 code books and the linear int4 grid, blocks of ``blocksize``.

    Returns dict(errors={"nf4", "fp4", "int4"}, codes={name: levels in [-1, 1]},
    scaled=x / its block's absmax, the values the code books are laid over).
    """
    from .blockwise import blockwise_absmax, dequantize_blockwise, quantize_blockwise_linear

    x = np.asarray(x, np.float32).ravel()
    errors = {}
    for qt in ("nf4", "fp4"):
        packed, state = quantize_4bit(x, blocksize, quant_type=qt)
        errors[qt] = float(np.abs(x - dequantize_4bit(packed, state)).mean())
    q, state = quantize_blockwise_linear(x, blocksize, bits=4)
    errors["int4"] = float(np.abs(x - dequantize_blockwise(q, state)).mean())
    codes = {"NF4": get_4bit_type("nf4"), "FP4": get_4bit_type("fp4"),
             "int4 (absmax)": np.arange(-7, 8) / 7}
    scaled = x / np.repeat(blockwise_absmax(x, blocksize), blocksize)[:x.size]
    return dict(errors=errors, codes=codes, scaled=scaled)
