"""The hot loops of chapter 6, twice: a NumPy reference written for reading,
and a numba kernel with the same signature and bit-identical results.

Every function writes into preallocated outputs (``q``, ``absmax``, ``out``),
so the two versions are interchangeable and the caller owns the memory.
Inputs are flat, contiguous arrays; the last block may be partial.

Which version runs is chosen per operation from measurements
(``benchmarks/bench_quant.py``, 64M values, 2 cores). numba wins every one
here: one pass over the data replaces several NumPy passes with
temporaries (blockwise quantize: abs, max, multiply, round, cast), and both
cores share the work. It wins only because its loops index block views from
0 (see :func:`quantize_blockwise_int_numba`). ``FAST`` records the choice;
the library's one switch, ``minigrad.kernels.use("reference")``, runs the
NumPy side instead for teaching and testing (see :func:`get`).

This module imports numba, so :mod:`minigrad.quant` imports it only when a
kernel is first needed: ``import minigrad`` stays fast.
"""

from __future__ import annotations

import numpy as np

from ..kernels.jit import njit, prange

# Inputs are finite (checked at the public boundary), so the kernels may let
# LLVM assume no NaN/inf and ignore the sign of zero: that is what lets it
# vectorize the max-of-abs reductions (4x on one core). No reassociation is
# allowed, so every rounding step is the same as NumPy's and results stay
# bit-identical.
FASTMATH = {"nnan", "ninf", "nsz"}

__all__ = ["get", "FAST", "READABLE",
           "quantize_blockwise_int_reference", "quantize_blockwise_int_numba",
           "dequantize_blockwise_int_reference", "dequantize_blockwise_int_numba",
           "quantize_blockwise_code_reference", "quantize_blockwise_code_numba",
           "dequantize_blockwise_code_reference", "dequantize_blockwise_code_numba",
           "quantize_4bit_reference", "quantize_4bit_numba",
           "dequantize_4bit_reference", "dequantize_4bit_numba",
           "stochastic_round_reference", "stochastic_round_numba"]


def _split(n: int, blocksize: int):
    """(number of full blocks, length of the partial last block)."""
    return n // blocksize, n % blocksize


# BEGIN KERNEL ch6.blockwise_absmax
def _absmax_reference(x, blocksize, absmax):
    """absmax[b] = max|x| over block b (the last one possibly partial)."""
    full, rem = _split(x.size, blocksize)
    if full:
        absmax[:full] = np.abs(x[: full * blocksize].reshape(full, blocksize)).max(axis=1)
    if rem:
        absmax[full] = np.abs(x[full * blocksize:]).max()


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _absmax_numba(xb):
    """max|xb|, a loop LLVM vectorizes (fastmath: no NaN to propagate)."""
    m = np.float32(0.0)
    for i in range(xb.size):
        m = max(m, abs(xb[i]))
    return m
# END KERNEL


# A block whose absmax is tiny (subnormal, say) would overflow numerator / absmax to inf
# (and 0 * inf is NaN). Such a block is first multiplied by 2^100, exactly (a power of
# two), so its scale stays finite; every other block is multiplied by 1, a no-op.
TINY, PRESCALE = np.float32(2.0 ** -100), np.float32(2.0 ** 100)


def _prescale(absmax: np.ndarray) -> np.ndarray:
    """Per block: PRESCALE where absmax < TINY, else 1."""
    return np.where(absmax < TINY, PRESCALE, np.float32(1.0)).astype(np.float32)


def _inverse(absmax: np.ndarray, numerator) -> np.ndarray:
    """numerator / (absmax * prescale) as float32, 0 where absmax is 0 (an all-zero block
    stays zero)."""
    inv = np.zeros_like(absmax)
    np.divide(np.float32(numerator), absmax * _prescale(absmax), out=inv, where=absmax > 0)
    return inv


def scale_blocks(x: np.ndarray, absmax: np.ndarray, blocksize: int, numerator) -> np.ndarray:
    """x * numerator / absmax of its block, as every encoder scales (tiny blocks prescaled:
    see ``_prescale``; an all-zero block scales to 0). x: (n,) float32 -> (n,) float32."""
    n = x.size
    pre, inv = _prescale(absmax), _inverse(absmax, numerator)
    return (x * np.repeat(pre, blocksize)[:n]) * np.repeat(inv, blocksize)[:n]


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _scale_numba(m, numerator):
    """(prescale, numerator / (m * prescale)) of a block with absmax m: see ``_prescale``."""
    pre = PRESCALE if m < TINY else np.float32(1.0)
    inv = np.float32(numerator) / (m * pre) if m > 0 else np.float32(0.0)
    return pre, inv


# ----------------------------------------------------------------------------
# blockwise integer (absmax) quantization
# ----------------------------------------------------------------------------

# BEGIN KERNEL ch6.blockwise_absmax
def quantize_blockwise_int_reference(x, blocksize, qmax, q, absmax):
    """absmax[b] = max|x in block b|;  q = clip(rint(x * (Q / absmax[b])), -Q, Q).

    Args:
        x: (n,) float32.  blocksize: int.  qmax: Q = 2^(bits-1) - 1.
        q: (n,) int8, written.  absmax: (ceil(n / blocksize),) float32, written.
    """
    full, rem = _split(x.size, blocksize)
    head = x[: full * blocksize].reshape(full, blocksize)       # (n,) -> (blocks, blocksize)
    _absmax_reference(x, blocksize, absmax)
    pre, inv = _prescale(absmax), _inverse(absmax, qmax)         # Q / absmax, per block
    t = (head * pre[:full, None]) * inv[:full, None]
    q[: full * blocksize] = np.clip(np.rint(t), -qmax, qmax).reshape(-1)
    if rem:
        t = (x[full * blocksize:] * pre[full]) * inv[full]
        q[full * blocksize:] = np.clip(np.rint(t), -qmax, qmax)


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def quantize_blockwise_int_numba(x, blocksize, qmax, q, absmax):
    n = x.size
    nblocks = (n + blocksize - 1) // blocksize
    Q = np.float32(qmax)
    for b in prange(nblocks):
        start = b * blocksize
        stop = min(start + blocksize, n)
        # Index block views from 0, never x[start + i]: numba wraps negative
        # indices, and only a loop counter LLVM can prove >= 0 drops that
        # check. With it, every load became a scalar insert (2.5x slower).
        xb, qb = x[start:stop], q[start:stop]
        m = _absmax_numba(xb)
        absmax[b] = m
        pre, inv = _scale_numba(m, Q)
        for i in range(xb.size):
            v = np.rint((xb[i] * pre) * inv)
            qb[i] = np.int8(min(max(v, -Q), Q))
# END KERNEL


def dequantize_blockwise_int_reference(q, absmax, blocksize, qmax, out):
    """out = q * (absmax[b] / Q), one multiply per element, streamed into ``out``."""
    full, rem = _split(q.size, blocksize)
    scale = absmax / np.float32(qmax)                            # (blocks,) float32
    if full:
        np.multiply(q[: full * blocksize].reshape(full, blocksize), scale[:full, None],
                    out=out[: full * blocksize].reshape(full, blocksize))
    if rem:
        np.multiply(q[full * blocksize:], scale[full], out=out[full * blocksize:])


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def dequantize_blockwise_int_numba(q, absmax, blocksize, qmax, out):
    n = q.size
    nblocks = (n + blocksize - 1) // blocksize
    Q = np.float32(qmax)
    for b in prange(nblocks):
        scale = absmax[b] / Q
        start = b * blocksize
        stop = min(start + blocksize, n)
        qb, ob = q[start:stop], out[start:stop]       # indexed from 0: see quantize
        for i in range(qb.size):
            ob[i] = np.float32(qb[i]) * scale


# ----------------------------------------------------------------------------
# 8-bit code-book quantization (bitsandbytes' dynamic map, or any sorted code)
# ----------------------------------------------------------------------------

# BEGIN KERNEL ch6.blockwise_absmax
def quantize_blockwise_code_reference(x, blocksize, mids, order, q, absmax):
    """q = index of the code nearest x / absmax[b]: order[number of midpoints below it].

    A value exactly on a midpoint counts it as not below, so it gets the lower
    code (``searchsorted(side="left")``), as bitsandbytes' lookup does.

    Args:
        x: (n,) float32.  blocksize: int.
        mids: (k-1,) float32 midpoints between consecutive distinct sorted codes.
        order: (k,) uint8, code index of each sorted position.
        q: (n,) uint8, written.  absmax: (blocks,) float32, written.
    """
    _absmax_reference(x, blocksize, absmax)
    scaled = scale_blocks(x, absmax, blocksize, 1.0)                               # in [-1, 1]
    q[:] = order[np.searchsorted(mids, scaled, side="left")]


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def quantize_blockwise_code_numba(x, blocksize, mids, order, q, absmax):
    n = x.size
    nblocks = (n + blocksize - 1) // blocksize
    k = mids.size
    top = 1
    while top * 2 <= k:                   # the largest power of two <= k
        top *= 2
    for b in prange(nblocks):
        start = b * blocksize
        stop = min(start + blocksize, n)
        xb, qb = x[start:stop], q[start:stop]          # indexed from 0: see quantize_blockwise_int
        m = _absmax_numba(xb)
        absmax[b] = m
        pre, inv = _scale_numba(m, 1.0)
        for i in range(xb.size):
            v = (xb[i] * pre) * inv
            # count the midpoints below v by a binary search of fixed length (no
            # data-dependent branch to mispredict): try steps top, top/2, ..., 1
            pos = 0
            step = top
            while step > 0:
                j = pos + step
                if j <= k:
                    pos += step * (mids[j - 1] < v)
                step >>= 1
            qb[i] = order[pos]
# END KERNEL


def dequantize_blockwise_code_reference(q, absmax, code, blocksize, out):
    """out[i] = code[q[i]] * absmax[i // blocksize]."""
    n = q.size
    np.multiply(code[q], np.repeat(absmax, blocksize)[:n], out=out)


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def dequantize_blockwise_code_numba(q, absmax, code, blocksize, out):
    n = q.size
    nblocks = (n + blocksize - 1) // blocksize
    for b in prange(nblocks):
        s = absmax[b]
        start = b * blocksize
        stop = min(start + blocksize, n)
        qb, ob = q[start:stop], out[start:stop]
        for i in range(qb.size):
            ob[i] = code[qb[i]] * s


# ----------------------------------------------------------------------------
# 4-bit code-book quantization (NF4 / FP4), two codes per byte
# ----------------------------------------------------------------------------

# BEGIN KERNEL ch6.nearest_code
def quantize_4bit_reference(x, blocksize, mids, order, packed, absmax):
    """Nearest code of x / absmax[b], packed two per byte (first value in the high nibble).

    The nearest entry of a sorted code book is found by counting the
    midpoints below the value (``searchsorted``): 15 comparisons, no
    16-way distance table.

    Args:
        x: (n,) float32.  blocksize: int.
        mids: (k-1,) float32, midpoints between consecutive sorted codes.
        order: (k,) uint8, code index of each sorted position.
        packed: (ceil(n / 2),) uint8, written.  absmax: (blocks,) float32, written.
    """
    n = x.size
    _absmax_reference(x, blocksize, absmax)
    scaled = np.zeros(2 * packed.size, np.float32)               # an odd tail pads with 0.0
    scaled[:n] = scale_blocks(x, absmax, blocksize, 1.0)         # in [-1, 1]
    idx = order[np.searchsorted(mids, scaled, side="left")]      # (2m,) codes 0..15
    packed[:] = (idx[0::2] << 4) | idx[1::2]


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def quantize_4bit_numba(x, blocksize, mids, order, packed, absmax):
    n = x.size
    nblocks = (n + blocksize - 1) // blocksize
    inv = np.zeros(nblocks, np.float32)
    pre = np.ones(nblocks, np.float32)
    for b in prange(nblocks):
        m = _absmax_numba(x[b * blocksize:min((b + 1) * blocksize, n)])
        absmax[b] = m
        pre[b], inv[b] = _scale_numba(m, 1.0)
    k = mids.size
    # parallel over chunks of bytes (a byte's two values may straddle two blocks);
    # inside a chunk, track the block with a countdown instead of dividing per value
    chunk = 4096
    for c in prange((packed.size + chunk - 1) // chunk):
        i = 2 * c * chunk
        stop = min(2 * (c + 1) * chunk, 2 * packed.size)
        b = i // blocksize
        left = (b + 1) * blocksize - i
        s, ps = inv[b], pre[b]
        while i < stop:
            byte = 0
            for _ in range(2):
                v = (x[i] * ps) * s if i < n else np.float32(0.0)
                pos = 0
                for t in range(k):      # count the midpoints below v, without branches
                    pos += mids[t] < v
                byte = (byte << 4) | order[pos]
                i += 1
                left -= 1
                if left == 0 and i < n:
                    b += 1
                    s, ps = inv[b], pre[b]
                    left = blocksize
            packed[(i >> 1) - 1] = byte
# END KERNEL


def dequantize_4bit_reference(packed, absmax, code, blocksize, out):
    """out[i] = code[nibble i] * absmax[i // blocksize]; high nibble first."""
    n = out.size
    idx = np.empty(2 * packed.size, np.uint8)
    idx[0::2] = packed >> 4
    idx[1::2] = packed & 0x0F
    np.multiply(code[idx[:n]], np.repeat(absmax, blocksize)[:n], out=out)


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def dequantize_4bit_numba(packed, absmax, code, blocksize, out):
    n = out.size
    chunk = 8192                          # values per task: even, so a task starts on a byte
    for c in prange((n + chunk - 1) // chunk):
        start = c * chunk
        ob = out[start:min(start + chunk, n)]                # views indexed from 0
        pb = packed[start >> 1:]
        b = start // blocksize                               # one division per task, then
        left = (b + 1) * blocksize - start                   # a countdown to the next block
        s = absmax[b]
        for i in range(ob.size):
            byte = np.int64(pb[i >> 1])
            ob[i] = code[byte >> 4 if (i & 1) == 0 else byte & 0x0F] * s
            left -= 1
            if left == 0:
                b += 1
                left = blocksize
                if b < absmax.size:
                    s = absmax[b]


# ----------------------------------------------------------------------------
# stochastic rounding to integers
# ----------------------------------------------------------------------------

def stochastic_round_reference(x, u, out):
    """out = floor(x) + (u < frac(x)), u ~ U[0, 1): rounds up with probability frac(x).

    Not floor(x + u): the sum would round to the spacing of x's format first,
    and for large |x| (2^22 + 0.25 in float32, 2^51 + 0.5 in float64) that
    rounding biases the result. frac(x) = x - floor(x) is exact (computed in
    float64), so P(up) = frac(x) at every magnitude.
    """
    lo = np.floor(x)
    out[:] = lo + (u < (x.astype(np.float64) - lo))


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def stochastic_round_numba(x, u, out):
    for i in prange(x.size):
        lo = np.floor(x[i])
        out[i] = lo + 1 if u[i] < np.float64(x[i]) - np.float64(lo) else lo


# ----------------------------------------------------------------------------
# which version runs
# ----------------------------------------------------------------------------

# chosen from benchmarks/bench_quant.py (64M float32 values, 2 cores): numba 15x NumPy for
# int8 quantize, 3.4x for dequantize, 8-12x for NF4 encode, 13x for NF4 decode. The 8-bit
# code-book pair was timed only on a loaded machine (4M values: encode 1.3-2x NumPy, decode
# 3.5x); rerun the benchmark on an idle one before trusting those two ratios
FAST = {
    # BEGIN KERNEL ch6.blockwise_absmax
    "quantize_blockwise_int": quantize_blockwise_int_numba,
    # END KERNEL
    "dequantize_blockwise_int": dequantize_blockwise_int_numba,
    # BEGIN KERNEL ch6.blockwise_absmax
    "quantize_blockwise_code": quantize_blockwise_code_numba,
    # END KERNEL
    "dequantize_blockwise_code": dequantize_blockwise_code_numba,
    # BEGIN KERNEL ch6.nearest_code
    "quantize_4bit": quantize_4bit_numba,
    # END KERNEL
    "dequantize_4bit": dequantize_4bit_numba,
    "stochastic_round": stochastic_round_numba,
}
REFERENCE = {name: globals()[f"{name}_reference"] for name in FAST}
NUMBA = {name: globals()[f"{name}_numba"] for name in FAST}
# What runs under minigrad.kernels.use("reference"): the NumPy references, except the
# encoders, which restate the chapter's exercises (blockwise_absmax, nearest_code,
# pack_4bit): for those the caller runs the chapter's own functions, as a release that
# stubs chapter 6 (and ships no encoder kernels) also does.
READABLE = {name: f for name, f in REFERENCE.items()
            if name not in ("quantize_blockwise_int", "quantize_blockwise_code", "quantize_4bit")}


def get(name: str):
    """The implementation of operation ``name`` that ``minigrad.kernels`` selects: the
    ``FAST`` one (numba) when ``fast()``, else the NumPy reference; None where the caller
    has a readable route of its own (the encoders under ``use("reference")``, or a
    release without the kernel): the caller then runs that route."""
    from .. import kernels as switch   # the library's switch (this module is quant's kernels)

    return (FAST if switch.fast() else READABLE).get(name)
