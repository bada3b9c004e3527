"""FlashAttention in readable NumPy: online softmax, one tile at a time.

This is the version to read (and the one the notebook shows). The numba
kernels in ``kernels.py`` compute the same thing with the same signatures;
``tests/test_flash.py`` holds the two to each other.

Notation (Dao et al. 2022, Dao 2023): per batch*head, Q is (L, E), K is
(S, E), V is (S, Ev); S = scale * Q K^T is the (L, S) score matrix that
standard attention materializes and FlashAttention never does. Rows of Q
are cut into blocks of ``block_q``, rows of K and V into blocks of
``block_k``; a *tile* is one (Q block, K/V block) pair.

Every function here works on stacked heads: a leading batch axis (BH, ...)
is carried through every ``@`` so one Python loop over tiles serves all heads.
"""

from __future__ import annotations

import numpy as np

from ..tensor import Tensor

__all__ = [
    "online_softmax_update", "online_softmax", "safe_max", "causal_tile_mask", "causal_offset",
    "forward_tile", "finalize_rows", "backward_tile",
    "flash_forward_reference", "flash_backward_reference", "standard_attention",
]


# ----------------------------------------------------------------------------
# online softmax (Milakov & Gimelshein 2018)
# ----------------------------------------------------------------------------

def safe_max(m: np.ndarray) -> np.ndarray:
    """The max to subtract: ``m``, or 0 where a row has seen only -inf (masked) scores.

    A row whose every score so far is masked has m = -inf, and exp(-inf - -inf)
    is NaN; subtracting 0 instead gives exp(-inf) = 0, the right answer.
    """
    return np.where(np.isneginf(m), 0.0, m).astype(m.dtype, copy=False)


def online_softmax_update(m: np.ndarray, l: np.ndarray, x_blk: np.ndarray):
    """Fold one block of scores into the running max and running sum.

    Online softmax (Milakov & Gimelshein 2018):
        m_new = max(m, max_j x_blk[j])
        l_new = l * exp(m - m_new) + sum_j exp(x_blk[j] - m_new)
    so that after the last block l = sum_j exp(x_j - m) over everything seen,
    m = max_j x_j, exactly as a two-pass softmax would compute them (up to
    rounding). The factor exp(m - m_new) <= 1 re-expresses the old sum under
    the new max; subtracting the max keeps every exponent <= 0, so nothing
    overflows however large the scores are.

    Args:
        m: running max, shape (...,); -inf before the first block.
        l: running sum, shape (...,); 0 before the first block.
        x_blk: the next block of scores, shape (..., b); -inf marks a masked score.
    Returns:
        (m_new, l_new), each shape (...,).
    """
    # BEGIN SOLUTION ch4.online_softmax
    m_new = np.maximum(m, x_blk.max(axis=-1))
    shift = safe_max(m_new)
    l_new = l * np.exp(m - shift) + np.exp(x_blk - shift[..., None]).sum(axis=-1)
    return m_new, l_new
    # END SOLUTION


def online_softmax(x, block_size: int = 4, return_history: bool = False):
    """Softmax over the last axis, reading ``x`` one block of ``block_size`` at a time.

    Pass 1 streams the blocks through :func:`online_softmax_update`, keeping
    only (m, l) per row; pass 2 writes exp(x - m) / l. The result equals
    ``softmax(x)`` to rounding, but pass 1 never holds more than one block.

    Args:
        x: scores, shape (..., N): an array or a Tensor (no graph is recorded).
        block_size: how many scores arrive at a time (>= 1).
        return_history: also return the (m, l) after every block, a list of
            ``(m, l)`` pairs of shape (...,), for drawing the steps.
    Returns:
        softmax(x), shape (..., N); and the history if asked.
    """
    x = np.asarray(x.data if isinstance(x, Tensor) else x)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    if int(block_size) != block_size or block_size < 1:
        raise ValueError(f"online_softmax: block_size must be an integer >= 1, got {block_size!r}")
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"online_softmax: x needs a non-empty last axis, got shape {x.shape}")
    m = np.full(x.shape[:-1], -np.inf, dtype=x.dtype)
    l = np.zeros(x.shape[:-1], dtype=x.dtype)
    history = []
    for j0 in range(0, x.shape[-1], block_size):
        m, l = online_softmax_update(m, l, x[..., j0:j0 + block_size])
        history.append((m.copy(), l.copy()))
    y = np.exp(x - safe_max(m)[..., None]) / l[..., None]
    return (y, history) if return_history else y


# ----------------------------------------------------------------------------
# tiles
# ----------------------------------------------------------------------------

def causal_tile_mask(i0: int, i1: int, j0: int, j1: int, offset: int = 0):
    """Which scores of the tile rows [i0, i1) x columns [j0, j1) a causal mask keeps.

    Query i sees key j when j <= i + offset; ``offset = S - L`` aligns the
    mask to the bottom-right (the last query sees every key), 0 when L == S.
    Returns None when the tile lies wholly on or below that diagonal (every
    score kept: no mask needed); else a bool (i1 - i0, j1 - j0) array, True
    where kept. A tile wholly above it (j0 > i1 - 1 + offset) is never asked
    for: the loops skip it.
    """
    if j1 - 1 <= i0 + offset:
        return None
    return np.arange(j0, j1)[None, :] <= np.arange(i0, i1)[:, None] + offset


def forward_tile(q_i, k_j, v_j, m_i, l_i, acc_i, scale: float, mask=None):
    """One tile of the forward pass: fold K/V block j into Q block i's running state.

    With S_ij = scale * Q_i K_j^T (masked scores set to -inf):
        m_new = max(m_i, rowmax(S_ij))
        P     = exp(S_ij - m_new)                       (Bq, Bk), never written out
        l_new = exp(m_i - m_new) * l_i + rowsum(P)
        acc   = exp(m_i - m_new) * acc_i + P V_j        (unnormalized output)
    the online softmax of :func:`online_softmax_update` with the weighted sum
    of values carried along (Dao et al. 2022, Algorithm 1, lines 9-12).

    Args:
        q_i: (..., Bq, E); k_j: (..., Bk, E); v_j: (..., Bk, Ev)
        m_i, l_i: (..., Bq) running max and sum; acc_i: (..., Bq, Ev)
        mask: None or bool (Bq, Bk), True = keep the score.
    Returns:
        (m_new, l_new, acc_new) with the shapes of (m_i, l_i, acc_i).
    """
    s = scale * (q_i @ np.swapaxes(k_j, -1, -2))        # (..., Bq, E) @ (..., E, Bk) -> (..., Bq, Bk)
    if mask is not None:
        s = np.where(mask, s, -np.inf)
    # BEGIN SOLUTION ch4.forward_tile
    m_new = np.maximum(m_i, s.max(axis=-1))
    shift = safe_max(m_new)
    alpha = np.exp(m_i - shift)                          # (..., Bq): old sums under the new max
    p = np.exp(s - shift[..., None])                     # (..., Bq, Bk)
    l_new = alpha * l_i + p.sum(axis=-1)
    acc_new = alpha[..., None] * acc_i + p @ v_j         # (..., Bq, Bk) @ (..., Bk, Ev) -> (..., Bq, Ev)
    # END SOLUTION
    return m_new, l_new, acc_new


def finalize_rows(acc, m, l):
    """Turn the running state of a finished Q block into its output and log-sum-exp.

        O   = acc / l                    (normalize once, at the end: FlashAttention-2)
        lse = m + log(l) = log sum_j exp(S_j)

    lse is all the backward pass keeps of the softmax: P = exp(S - lse)
    recomputes every probability from a recomputed score, so one number per
    row replaces the (L, S) matrix P.

    Args:
        acc: (..., Bq, Ev); m, l: (..., Bq).
    Returns:
        (O of shape (..., Bq, Ev), lse of shape (..., Bq)).
    """
    # BEGIN SOLUTION ch4.logsumexp
    o = acc / l[..., None]
    lse = m + np.log(l)
    return o, lse
    # END SOLUTION


def backward_tile(q_i, k_j, v_j, do_i, lse_i, delta_i, scale: float, mask=None):
    """One tile of the backward pass, recomputing P from the saved log-sum-exp.

    With S = scale * Q_i K_j^T (masked -> -inf), dO_i the output gradient and
    delta_i = rowsum(dO_i * O_i) (= rowsum(P * dP) over the full row, so the
    softmax backward needs no other tile; Dao 2023, eq. in section 3.1.2):
        P   = exp(S - lse_i)
        dV_j = P^T dO_i
        dP  = dO_i V_j^T
        dS  = P * (dP - delta_i)
        dQ_i = scale * dS K_j,   dK_j = scale * dS^T Q_i
    Each is this tile's *contribution*; the caller sums them over tiles.

    Args:
        q_i, do_i: (..., Bq, E) and (..., Bq, Ev); k_j, v_j: (..., Bk, E), (..., Bk, Ev)
        lse_i, delta_i: (..., Bq); mask: None or bool (Bq, Bk).
    Returns:
        (dq_i (..., Bq, E), dk_j (..., Bk, E), dv_j (..., Bk, Ev)).
    """
    s = scale * (q_i @ np.swapaxes(k_j, -1, -2))          # (..., Bq, Bk)
    if mask is not None:
        s = np.where(mask, s, -np.inf)
    # BEGIN SOLUTION ch4.backward_tile
    p = np.exp(s - lse_i[..., None])                       # the forward's probabilities, recomputed
    dv_j = np.swapaxes(p, -1, -2) @ do_i                   # (..., Bk, Bq) @ (..., Bq, Ev) -> (..., Bk, Ev)
    dp = do_i @ np.swapaxes(v_j, -1, -2)                   # (..., Bq, Ev) @ (..., Ev, Bk) -> (..., Bq, Bk)
    ds = p * (dp - delta_i[..., None])                     # softmax backward, row by row
    dq_i = scale * (ds @ k_j)                              # (..., Bq, E)
    dk_j = scale * (np.swapaxes(ds, -1, -2) @ q_i)         # (..., Bk, E)
    return dq_i, dk_j, dv_j
    # END SOLUTION


# ----------------------------------------------------------------------------
# the tiled passes
# ----------------------------------------------------------------------------

def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _kv_end(i1: int, S: int, is_causal: bool, offset: int = 0) -> int:
    """End of the K/V loop for Q rows < i1: causal tiles starting at column >= i1 + offset
    are all masked."""
    return min(S, max(i1 + offset, 0)) if is_causal else S


def causal_offset(L: int, S: int, is_causal: bool) -> int:
    """S - L when causal (bottom-right alignment, as flash-attention), else 0."""
    return S - L if is_causal else 0


def _empty_rows(o, lse, l):
    """Rows that saw no key (causal with L > S: the first L - S queries) output 0, and
    lse = +inf so the backward's P = exp(S - lse) is 0 there (flash-attention's convention)."""
    empty = l == 0
    o[empty] = 0
    lse[empty] = np.inf


def flash_forward_reference(q, k, v, scale, is_causal, block_q, block_k, q_outer):
    """Tiled attention forward; never forms the (L, S) score matrix.

    ``q_outer=True`` is FlashAttention-2's order (Dao 2023, Algorithm 1):
    each Q block stays put while K/V blocks stream past, and its output is
    normalized and written once. ``q_outer=False`` is FlashAttention's first
    order (Dao et al. 2022, Algorithm 1): each K/V block stays put while every
    Q block's O, m and l are read, updated and written back. Both give the
    same O and lse. When causal, tiles wholly above the diagonal are skipped.

    Args:
        q: (BH, L, E); k: (BH, S, E); v: (BH, S, Ev); one dtype (float32/64).
        scale: multiplies Q K^T (1/sqrt(E) by convention).
        is_causal: mask key j > query i + (S - L): aligned to the bottom-right.
        block_q, block_k: rows per Q block and per K/V block.
        q_outer: loop order, see above.
    Returns:
        (o (BH, L, Ev), lse (BH, L), tiles_skipped: tiles per head never computed).
    """
    BH, L, _ = q.shape
    S, Ev = v.shape[1], v.shape[2]
    dt = q.dtype
    o = np.zeros((BH, L, Ev), dt)
    lse = np.zeros((BH, L), dt)
    n_kv = _ceil_div(S, block_k)                        # K/V blocks per row of tiles
    off = causal_offset(L, S, is_causal)
    skipped = 0
    if q_outer:
        for i0 in range(0, L, block_q):                  # FlashAttention-2: Q block outer
            i1 = min(i0 + block_q, L)
            m = np.full((BH, i1 - i0), -np.inf, dt)      # lives in "SRAM" for the whole inner loop
            l = np.zeros((BH, i1 - i0), dt)
            acc = np.zeros((BH, i1 - i0, Ev), dt)
            j_end = _kv_end(i1, S, is_causal, off)
            for j0 in range(0, j_end, block_k):
                j1 = min(j0 + block_k, S)
                mask = causal_tile_mask(i0, i1, j0, j1, off) if is_causal else None
                m, l, acc = forward_tile(q[:, i0:i1], k[:, j0:j1], v[:, j0:j1], m, l, acc,
                                         scale, mask)
            skipped += n_kv - _ceil_div(j_end, block_k)  # K/V blocks this Q block never met
            with np.errstate(invalid="ignore", divide="ignore"):   # rows that saw no key
                o[:, i0:i1], lse[:, i0:i1] = finalize_rows(acc, m, l)
            _empty_rows(o[:, i0:i1], lse[:, i0:i1], l)
        return o, lse, skipped

    m = np.full((BH, L), -np.inf, dt)                   # FlashAttention-1: m, l, O live in "HBM"
    l = np.zeros((BH, L), dt)
    for j0 in range(0, S, block_k):                      # K/V block outer
        j1 = min(j0 + block_k, S)
        for i0 in range(0, L, block_q):
            i1 = min(i0 + block_q, L)
            if is_causal and j0 > i1 - 1 + off:          # wholly above the diagonal
                skipped += 1
                continue
            mask = causal_tile_mask(i0, i1, j0, j1, off) if is_causal else None
            # O is kept normalized in HBM, so un-normalize (O * l), update, re-normalize
            acc = o[:, i0:i1] * l[:, i0:i1, None]
            m_new, l_new, acc = forward_tile(q[:, i0:i1], k[:, j0:j1], v[:, j0:j1],
                                             m[:, i0:i1], l[:, i0:i1], acc, scale, mask)
            o[:, i0:i1] = acc / np.where(l_new > 0, l_new, 1)[..., None]   # no key yet: O = 0
            m[:, i0:i1], l[:, i0:i1] = m_new, l_new
    with np.errstate(divide="ignore"):
        lse[:] = m + np.log(l)
    _empty_rows(o, lse, l)
    return o, lse, skipped


def flash_backward_reference(q, k, v, o, lse, do, scale, is_causal, block_q, block_k):
    """Tiled attention backward (Dao 2023, Algorithm 2): K/V block outer, Q block inner.

    Nothing of size (L, S) was saved: each score tile is recomputed from Q
    and K, and its probabilities from the saved lse. delta = rowsum(dO * O) is
    computed once up front. dK_j and dV_j accumulate in "SRAM" across the
    inner loop; dQ_i is accumulated in "HBM" (on a GPU, with atomic adds).

    Args:
        q, k, v, o, lse: as in and out of :func:`flash_forward_reference`.
        do: d(loss)/d(o), (BH, L, Ev).
    Returns:
        (dq (BH, L, E), dk (BH, S, E), dv (BH, S, Ev)).
    """
    L, S = q.shape[1], k.shape[1]
    off = causal_offset(L, S, is_causal)
    delta = np.sum(do * o, axis=-1)                      # (BH, L)
    dq = np.zeros_like(q)
    dk = np.zeros_like(k)
    dv = np.zeros_like(v)
    for j0 in range(0, S, block_k):
        j1 = min(j0 + block_k, S)
        # Q blocks above the diagonal see none of these keys: start at the block of query j0 - off
        i_start = (max(j0 - off, 0) // block_q) * block_q if is_causal else 0
        for i0 in range(i_start, L, block_q):
            i1 = min(i0 + block_q, L)
            mask = causal_tile_mask(i0, i1, j0, j1, off) if is_causal else None
            dq_i, dk_j, dv_j = backward_tile(q[:, i0:i1], k[:, j0:j1], v[:, j0:j1], do[:, i0:i1],
                                             lse[:, i0:i1], delta[:, i0:i1], scale, mask)
            dq[:, i0:i1] += dq_i
            dk[:, j0:j1] += dk_j
            dv[:, j0:j1] += dv_j
    return dq, dk, dv


def standard_attention(q, k, v, *, scale=None, is_causal=False):
    """Standard attention (Dao et al. 2022, Algorithm 0): forms the whole (L, S) matrix.

    S = scale Q K^T, P = softmax(S), O = P V, each written out in full. The
    baseline whose memory grows as L * S; used as the quadratic reference in
    the notebook's memory measurement and in the benchmark. The causal mask is
    aligned to the bottom-right as in :func:`flash_forward_reference` (needs L <= S:
    with L > S the first queries see no key).

    Args:
        q: (..., L, E); k: (..., S, E); v: (..., S, Ev).
    Returns:
        (o (..., L, Ev), lse (..., L)).
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    s = q @ np.swapaxes(k, -1, -2)                       # (..., L, S): the quadratic buffer
    s *= scale
    if is_causal:
        L, S = s.shape[-2:]
        s[..., np.triu(np.ones((L, S), dtype=bool), k=1 + S - L)] = -np.inf
    m = s.max(axis=-1, keepdims=True)                    # (..., L, 1)
    s -= m
    np.exp(s, out=s)                                     # P, unnormalized, in place
    l = s.sum(axis=-1, keepdims=True)
    s /= l
    o = s @ v                                            # (..., L, Ev)
    return o, (m + np.log(l))[..., 0]
