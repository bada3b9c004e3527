"""Fused scaled dot-product attention: one numba kernel per (batch, head), both ways.

:func:`minigrad.functional.scaled_dot_product_attention` in NumPy makes about
fifteen passes over the (..., L, N) score matrix (scale, mask, max, exp, sum,
divide; then dP, the row sums, dS) and multiplies the heads one small BLAS
call at a time. The kernels here take one head at a time, cut into tiles of
``bq`` queries by ``bk`` keys, and keep each tile in cache from the product
that makes it to the products that use it:

forward   S = scale q k^T + bias, -inf at keys j >= limits[i];
          P~ = exp(S - rowmax(S)), l = rowsum(P~); O = (P~ v) / l
backward  P = P~ / l; dV = P^T dO; dP = dO v^T; dS = P * (dP - rowsum(dO * O));
          dQ = scale dS k; dK = scale dS^T q

The forward keeps P~ (tile after tile, in one flat buffer per head) and
1 / l for the backward, as the NumPy route keeps P. The tiles are multiplied
by BLAS (``np.dot`` inside numba calls SciPy's); a tile is at most 64*64*64
multiply-adds, the size up to which OpenBLAS runs a call on the calling
thread, so the heads, split over the cores in Python threads (``nogil``),
never wait on BLAS's own threads. A query block only visits the keys its
rows may attend: a causal mask costs about half the work of a full one.

Shapes, every array C-contiguous float32 (what the caller hands over):
q (BH, L, E), k (BH, N, E), v (BH, N, Ev), one row per (batch, head);
limits (G, L) int64: query i of mask group g may attend keys j < limits[g, i];
bias (G, L, N) or None, added to the scaled scores (-inf where not allowed);
groups (BH,) int64: the mask group of each head (the masks' own leading
dims broadcast over the batch). :func:`mask_plan` makes the last three from
SDPA's masks. Each kernel has a NumPy ``*_reference`` with the same signature;
``tests/test_kernels_attention.py`` holds the two equal.

This module imports numba: :mod:`minigrad.functional` imports it only when
:func:`minigrad.kernels.fast` says the fast kernels are wanted.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..flash.kernels import _exp_constants, _exp_rows  # exp by a polynomial that vectorizes
from ..threads import run_parallel

__all__ = ["stack_heads", "mask_plan", "tile_sizes", "sdpa_forward_reference",
           "sdpa_forward_numba", "sdpa_backward_reference", "sdpa_backward_numba"]

_THREADS = 2
_MIN_PER_THREAD = 1 << 20   # multiply-adds below which one thread beats the pool's hand-off
_BLAS_ONE_THREAD = 1 << 18  # OpenBLAS multiplies m*n*k <= this on the calling thread
# reassociation lets the compiler vectorize row sums; no 'nnan'/'ninf': masked scores are -inf
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


# ----------------------------------------------------------------------------
# the kernels' view of SDPA's arguments
# ----------------------------------------------------------------------------

def stack_heads(x: np.ndarray, batch: tuple) -> np.ndarray:
    """(..., n, d) broadcast to ``batch`` + (n, d) and flattened to a writeable, C-contiguous
    float32 (BH, n, d) (numba compiles once for that type; copied only when needed)."""
    if x.shape[:-2] != batch:                            # broadcast_to's view is read-only
        x = np.broadcast_to(x, batch + x.shape[-2:])
    x = x.reshape((-1,) + x.shape[-2:])                  # copies a transposed view
    if x.dtype == np.float32 and x.flags.c_contiguous and x.flags.writeable:
        return x
    return np.array(x, dtype=np.float32, order="C")


def mask_plan(allowed, bias, batch: tuple, L: int, N: int):
    """SDPA's masks as the kernels take them: (limits (G, L), bias (G, L, N) or None, groups (BH,)).

    Args:
        allowed: bool, True where query i may attend key j, broadcastable to
            ``batch`` + (L, N); or None (everything allowed).
        bias: float, added to the scaled scores, broadcastable likewise; or None.
    G counts the distinct masks over the batch (the masks' own leading dims);
    head h uses mask ``groups[h]``. Where each row of ``allowed`` is a prefix of
    the keys (a causal triangle, right padding) it becomes ``limits``, the
    number of keys each query sees, and the kernels skip the rest; any other
    pattern joins the bias as -inf.
    """
    masks = [m.reshape((1,) * (2 - m.ndim) + m.shape) for m in (allowed, bias) if m is not None]
    lead = np.broadcast_shapes(*(m.shape[:-2] for m in masks)) if masks else ()
    G = math.prod(lead)
    groups = np.array(np.broadcast_to(np.arange(G).reshape(lead), batch), np.int64).reshape(-1)

    def per_group(m):                                   # (..., L|1, N|1) -> (G, L, N)
        return np.broadcast_to(m, lead + (L, N)).reshape(G, L, N)

    limits, extra = np.full((G, L), N, np.int64), None
    if allowed is not None:
        a = per_group(masks[0])
        seen = a.sum(axis=-1)                           # (G, L): keys each query may attend
        if np.array_equal(a, np.arange(N) < seen[..., None]):
            limits = seen.astype(np.int64)
        else:
            extra = np.where(a, 0.0, -np.inf).astype(np.float32)
    if bias is not None:
        b = per_group(masks[-1]).astype(np.float32)
        extra = b if extra is None else b + extra
    return limits, (None if extra is None else np.ascontiguousarray(extra)), groups


def tile_sizes(E: int, Ev: int) -> tuple:
    """(bq, bk): 64 queries, and as many keys as keep a tile's products within
    _BLAS_ONE_THREAD multiply-adds (64 for E = 64, 128 for E = 32), 16 to 256."""
    bk = _BLAS_ONE_THREAD // (64 * max(E, Ev, 1))
    return 64, int(min(256, max(16, 1 << (max(bk, 1).bit_length() - 1))))


def _head_ranges(heads: int, work_per_head: int) -> list:
    """Split the heads into at most _THREADS contiguous ranges."""
    t = max(1, min(_THREADS, heads, heads * work_per_head // _MIN_PER_THREAD))
    cuts = [heads * i // t for i in range(t + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


# ----------------------------------------------------------------------------
# forward
# ----------------------------------------------------------------------------

def sdpa_forward_reference(q, k, v, scale, limits, bias, groups):
    """(O, P) of O = softmax(scale q k^T + bias, keys j >= limits[i] masked) v, per head.

    A query that may attend no key gets P = 0 and O = 0. P (BH, L, N) is what
    :func:`sdpa_backward_reference` takes.
    """
    N = k.shape[1]
    s = (q @ k.transpose(0, 2, 1)) * np.float32(scale)   # (BH, L, E) @ (BH, E, N) -> (BH, L, N)
    if bias is not None:
        s = s + bias[groups]
    s[np.arange(N) >= limits[groups][..., None]] = -np.inf
    m = s.max(axis=-1, keepdims=True)
    m[m == -np.inf] = 0.0                                # a fully masked row: exp(-inf) = 0
    p = np.exp(s - m)                                    # subtract the row max: no overflow
    l = p.sum(axis=-1, keepdims=True)
    p /= np.where(l == 0, 1.0, l)
    return p @ v, p                                      # (BH, L, N) @ (BH, N, Ev) -> (BH, L, Ev)


@njit(cache=True, fastmath=_FASTMATH)
def _transposed_tiles(x, n, bk):
    """x[:n] (n, d) as tiles of bk rows, each transposed: tile j0 is (d, nk), C-contiguous, at
    offset j0 * d of the flat result. BLAS multiplies q_i @ tile (both row-major) about 1.5x
    faster than q_i @ x[j0:j1].T."""
    d = x.shape[1]
    out = np.empty(n * d, x.dtype)
    for j0 in range(0, n, bk):
        nk = min(bk, n - j0)
        t = out[j0 * d:j0 * d + nk * d].reshape((d, nk))
        for c in range(nk):
            for e in range(d):
                t[e, c] = x[j0 + c, e]
    return out


@njit(cache=True, fastmath=_FASTMATH)
def _accumulate(dst, src):
    """dst += src, (r, c) each; numba's in-place array operator is several times slower."""
    for r in range(src.shape[0]):
        a, b = dst[r], src[r]
        for c in range(b.size):
            a[c] += b[c]


# float32 bits read as int32 are ordered as the floats for x >= 0 and reversed for x < 0;
# flipping the 31 magnitude bits of the negative ones makes int order float order. The row
# max is taken on these keys: an int max vectorizes, numba's float max does not (4-7x).
_KEY_NEG_INF = np.int32(-2139095041)    # the key of -inf: 0xff800000 ^ 0x7fffffff


@njit(cache=True, fastmath=_FASTMATH)
def _scores_tile(s, scale, lim, j0, bias, has_bias, i0, mkey):
    """In place on the tile s = q_i k_j^T (queries i0.., keys j0..): s * scale + bias, -inf at
    keys j >= lim[r]; mkey[r] = max(mkey[r], the key of the row's max)."""
    nk = s.shape[1]
    bits = s.view(np.int32)
    for r in range(s.shape[0]):
        row, rb = s[r], bits[r]
        stop = min(max(lim[r] - j0, 0), nk)              # keys from here on are masked
        if has_bias:
            b = bias[i0 + r, j0:j0 + nk]
            for c in range(stop):
                row[c] = row[c] * scale + b[c]
        else:
            for c in range(stop):
                row[c] *= scale
        for c in range(stop, nk):
            row[c] = -np.inf
        key = mkey[r]
        for c in range(stop):
            x = rb[c]
            key = max(key, x ^ ((x >> 31) & 0x7FFFFFFF))
        mkey[r] = key


@njit(cache=True, fastmath=_FASTMATH)
def _forward_head(q, k, v, scale, lim, bias, has_bias, bq, bk, o, pt, inv, coef, iproto):
    """One head: o (L, Ev); P~ into pt (flat, the query blocks' tiles in order); inv = 1 / l."""
    L, Ev = q.shape[0], v.shape[1]
    E = q.shape[1]
    n_all = lim.max()                                    # tile j0: keys j0 .. j0 + nk - 1 with
    kt = _transposed_tiles(k, n_all, bk)                 # nk = min(bk, n_all - j0), for every block
    mkey, shift = np.empty(bq, np.int32), np.empty(bq, q.dtype)
    m = mkey.view(q.dtype)                               # the keys back as floats, in place
    l, rowsum = np.empty(bq, q.dtype), np.empty(bq, q.dtype)
    pv = np.empty(bq * Ev, q.dtype)
    off = 0
    for i0 in range(0, L, bq):
        nq = min(bq, L - i0)
        n = lim[i0:i0 + nq].max()                        # keys any of these queries may see
        qi, oi = q[i0:i0 + nq], o[i0:i0 + nq]
        mkey[:] = _KEY_NEG_INF
        t = off
        for j0 in range(0, n, bk):                       # pass 1: scores and their row max
            nk = min(bk, n_all - j0)
            s = pt[t:t + nq * nk].reshape((nq, nk))
            np.dot(qi, kt[j0 * E:(j0 + nk) * E].reshape((E, nk)), s)   # (nq, E) @ (E, nk)
            _scores_tile(s, scale, lim[i0:i0 + nq], j0, bias, has_bias, i0, mkey)
            t += nq * nk
        for r in range(nq):                              # a row that saw only -inf: exp(-inf - 0)
            key = mkey[r]
            mkey[r] = key ^ ((key >> 31) & 0x7FFFFFFF)
            shift[r] = m[r] if m[r] > -np.inf else 0.0
        l[:] = 0
        t = off
        for j0 in range(0, n, bk):                       # pass 2: P~ = exp(S - max), O += P~ v
            nk = min(bk, n_all - j0)
            s = pt[t:t + nq * nk].reshape((nq, nk))
            _exp_rows(s, shift, coef, iproto, rowsum)
            l += rowsum
            if j0 == 0:
                np.dot(s, v[j0:j0 + nk], oi)             # (nq, nk) @ (nk, Ev) -> (nq, Ev)
            else:
                acc = pv[:nq * Ev].reshape((nq, Ev))
                np.dot(s, v[j0:j0 + nk], acc)
                _accumulate(oi, acc)
            t += nq * nk
        if n == 0:
            oi[:] = 0
        for r in range(nq):
            w = 1.0 / l[r] if l[r] > 0 else 0.0          # no key at all: O = 0, P = 0
            inv[i0 + r] = w
            oi[r] *= w
        off = t


@njit(cache=True, nogil=True)
def _forward_heads(q, k, v, scale, limits, bias, has_bias, groups, bq, bk, o, pt, inv, coef,
                   iproto):
    for h in range(q.shape[0]):                          # heads are independent
        g = groups[h]
        _forward_head(q[h], k[h], v[h], scale, limits[g], bias[g if has_bias else 0], has_bias,
                      bq, bk, o[h], pt[h], inv[h], coef, iproto)


def sdpa_forward_numba(q, k, v, scale, limits, bias, groups):
    """numba twin of :func:`sdpa_forward_reference`: (O, saved), saved = (P~'s tiles, 1 / l),
    what :func:`sdpa_backward_numba` takes."""
    BH, L, E = q.shape
    N, Ev = k.shape[1], v.shape[2]
    dt = q.dtype
    bq, bk = tile_sizes(E, Ev)
    o, pt, inv = np.empty((BH, L, Ev), dt), np.empty((BH, L * N), dt), np.empty((BH, L), dt)
    coef, iproto = _exp_constants(dt)
    has_bias = bias is not None
    b = bias if has_bias else np.zeros((1, 1, 1), dt)
    run_parallel([(_forward_heads, (q[a:z], k[a:z], v[a:z], dt.type(scale), limits, b, has_bias,
                                    groups[a:z], bq, bk, o[a:z], pt[a:z], inv[a:z], coef, iproto))
                  for a, z in _head_ranges(BH, L * N * (E + Ev))])
    return o, (pt, inv)


# ----------------------------------------------------------------------------
# backward
# ----------------------------------------------------------------------------

# BEGIN KERNEL ch3.sdpa_backward
# (the backward restates exercise ch3.sdpa_backward: a release that stubs it drops this region,
# and functional.scaled_dot_product_attention then runs its readable route)
def sdpa_backward_reference(q, k, v, o, saved, do, scale, limits, groups):
    """(dQ, dK, dV) from dO (BH, L, Ev) and the P that :func:`sdpa_forward_reference` saved:
    dV = P^T dO; dP = dO v^T; dS = P * (dP - rowsum(dO * O)); dQ = scale dS k;
    dK = scale dS^T q. (``limits`` and ``groups`` are in P's zeros already.)"""
    p = saved
    dv = p.transpose(0, 2, 1) @ do                       # (BH, N, L) @ (BH, L, Ev) -> (BH, N, Ev)
    dp = do @ v.transpose(0, 2, 1)                       # (BH, L, Ev) @ (BH, Ev, N) -> (BH, L, N)
    ds = p * (dp - (do * o).sum(axis=-1, keepdims=True))
    dq = (ds @ k) * np.float32(scale)                    # (BH, L, N) @ (BH, N, E) -> (BH, L, E)
    dk = (ds.transpose(0, 2, 1) @ q) * np.float32(scale)  # (BH, N, L) @ (BH, L, E) -> (BH, N, E)
    return dq, dk, dv


@njit(cache=True, fastmath=_FASTMATH)
def _backward_head(q, k, v, o, pt, inv, do, scale, lim, bq, bk, dq, dk, dv):
    """One head, query block by query block, over the tiles the forward left in pt."""
    L, E, Ev = q.shape[0], q.shape[1], v.shape[1]
    n_all = lim.max()
    vt = _transposed_tiles(v, n_all, bk)                 # tile j0: v[j0:j0 + nk].T, (Ev, nk)
    dk[:] = 0
    dv[:] = 0
    delta = np.empty(bq, q.dtype)
    dos = np.empty((bq, Ev), q.dtype)                    # dO / l: P^T dO = P~^T (dO / l)
    ds_buf, acc = np.empty(bq * bk, q.dtype), np.empty(max(bq, bk) * max(E, Ev), q.dtype)
    off = 0
    for i0 in range(0, L, bq):
        nq = min(bq, L - i0)
        n = lim[i0:i0 + nq].max()
        qi, doi, dqi = q[i0:i0 + nq], do[i0:i0 + nq], dq[i0:i0 + nq]
        for r in range(nq):                              # delta = rowsum(dO * O) = rowsum(dP * P)
            d = doi[r, 0] * 0
            for e in range(Ev):
                d += doi[r, e] * o[i0 + r, e]
            delta[r] = d
            for e in range(Ev):
                dos[r, e] = doi[r, e] * inv[i0 + r]
        dqi[:] = 0
        for j0 in range(0, n, bk):
            nk = min(bk, n_all - j0)
            p = pt[off:off + nq * nk].reshape((nq, nk))  # P~ of this tile
            a = acc[:nk * Ev].reshape((nk, Ev))
            np.dot(p.T, dos[:nq], a)                     # dV += P^T dO: (nk, nq) @ (nq, Ev)
            _accumulate(dv[j0:j0 + nk], a)
            ds = ds_buf[:nq * nk].reshape((nq, nk))
            np.dot(doi, vt[j0 * Ev:(j0 + nk) * Ev].reshape((Ev, nk)), ds)  # dP = dO v^T
            for r in range(nq):                          # dS * scale, in place of dP
                d, w = delta[r], inv[i0 + r] * scale
                for c in range(nk):
                    ds[r, c] = p[r, c] * (ds[r, c] - d) * w
            a = acc[:nq * E].reshape((nq, E))
            np.dot(ds, k[j0:j0 + nk], a)                 # dQ += dS k: (nq, nk) @ (nk, E)
            _accumulate(dqi, a)
            a = acc[:nk * E].reshape((nk, E))
            np.dot(ds.T, qi, a)                          # dK += dS^T q: (nk, nq) @ (nq, E)
            _accumulate(dk[j0:j0 + nk], a)
            off += nq * nk


@njit(cache=True, nogil=True)
def _backward_heads(q, k, v, o, pt, inv, do, scale, limits, groups, bq, bk, dq, dk, dv):
    for h in range(q.shape[0]):
        _backward_head(q[h], k[h], v[h], o[h], pt[h], inv[h], do[h], scale, limits[groups[h]],
                       bq, bk, dq[h], dk[h], dv[h])


def sdpa_backward_numba(q, k, v, o, saved, do, scale, limits, groups):
    """numba twin of :func:`sdpa_backward_reference`; ``saved`` from :func:`sdpa_forward_numba`."""
    BH, L, E = q.shape
    N, Ev = k.shape[1], v.shape[2]
    pt, inv = saved
    bq, bk = tile_sizes(E, Ev)
    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
    run_parallel([(_backward_heads, (q[a:z], k[a:z], v[a:z], o[a:z], pt[a:z], inv[a:z], do[a:z],
                                     q.dtype.type(scale), limits, groups[a:z], bq, bk, dq[a:z],
                                     dk[a:z], dv[a:z]))
                  for a, z in _head_ranges(BH, L * N * (E + Ev))])
    return dq, dk, dv
# END KERNEL
