"""The FlashAttention loops compiled with numba: what runs by default.

Each public function here has the signature of its NumPy twin in
``reference.py`` and computes the same thing; read that file for the
algorithm, this one for how it is made fast on a CPU:

- ``flash_forward`` multiplies whole tiles through BLAS (``np.dot`` inside
  numba calls SciPy's BLAS) and computes exp with a small polynomial that
  the compiler turns into SIMD instructions (numba's ``math.exp`` is a libm
  call per element: it does not vectorize without Intel's SVML).
- ``flash_forward_scalar`` is the same tiling written as plain scalar loops
  with ``math.exp``: the version one writes first, kept to show that the
  loop order is not what makes it fast, the arithmetic per instruction is.

Importing this module compiles nothing. The first call of each kernel for a
dtype compiles it (tens of seconds on 2 cores) into numba's on-disk cache;
later runs load it from there in well under a second.
"""

from __future__ import annotations

import math

import numpy as np

from ..kernels.jit import njit, numba
from ..threads import run_parallel, split

__all__ = ["flash_forward", "flash_forward_scalar", "flash_backward", "exp_nonpositive"]

# Batch*heads run in parallel: the heads are split into one contiguous range per thread
# (``numba.get_num_threads()``; ``numba.set_num_threads(1)`` runs them serially), each
# range run by the same compiled serial kernel in a Python thread; the kernels release
# the GIL (``nogil``). On an idle 2-core machine the benchmark (benchmarks/bench_flash.py,
# last table) measured about 1.7x (forward) and 1.6x (backward) over one core at N=2048.
# Results are identical either way (tests/test_flash.py). Threads rather than numba's
# ``prange``: a ``parallel=True`` wrapper compiles every head kernel a second time, which
# cost 20 s per dtype on a cold cache.

def _over_heads(kernel, n_heads, arrays, args):
    """kernel(*[a[h0:h1] for a in arrays], *args) for head ranges covering 0..n_heads.

    Returns the first range's result. In parallel, one range per thread.
    """
    ranges = split(n_heads, numba.get_num_threads())
    if len(ranges) == 1:
        return kernel(*arrays, *args)
    return run_parallel([(kernel, (*[a[lo:hi] for a in arrays], *args))
                         for lo, hi in ranges])[0]


# reassociation lets the compiler vectorize row sums; no 'nnan'/'ninf': masked scores are -inf
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


# ----------------------------------------------------------------------------
# a vectorizable exp
# ----------------------------------------------------------------------------

def _exp_constants(dtype):
    """Constants of :func:`_exp_rows` in ``dtype`` (so float32 math stays float32).

    exp(x) = 2^n * exp(t), n = round(x / ln 2), t = x - n ln 2 in [-ln2/2, ln2/2]
    (ln 2 split in a high and a low part so n * hi is exact: Cody & Waite);
    exp(t) by its Taylor series, to degree 12 in float64 (error < 2e-16 on that
    range) and to degree 7 in float32 (< 6e-9: more terms would cost time and
    add nothing at float32's rounding); 2^n built directly in the exponent bits
    of an integer of the float's width.
    """
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        hi, lo, itype, degree = 0.693359375, -2.12194440e-4, np.int32, 7
    else:
        hi, lo, itype, degree = 6.93147180369123816490e-01, 1.90821492927058770002e-10, np.int64, 12
    bias = 127 if dtype == np.float32 else 1023          # exponent bias
    x_min = -(bias + 1) * hi                             # below this, 2^n leaves the normal range
    taylor = [1 / math.factorial(n) for n in range(degree, -1, -1)]  # highest degree first (Horner)
    coef = np.array([1 / math.log(2), hi, lo, 0.5, x_min] + taylor, dtype=dtype)
    return coef, np.empty(0, itype)


# no reassociation here: it would fold x - n*hi - n*lo into x - n*(hi + lo), the one rounding
# Cody & Waite's split avoids (2.5 float32 ulps instead of 0.9)
_EXACT = {"contract", "nsz", "arcp"}


@njit(cache=True, fastmath=_EXACT)
def _exp_parts(row, sh, coef, bits, mant, bias):
    """row[c] = exp(t) and bits[c] = the bits of 2^n, for row[c] - sh = n ln 2 + t."""
    # constants read from a typed array, so float32 arithmetic stays float32 (twice the lanes)
    inv_ln2, hi, lo, half, x_min = coef[0], coef[1], coef[2], coef[3], coef[4]
    c7, c6, c5, c4, c3, c2, c1, c0 = coef[-8], coef[-7], coef[-6], coef[-5], coef[-4], coef[-3], \
        coef[-2], coef[-1]
    high = coef[5:-8]                                    # float64's degrees 12..8; none in float32
    for c in range(row.size):                            # vectorizes: no calls, no branches
        x = row[c] - sh
        x = x_min if x < x_min else x                    # a select, NaN kept (max() is a branch)
        n = np.floor(x * inv_ln2 + half)
        t = x - n * hi - n * lo
        p = c7
        if high.size:                                    # the same for every c: hoisted
            p = ((((high[0] * t + high[1]) * t + high[2]) * t + high[3]) * t + high[4]) * t + c7
        row[c] = ((((((p * t + c6) * t + c5) * t + c4) * t + c3) * t + c2) * t + c1) * t + c0
        e = np.int32(n) + bias                           # biased exponent of 2^n
        bits[c] = (e << mant) if e > 0 else 0            # 0 when 2^n is below the normal range


@njit(cache=True, fastmath=_FASTMATH)
def _exp_rows(s, shift, coef, iproto, rowsum):
    """In place: s[r, c] = exp(s[r, c] - shift[r]) for s - shift <= 0; rowsum[r] = sum_c.

    Results below the smallest normal number (and exp(-inf)) are exactly 0.
    s: (R, C) C-contiguous; shift, rowsum: (R,); coef, iproto from _exp_constants.
    """
    mant = 23 if iproto.itemsize == 4 else 52            # fraction bits of float32 / float64
    bias = 127 if iproto.itemsize == 4 else 1023         # exponent bias
    bits = np.empty(s.shape[1], iproto.dtype)
    scale2n = bits.view(s.dtype)                         # the same bytes read as floats: 2^n
    for r in range(s.shape[0]):
        row = s[r]
        _exp_parts(row, shift[r], coef, bits, mant, bias)
        rowsum[r] = 0
        total = rowsum[r]                                # a zero of the array's dtype
        for c in range(row.size):                        # reassociated: the sum in SIMD lanes
            row[c] *= scale2n[c]
            total += row[c]
        rowsum[r] = total


def exp_nonpositive(x):
    """exp(x) for x <= 0 by the kernels' polynomial; a NumPy-facing handle for tests."""
    x = np.ascontiguousarray(x)
    coef, iproto = _exp_constants(x.dtype)
    out = x.reshape(1, -1).copy()
    _exp_rows(out, np.zeros(1, x.dtype), coef, iproto, np.zeros(1, x.dtype))
    return out.reshape(x.shape)


# ----------------------------------------------------------------------------
# forward, BLAS tiles
# ----------------------------------------------------------------------------

# BEGIN KERNEL ch4.forward_tile
@njit(cache=True)
def _mask_causal(s, i0, j0, off):
    """Set s[r, c] = -inf where key j0 + c is after query i0 + r + off (a tile crossing the
    diagonal; off = S - L aligns it to the bottom-right)."""
    for r in range(s.shape[0]):
        for c in range(max(i0 + r + 1 + off - j0, 0), s.shape[1]):
            s[r, c] = -np.inf


@njit(cache=True, fastmath=_FASTMATH)
def _running_max(s, m_old, m_new, shift):
    """m_new = max(m_old, rowmax(s)); shift = m_new, or 0 for a row that has seen only -inf."""
    for r in range(s.shape[0]):
        row = s[r]
        mx = m_old[r]
        for c in range(row.size):
            mx = max(mx, row[c])
        m_new[r] = mx
        shift[r] = mx if mx > -np.inf else 0.0           # exp(-inf - 0) = 0, never -inf - -inf


@njit(cache=True, fastmath=_FASTMATH)
def _forward_head_q_outer(q, k, v, o, lse, scale, is_causal, bq, bk, coef, iproto):
    """FlashAttention-2 order for one head. q (L, E), k (S, E), v (S, Ev) -> o, lse in place."""
    L, S, Ev = q.shape[0], k.shape[0], v.shape[1]
    dt = q.dtype
    n_kv = (S + bk - 1) // bk
    off = S - L if is_causal else 0
    skipped = 0
    for i0 in range(0, L, bq):
        i1 = min(i0 + bq, L)
        nq = i1 - i0
        qi = q[i0:i1] * scale                            # (nq, E), scaled once per block
        m = np.full(nq, -np.inf, dt)
        m_new = np.empty(nq, dt)
        shift = np.empty(nq, dt)
        l = np.zeros(nq, dt)
        rowsum = np.empty(nq, dt)
        acc = np.zeros((nq, Ev), dt)
        j_end = min(S, max(i1 + off, 0)) if is_causal else S
        for j0 in range(0, j_end, bk):
            j1 = min(j0 + bk, S)
            s = np.dot(qi, k[j0:j1].T)                   # (nq, E) @ (E, nk) -> (nq, nk), BLAS
            if is_causal and j1 - 1 > i0 + off:          # this tile crosses the diagonal
                _mask_causal(s, i0, j0, off)
            _running_max(s, m, m_new, shift)
            _exp_rows(s, shift, coef, iproto, rowsum)    # s becomes P~ = exp(S - m_new)
            pv = np.dot(s, v[j0:j1])                     # (nq, nk) @ (nk, Ev) -> (nq, Ev)
            for r in range(nq):
                alpha = math.exp(m[r] - shift[r])        # one exp per row: libm is fine
                l[r] = alpha * l[r] + rowsum[r]
                for e in range(Ev):
                    acc[r, e] = alpha * acc[r, e] + pv[r, e]
                m[r] = m_new[r]
        skipped += n_kv - (j_end + bk - 1) // bk
        for r in range(nq):
            if l[r] == 0:                                # saw no key (causal, L > S): O = 0,
                o[i0 + r] = 0                            # lse = +inf so the backward's P is 0
                lse[i0 + r] = np.inf
                continue
            inv = 1.0 / l[r]
            for e in range(Ev):
                o[i0 + r, e] = acc[r, e] * inv
            lse[i0 + r] = m[r] + math.log(l[r])
    return skipped


@njit(cache=True, fastmath=_FASTMATH)
def _forward_head_kv_outer(q, k, v, o, lse, scale, is_causal, bq, bk, coef, iproto):
    """FlashAttention-1 order for one head: m, l and normalized O go back to "HBM" each tile."""
    L, S, Ev = q.shape[0], k.shape[0], v.shape[1]
    dt = q.dtype
    m = np.full(L, -np.inf, dt)
    l = np.zeros(L, dt)
    o[:] = 0
    m_new = np.empty(bq, dt)
    shift = np.empty(bq, dt)
    rowsum = np.empty(bq, dt)
    off = S - L if is_causal else 0
    skipped = 0
    for j0 in range(0, S, bk):
        j1 = min(j0 + bk, S)
        for i0 in range(0, L, bq):
            i1 = min(i0 + bq, L)
            if is_causal and j0 > i1 - 1 + off:
                skipped += 1
                continue
            nq = i1 - i0
            s = np.dot(q[i0:i1] * scale, k[j0:j1].T)   # (nq, nk)
            if is_causal and j1 - 1 > i0 + off:
                _mask_causal(s, i0, j0, off)
            _running_max(s, m[i0:i1], m_new, shift)
            _exp_rows(s, shift, coef, iproto, rowsum)
            pv = np.dot(s, v[j0:j1])                     # (nq, Ev)
            for r in range(nq):
                alpha = math.exp(m[i0 + r] - shift[r])
                l_new = alpha * l[i0 + r] + rowsum[r]
                if l_new > 0:                            # else no key yet: O stays 0
                    for e in range(Ev):                  # un-normalize, update, re-normalize
                        o[i0 + r, e] = (alpha * l[i0 + r] * o[i0 + r, e] + pv[r, e]) / l_new
                l[i0 + r] = l_new
                m[i0 + r] = m_new[r]
    for r in range(L):
        lse[r] = m[r] + math.log(l[r]) if l[r] > 0 else np.inf   # see _forward_head_q_outer
    return skipped


@njit(cache=True, nogil=True)
def _forward_heads(q, k, v, o, lse, scale, is_causal, bq, bk, q_outer, coef, iproto):
    skipped = 0
    for h in range(q.shape[0]):                          # heads are independent
        if q_outer:
            skipped = _forward_head_q_outer(q[h], k[h], v[h], o[h], lse[h], scale, is_causal,
                                            bq, bk, coef, iproto)
        else:
            skipped = _forward_head_kv_outer(q[h], k[h], v[h], o[h], lse[h], scale, is_causal,
                                             bq, bk, coef, iproto)
    return skipped


def flash_forward(q, k, v, scale, is_causal, block_q, block_k, q_outer):
    """numba twin of :func:`minigrad.flash.reference.flash_forward_reference` (same arguments, same results)."""
    BH, L, _ = q.shape
    o = np.empty((BH, L, v.shape[2]), q.dtype)
    lse = np.empty((BH, L), q.dtype)
    coef, iproto = _exp_constants(q.dtype)
    skipped = _over_heads(_forward_heads, BH, (q, k, v, o, lse),
                          (q.dtype.type(scale), bool(is_causal), int(block_q), int(block_k),
                           bool(q_outer), coef, iproto))
    return o, lse, int(skipped)


# ----------------------------------------------------------------------------
# forward, scalar loops (the slow first version, for comparison)
# ----------------------------------------------------------------------------

@njit(cache=True)
def _forward_head_scalar(q, k, v, o, lse, scale, is_causal, bq, bk):
    """FlashAttention-2 order, every dot product and exp an explicit scalar loop."""
    L, S, E, Ev = q.shape[0], k.shape[0], q.shape[1], v.shape[1]
    dt = q.dtype
    s = np.empty((bq, bk), dt)
    acc = np.empty((bq, Ev), dt)
    m = np.empty(bq, dt)
    l = np.empty(bq, dt)
    n_kv = (S + bk - 1) // bk
    off = S - L if is_causal else 0
    skipped = 0
    for i0 in range(0, L, bq):
        i1 = min(i0 + bq, L)
        m[:] = -np.inf
        l[:] = 0
        acc[:] = 0
        j_end = min(S, max(i1 + off, 0)) if is_causal else S
        for j0 in range(0, j_end, bk):
            j1 = min(j0 + bk, S)
            for r in range(i1 - i0):
                mx = m[r]
                for c in range(j1 - j0):
                    if is_causal and j0 + c > i0 + r + off:
                        s[r, c] = -np.inf
                    else:
                        dot = 0.0
                        for e in range(E):
                            dot += q[i0 + r, e] * k[j0 + c, e]
                        s[r, c] = dot * scale
                    mx = max(mx, s[r, c])
                if mx == -np.inf:                        # no key seen yet: nothing to add
                    continue
                alpha = math.exp(m[r] - mx)
                l[r] *= alpha
                for e in range(Ev):
                    acc[r, e] *= alpha
                for c in range(j1 - j0):
                    p = math.exp(s[r, c] - mx)
                    l[r] += p
                    for e in range(Ev):
                        acc[r, e] += p * v[j0 + c, e]
                m[r] = mx
        skipped += n_kv - (j_end + bk - 1) // bk
        for r in range(i1 - i0):
            if l[r] == 0:                                # saw no key: see _forward_head_q_outer
                o[i0 + r] = 0
                lse[i0 + r] = np.inf
                continue
            for e in range(Ev):
                o[i0 + r, e] = acc[r, e] / l[r]
            lse[i0 + r] = m[r] + math.log(l[r])
    return skipped


@njit(cache=True, nogil=True)
def _forward_scalar_heads(q, k, v, o, lse, scale, is_causal, bq, bk):
    skipped = 0
    for h in range(q.shape[0]):
        skipped = _forward_head_scalar(q[h], k[h], v[h], o[h], lse[h], scale, is_causal, bq, bk)
    return skipped


def flash_forward_scalar(q, k, v, scale, is_causal, block_q, block_k, q_outer=True):
    """Scalar-loop twin of the reference forward (FlashAttention-2 order only)."""
    if not q_outer:
        raise ValueError("flash_forward_scalar: only the q_outer loop order is written as scalar loops")
    BH, L, _ = q.shape
    o = np.empty((BH, L, v.shape[2]), q.dtype)
    lse = np.empty((BH, L), q.dtype)
    skipped = _over_heads(_forward_scalar_heads, BH, (q, k, v, o, lse),
                          (q.dtype.type(scale), bool(is_causal), int(block_q), int(block_k)))
    return o, lse, int(skipped)
# END KERNEL


# ----------------------------------------------------------------------------
# backward
# ----------------------------------------------------------------------------

# BEGIN KERNEL ch4.backward_tile
@njit(cache=True, fastmath=_FASTMATH)
def _backward_head(q, k, v, o, lse, do, dq, dk, dv, scale, is_causal, bq, bk, coef, iproto):
    """FlashAttention-2 backward for one head: K/V block outer, Q block inner; grads in place."""
    L, S, E, Ev = q.shape[0], k.shape[0], q.shape[1], v.shape[1]
    dt = q.dtype
    delta = np.empty(L, dt)
    for r in range(L):                                   # delta = rowsum(dO * O)
        t = do[r, 0] * 0
        for e in range(Ev):
            t += do[r, e] * o[r, e]
        delta[r] = t
    qs = q * scale                                       # (L, E): S = qs K^T and dK = dS^T qs
    dq[:] = 0
    rowsum = np.empty(bq, dt)
    off = S - L if is_causal else 0
    for j0 in range(0, S, bk):
        j1 = min(j0 + bk, S)
        kj, vj = k[j0:j1], v[j0:j1]
        dkj = np.zeros((j1 - j0, E), dt)
        dvj = np.zeros((j1 - j0, Ev), dt)
        i_start = (max(j0 - off, 0) // bq) * bq if is_causal else 0
        for i0 in range(i_start, L, bq):
            i1 = min(i0 + bq, L)
            nq = i1 - i0
            p = np.dot(qs[i0:i1], kj.T)                  # (nq, nk) scores, recomputed
            if is_causal and j1 - 1 > i0 + off:
                _mask_causal(p, i0, j0, off)
            _exp_rows(p, lse[i0:i1], coef, iproto, rowsum)   # P = exp(S - lse)
            doi = do[i0:i1]
            dvj += np.dot(p.T, doi)                      # (nk, nq) @ (nq, Ev)
            dp = np.dot(doi, vj.T)                       # (nq, Ev) @ (Ev, nk) -> (nq, nk)
            for r in range(nq):                          # dS = P * (dP - delta), in dp
                d = delta[i0 + r]
                for c in range(j1 - j0):
                    dp[r, c] = p[r, c] * (dp[r, c] - d)
            dq[i0:i1] += np.dot(dp, kj) * scale          # (nq, nk) @ (nk, E)
            dkj += np.dot(dp.T, qs[i0:i1])               # (nk, nq) @ (nq, E)
        dk[j0:j1] = dkj
        dv[j0:j1] = dvj


@njit(cache=True, nogil=True)
def _backward_heads(q, k, v, o, lse, do, dq, dk, dv, scale, is_causal, bq, bk, coef, iproto):
    for h in range(q.shape[0]):
        _backward_head(q[h], k[h], v[h], o[h], lse[h], do[h], dq[h], dk[h], dv[h], scale,
                       is_causal, bq, bk, coef, iproto)


def flash_backward(q, k, v, o, lse, do, scale, is_causal, block_q, block_k):
    """numba twin of :func:`minigrad.flash.reference.flash_backward_reference`."""
    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
    coef, iproto = _exp_constants(q.dtype)
    _over_heads(_backward_heads, q.shape[0], (q, k, v, o, lse, do, dq, dk, dv),
                (q.dtype.type(scale), bool(is_causal), int(block_q), int(block_k), coef, iproto))
    return dq, dk, dv
# END KERNEL
