"""Fused scaled dot-product attention: one numba kernel per (batch, head), both ways.

:func:`minigrad.functional.scaled_dot_product_attention` in NumPy makes about
fifteen passes over the (..., L, N) score matrix (scale, mask, max, exp, sum,
divide; then dP, the row sums, dS) and one small BLAS call per head and
product. The kernels here take one head at a time, cut into tiles of ``bq``
queries by ``bk`` keys, and keep each tile in cache from the product that
makes it to the products that use it:

forward   S = scale q k^T + bias, -inf at keys j >= limits[i];
          P~ = exp(S - rowmax(S)), l = rowsum(P~); O = (P~ v) / l
backward  with P = P~ / l: dV = P^T dO; dP = dO v^T; dS = P * (dP - rowsum(dO * O));
          dQ = scale dS k; dK = scale dS^T q

The forward keeps P~ (tile after tile, in one flat buffer per head) and
1 / l for the backward, as the NumPy route keeps P. How it is made fast:

- BLAS multiplies the tiles (``np.dot`` inside numba calls SciPy's), both
  operands row-major (k and v are copied into transposed tiles once per
  head: q_i @ tile runs about 1.5x faster than q_i @ k_j.T). A tile's
  product is at most 64*64*64 multiply-adds, the size up to which OpenBLAS
  stays on the calling thread, so the heads, split over the cores in Python
  threads (``nogil``), never wait on BLAS's own threads.
- A query block visits only the keys its rows may attend: a causal mask
  costs about half the work of a full one.
- The row max is an integer max over the floats' bits (it vectorizes, a
  float max does not), and exp is chapter 4's polynomial
  (:func:`minigrad.flash.kernels._exp_rows`) in a loop the compiler vectorizes.

Shapes (what the caller hands over, float32): q (B, H, L, E), k (B, H, N, E),
v (B, H, N, Ev), one (L, E) matrix per (batch, head); head h is (h // H, h % H).
limits (G, L) int64: query i of mask group g may attend keys j < limits[g, i];
bias (G, L, N) or None, added to the scaled scores (-inf where not allowed);
groups (B H,) int64: the mask group of each head (the masks' own leading
dims broadcast over the batch). :func:`as_heads` and :func:`mask_plan` make
them from SDPA's arguments. Each kernel has a NumPy ``*_reference`` with the
same signature; ``tests/test_kernels_attention.py`` holds the two equal, and
``benchmarks/bench_attention.py`` times them against PyTorch.

Layouts. Each (B, H, n, d) argument is read from a C-contiguous array in one
of two layouts (:func:`_layout`):

- head-major: the view itself is C-contiguous; head (b, j) is the (n, d)
  matrix x[b, j], read in place;
- token-major: the view transposes a C-contiguous (B, n, H, d) array, as the
  model's ``linear(x).reshape(B, T, H, D).transpose(1, 2)`` does; row t of
  head (b, j) is base[b, t, j, :], and the kernels copy a head's rows into a
  per-thread buffer (loops over a C-contiguous base, which numba vectorizes;
  the same copy through the strided view runs several times slower).

Any other strides (broadcast keys, slices) are copied once, head-major.
Outputs follow their inputs, as torch's SDPA does: O takes q's layout, dQ,
dK and dV take q's, k's and v's. So the model's ``O.transpose(1, 2).reshape(B,
T, C)`` is a view, and the gradients reach the projections' backward
C-contiguous, with no copy either way; a token-major head is computed in a
buffer and its rows scattered into place.

This module imports numba: :mod:`minigrad.functional` imports it only when
:func:`minigrad.kernels.fast` says the fast kernels are wanted.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ..flash.kernels import _exp_constants, _exp_rows
from ..threads import run_parallel, split_work
from .jit import njit

__all__ = ["as_heads", "mask_plan", "tile_sizes", "sdpa_forward_reference",
           "sdpa_forward_numba", "sdpa_backward_reference", "sdpa_backward_numba"]

_CACHED_MASK_SIZE = 1 << 16  # bool masks up to this many entries have their plan cached
# multiply-adds a thread must get (minigrad.threads says why): TinyGPT's 13M per call ran 3%
# faster on one thread; L = 512's 1G runs 1.8x faster on two
_MIN_PER_THREAD = 1 << 25
_BLAS_ONE_THREAD = 1 << 18  # OpenBLAS multiplies m*n*k <= this on the calling thread
# reassociation lets the compiler vectorize row sums; no 'nnan'/'ninf': masked scores are -inf
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


# ----------------------------------------------------------------------------
# the kernels' view of SDPA's arguments
# ----------------------------------------------------------------------------

def as_heads(x: np.ndarray, batch: tuple) -> np.ndarray:
    """(..., n, d) broadcast to ``batch`` + (n, d) and viewed as float32 (B, H, n, d): the
    batch's last dim is H, the others merged into B. Any strides: a view is not copied here
    (the kernels read a token-major view in place; :func:`_layout`)."""
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    if x.shape[:-2] != batch:
        x = np.broadcast_to(x, batch + x.shape[-2:])
    return x.reshape((math.prod(batch[:-1]), batch[-1] if batch else 1) + x.shape[-2:])


def _layout(x: np.ndarray) -> tuple:
    """(base, token_major) of a (B, H, n, d) view: x itself when it is C-contiguous
    (head-major), the C-contiguous (B, n, H, d) array it transposes (token-major), else a
    head-major copy (broadcast or sliced views)."""
    if x.flags.c_contiguous:
        return x, False
    base = x.transpose(0, 2, 1, 3)
    if base.flags.c_contiguous:
        return base, True
    return np.ascontiguousarray(x), False


def _empty(shape: tuple, token_major: bool) -> tuple:
    """(view, base): an empty float32 (B, H, n, d) view in the layout asked for, and the
    C-contiguous array under it, (B, n, H, d) when token-major."""
    B, H, n, d = shape
    if not token_major:
        x = np.empty(shape, np.float32)
        return x, x
    base = np.empty((B, n, H, d), np.float32)
    return base.transpose(0, 2, 1, 3), base


def mask_plan(allowed, bias, batch: tuple, L: int, N: int):
    """SDPA's masks as the kernels take them: (limits (G, L), bias (G, L, N) or None,
    groups (B H,)).

    Args:
        allowed: bool, True where query i may attend key j, broadcastable to
            ``batch`` + (L, N); or None (everything allowed).
        bias: float, added to the scaled scores, broadcastable likewise; or None.
    G counts the distinct masks over the batch (the masks' own leading dims);
    head h uses mask ``groups[h]``. Where each row of ``allowed`` is a prefix of
    the keys (a causal triangle, right padding) it becomes ``limits``, the
    number of keys each query sees, and the kernels skip the rest; any other
    pattern joins the bias as -inf. Bool-only plans are cached by the mask's bytes (a model
    passes the same triangle every layer and step): the arrays returned are shared, never written.
    """
    if bias is None and (allowed is None or allowed.size <= _CACHED_MASK_SIZE):
        key = None if allowed is None else (allowed.shape, np.asarray(allowed, bool).tobytes())
        return _bool_plan(key, batch, L, N)
    return _plan(allowed, bias, batch, L, N)


@functools.lru_cache(maxsize=32)
def _bool_plan(key, batch: tuple, L: int, N: int):
    allowed = None if key is None else np.frombuffer(key[1], bool).reshape(key[0])
    return _plan(allowed, None, batch, L, N)


def _plan(allowed, bias, batch: tuple, L: int, N: int):
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
    """The heads in contiguous ranges, one per thread the work pays for."""
    return split_work(heads, work_per_head, _MIN_PER_THREAD)


# ----------------------------------------------------------------------------
# forward
# ----------------------------------------------------------------------------

def sdpa_forward_reference(q, k, v, scale, limits, bias, groups):
    """(O, P) of O = softmax(scale q k^T + bias, keys j >= limits[i] masked) v, per head.

    A query that may attend no key gets P = 0 and O = 0. P (B, H, L, N) is what
    :func:`sdpa_backward_reference` takes.
    """
    N = k.shape[-2]
    g = groups.reshape(q.shape[:2])                      # each head's mask
    s = (q @ np.swapaxes(k, -1, -2)) * np.float32(scale)  # (.., L, E) @ (.., E, N) -> (.., L, N)
    if bias is not None:
        s = s + bias[g]
    s[np.arange(N) >= limits[g][..., None]] = -np.inf
    m = s.max(axis=-1, keepdims=True)
    m[m == -np.inf] = 0.0                                # a fully masked row: exp(-inf) = 0
    p = np.exp(s - m)                                    # subtract the row max: no overflow
    l = p.sum(axis=-1, keepdims=True)
    p /= np.where(l == 0, 1.0, l)
    return p @ v, p                                      # (.., L, N) @ (.., N, Ev) -> (.., L, Ev)


@njit(cache=True)
def _n_rows(x, tm):
    """n of a (B, H, n, d) argument from its base: (B, n, H, d) when token-major (tm)."""
    return x.shape[1] if tm else x.shape[2]


# reading and writing heads: the only functions that know the layouts (module docstring);
# the kernels below see each head as a C-contiguous (n, d) matrix
@njit(cache=True)
def _buffer(x, tm, n):
    """Scratch for one head (n, d) of x when it is token-major; none (0 rows) when it is
    head-major, read and written in place."""
    return np.empty((n if tm else 0, x.shape[3]), x.dtype)


@njit(cache=True, fastmath=_FASTMATH)
def _head(x, tm, b, j, buf):
    """Head (b, j) as a C-contiguous (n, d) matrix: x[b, j] itself when head-major, else
    its rows x[b, t, j, :] copied into buf (n, d)."""
    if not tm:
        return x[b, j]
    for t in range(buf.shape[0]):
        for e in range(buf.shape[1]):
            buf[t, e] = x[b, t, j, e]
    return buf


@njit(cache=True, fastmath=_FASTMATH)
def _out_head(x, tm, b, j, buf):
    """Where head (b, j)'s result is made: in place, x[b, j], when head-major; else buf,
    which :func:`_store_head` then scatters into x."""
    return buf if tm else x[b, j]


@njit(cache=True, fastmath=_FASTMATH)
def _store_head(x, tm, b, j, buf):
    """Head (b, j)'s rows from buf into a token-major x (a head-major one holds them already)."""
    if tm:
        for t in range(buf.shape[0]):
            for e in range(buf.shape[1]):
                x[b, t, j, e] = buf[t, e]


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
    keys j >= lim[r]; mkey[r] = max(mkey[r], the key of the row's max). Whole rows, masked or
    not: a loop that stops mid-row runs its tail one element at a time (2x slower here)."""
    nk = s.shape[1]
    bits = s.view(np.int32)
    for r in range(s.shape[0]):
        row, rb = s[r], bits[r]
        stop = lim[r] - j0                               # keys from here on are masked
        if has_bias:
            b = bias[i0 + r, j0:j0 + nk]
            for c in range(nk):
                row[c] = row[c] * scale + b[c] if c < stop else -np.inf
        else:
            for c in range(nk):
                row[c] = row[c] * scale if c < stop else -np.inf
        key = mkey[r]
        for c in range(nk):
            x = rb[c]
            key = max(key, x ^ ((x >> 31) & 0x7FFFFFFF))
        mkey[r] = key


# exp(S - rowmax) in place, with the row sums: chapter 4's vectorizable exp (Cody & Waite's
# reduction, a polynomial, 2^n written into the exponent bits), in float32
_EXP_COEF, _EXP_IPROTO = _exp_constants(np.float32)


@njit(cache=True, fastmath=_FASTMATH)
def _forward_head(q, kt, v, scale, lim, bias, has_bias, bq, bk, o, pt, inv, coef, iproto):
    """One head: o (L, Ev); P~ into pt (flat, the query blocks' tiles in order); inv = 1 / l.
    kt: k's tiles transposed (:func:`_transposed_tiles`); tile j0 holds keys j0 .. j0 + nk - 1,
    nk = min(bk, n_all - j0) for every query block."""
    L, E, Ev = q.shape[0], q.shape[1], v.shape[1]
    n_all = lim.max()
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
            for r in range(nq):
                l[r] += rowsum[r]
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
def _forward_heads(q, k, v, tm, H, h0, h1, scale, limits, bias, has_bias, groups, bq, bk, o,
                   pt, inv, coef, iproto):
    """Heads h0 <= h < h1, head h = b H + j, of the C-contiguous bases q, k, v and o, each
    token-major where tm = (q's, k's, v's) says so (o is in q's layout); coef, iproto: exp's
    constants, passed in as the flash kernels do (read as globals, numba freezes them into the
    compiled code, where the two-thread forward at L = 512 ran about 20% slower)."""
    tq, tk, tv = tm
    L, N = _n_rows(q, tq), _n_rows(k, tk)
    qbuf, kbuf, vbuf, obuf = _buffer(q, tq, L), _buffer(k, tk, N), _buffer(v, tv, N), \
        _buffer(o, tq, L)
    for h in range(h0, h1):                              # heads are independent
        b, j, g = h // H, h % H, groups[h]
        kt = _transposed_tiles(_head(k, tk, b, j, kbuf), limits[g].max(), bk)
        oh = _out_head(o, tq, b, j, obuf)
        _forward_head(_head(q, tq, b, j, qbuf), kt, _head(v, tv, b, j, vbuf), scale,
                      limits[g], bias[g if has_bias else 0], has_bias, bq, bk, oh, pt[h],
                      inv[h], coef, iproto)
        _store_head(o, tq, b, j, oh)


def sdpa_forward_numba(q, k, v, scale, limits, bias, groups):
    """numba twin of :func:`sdpa_forward_reference`: (O, saved), saved = (P~'s tiles, 1 / l),
    what :func:`sdpa_backward_numba` takes. O (B, H, L, Ev) is in q's layout (module
    docstring): token-major for token-major q."""
    B, H, L, E = q.shape
    N, Ev = k.shape[2], v.shape[3]
    (qb, tq), (kb, tk), (vb, tv) = (_layout(x) for x in (q, k, v))
    dt = np.dtype(np.float32)
    bq, bk = tile_sizes(E, Ev)
    (o, ob), pt, inv = _empty((B, H, L, Ev), tq), np.empty((B * H, L * N), dt), \
        np.empty((B * H, L), dt)
    has_bias = bias is not None
    b = bias if has_bias else np.zeros((1, 1, 1), dt)
    run_parallel([(_forward_heads, (qb, kb, vb, (tq, tk, tv), H, h0, h1, dt.type(scale), limits,
                                    b, has_bias, groups, bq, bk, ob, pt, inv, _EXP_COEF,
                                    _EXP_IPROTO))
                  for h0, h1 in _head_ranges(B * H, L * N * (E + Ev))])
    return o, (pt, inv)


# ----------------------------------------------------------------------------
# backward
# ----------------------------------------------------------------------------

# BEGIN KERNEL ch3.sdpa_backward
# (the backward restates exercise ch3.sdpa_backward: a release that stubs it drops this region,
# and functional.scaled_dot_product_attention then runs its readable route)
def sdpa_backward_reference(q, k, v, o, saved, do, scale, limits, groups):
    """(dQ, dK, dV) from dO (B, H, L, Ev) and the P that :func:`sdpa_forward_reference` saved:
    dV = P^T dO; dP = dO v^T; dS = P * (dP - rowsum(dO * O)); dQ = scale dS k;
    dK = scale dS^T q. (``limits`` and ``groups`` are in P's zeros already.)"""
    p = saved
    dv = np.swapaxes(p, -1, -2) @ do                     # (.., N, L) @ (.., L, Ev) -> (.., N, Ev)
    dp = do @ np.swapaxes(v, -1, -2)                     # (.., L, Ev) @ (.., Ev, N) -> (.., L, N)
    ds = p * (dp - (do * o).sum(axis=-1, keepdims=True))
    dq = (ds @ k) * np.float32(scale)                    # (.., L, N) @ (.., N, E) -> (.., L, E)
    dk = (np.swapaxes(ds, -1, -2) @ q) * np.float32(scale)  # (.., N, L) @ (.., L, E) -> (.., N, E)
    return dq, dk, dv


@njit(cache=True, fastmath=_FASTMATH)
def _scaled_output_grad(do, o, inv):
    """(dO / l, rowsum(dO * O) / l), (L, Ev) and (L,): P = P~ / l, so P^T dO = P~^T (dO / l)
    and dS = P * (dP - rowsum(dO * O)) = P~ * ((dO / l) v^T - rowsum(dO * O) / l)."""
    L, Ev = do.shape
    dos, delta = np.empty((L, Ev), do.dtype), np.empty(L, do.dtype)
    for r in range(L):
        d = do[r, 0] * 0
        for e in range(Ev):
            d += do[r, e] * o[r, e]
            dos[r, e] = do[r, e] * inv[r]
        delta[r] = d * inv[r]
    return dos, delta


@njit(cache=True, fastmath=_FASTMATH)
def _backward_head(q, k, vt, pt, dos, delta, scale, lim, bq, bk, dq, dk, dv):
    """One head, query block by query block, over the tiles the forward left in pt; vt: v's
    tiles transposed, dos and delta from :func:`_scaled_output_grad`."""
    L, E, Ev = q.shape[0], q.shape[1], dos.shape[1]
    n_all = lim.max()
    dk[:] = 0
    dv[:] = 0
    ds_buf, acc = np.empty(bq * bk, q.dtype), np.empty(max(bq, bk) * max(E, Ev), q.dtype)
    off = 0
    for i0 in range(0, L, bq):
        nq = min(bq, L - i0)
        n = lim[i0:i0 + nq].max()
        qi, dosi, dqi = q[i0:i0 + nq], dos[i0:i0 + nq], dq[i0:i0 + nq]
        dqi[:] = 0
        for j0 in range(0, n, bk):
            nk = min(bk, n_all - j0)
            p = pt[off:off + nq * nk].reshape((nq, nk))  # P~ of this tile
            a = acc[:nk * Ev].reshape((nk, Ev))
            np.dot(p.T, dosi, a)                         # dV += P^T dO: (nk, nq) @ (nq, Ev)
            _accumulate(dv[j0:j0 + nk], a)
            ds = ds_buf[:nq * nk].reshape((nq, nk))
            np.dot(dosi, vt[j0 * Ev:(j0 + nk) * Ev].reshape((Ev, nk)), ds)  # dP / l = (dO / l) v^T
            for r in range(nq):                          # dS * scale, in place
                d = delta[i0 + r]
                for c in range(nk):
                    ds[r, c] = p[r, c] * (ds[r, c] - d) * scale
            a = acc[:nq * E].reshape((nq, E))
            np.dot(ds, k[j0:j0 + nk], a)                 # dQ += dS k: (nq, nk) @ (nk, E)
            _accumulate(dqi, a)
            a = acc[:nk * E].reshape((nk, E))
            np.dot(ds.T, qi, a)                          # dK += dS^T q: (nk, nq) @ (nq, E)
            _accumulate(dk[j0:j0 + nk], a)
            off += nq * nk


@njit(cache=True, nogil=True)
def _backward_heads(q, k, v, o, do, tm, H, pt, inv, h0, h1, scale, limits, groups, bq, bk,
                    dq, dk, dv):
    """Heads h0 <= h < h1 of the C-contiguous bases, token-major where tm = (q's, k's, v's,
    o's, do's) says so; dq, dk, dv are in q's, k's and v's layouts."""
    tq, tk, tv, to, tdo = tm
    L, N = _n_rows(q, tq), _n_rows(k, tk)
    qb, kb, vb = _buffer(q, tq, L), _buffer(k, tk, N), _buffer(v, tv, N)
    ob, dob = _buffer(o, to, L), _buffer(do, tdo, L)
    dqb, dkb, dvb = _buffer(dq, tq, L), _buffer(dk, tk, N), _buffer(dv, tv, N)
    for h in range(h0, h1):
        b, j, lim = h // H, h % H, limits[groups[h]]
        dos, delta = _scaled_output_grad(_head(do, tdo, b, j, dob), _head(o, to, b, j, ob), inv[h])
        dqh, dkh, dvh = (_out_head(dq, tq, b, j, dqb), _out_head(dk, tk, b, j, dkb),
                         _out_head(dv, tv, b, j, dvb))
        _backward_head(_head(q, tq, b, j, qb), _head(k, tk, b, j, kb),
                       _transposed_tiles(_head(v, tv, b, j, vb), lim.max(), bk), pt[h], dos,
                       delta, scale, lim, bq, bk, dqh, dkh, dvh)
        _store_head(dq, tq, b, j, dqh)
        _store_head(dk, tk, b, j, dkh)
        _store_head(dv, tv, b, j, dvh)


def sdpa_backward_numba(q, k, v, o, saved, do, scale, limits, groups):
    """numba twin of :func:`sdpa_backward_reference`; ``saved`` from :func:`sdpa_forward_numba`.
    dQ, dK, dV (B, H, n, d) are in q's, k's and v's layouts (module docstring)."""
    B, H, L, E = q.shape
    N, Ev = k.shape[2], v.shape[3]
    pt, inv = saved
    bq, bk = tile_sizes(E, Ev)
    bases, tm = zip(*(_layout(x) for x in (q, k, v, o, do)))
    grads = [_empty((B, H, n, d), t) for (n, d), t in zip(((L, E), (N, E), (N, Ev)), tm)]
    run_parallel([(_backward_heads, bases + (tm, H, pt, inv, h0, h1, np.float32(scale), limits,
                                             groups, bq, bk) + tuple(g[1] for g in grads))
                  for h0, h1 in _head_ranges(B * H, L * N * (E + Ev))])
    return tuple(g[0] for g in grads)
# END KERNEL
