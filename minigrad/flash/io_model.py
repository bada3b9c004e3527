"""How many bytes attention moves between slow memory (HBM) and fast memory (SRAM).

A GPU has a large, slow memory (HBM: tens of GB at ~2-3 TB/s) and a small,
fast one per compute unit (SRAM: ~100-200 KB at ~20 TB/s). Attention's
arithmetic is cheap next to its traffic, so the time it takes follows the
bytes it moves. This module counts them, per head, for one forward pass, the
way the FlashAttention paper does (Dao et al. 2022, section 3.2, Theorem 2):

- standard attention writes S and P (L x S each) to HBM and reads them
  back: Theta(N d + N^2) accesses;
- the tiled algorithm with an SRAM of M elements reads K and V once per Q
  block (or Q, O once per K/V block): Theta(N^2 d^2 / M) accesses.

Counts are in bytes (elements x ``itemsize``); M is in elements, as in the
paper. :func:`measure_peak_bytes` measures, rather than counts, what a call
allocates on this computer.
"""

from __future__ import annotations

import math
import tracemalloc
from typing import NamedTuple

import numpy as np

__all__ = ["IOCount", "score_matrix_bytes", "standard_attention_io", "paper_block_sizes",
           "flash_attention_io", "tile_counts", "paper_flash_bound", "measure_peak_bytes",
           "io_curves", "peak_memory_vs_n", "causal_tiles"]


class IOCount(NamedTuple):
    """HBM traffic of one forward pass of one head, in bytes."""

    reads: float
    writes: float

    @property
    def total(self) -> float:
        return self.reads + self.writes


def score_matrix_bytes(L, S=None, itemsize: int = 4):
    """Bytes of one head's L x S score matrix: L * S * itemsize (S defaults to L)."""
    S = L if S is None else S
    return L * S * itemsize


def standard_attention_io(N, d, itemsize: int = 4) -> IOCount:
    """HBM bytes of standard attention (Dao et al. 2022, Algorithm 0) for one head.

    1. read Q, K (2 N d); write S = Q K^T (N^2)
    2. read S (N^2); write P = softmax(S) (N^2)
    3. read P, V (N^2 + N d); write O = P V (N d)
    reads 3 N d + 2 N^2, writes N d + 2 N^2: Theta(N d + N^2). Works for
    symbolic-looking floats too (no rounding), so a formula can be checked.
    """
    reads = 3 * N * d + 2 * N * N
    writes = N * d + 2 * N * N
    return IOCount(reads * itemsize, writes * itemsize)


def paper_block_sizes(d: int, M: int, loop_order: str = "kv_outer") -> tuple:
    """Block sizes for an SRAM of M elements: B_c = ceil(M / 4d), B_r = min(B_c, d).

    Q_i, K_j, V_j and O_i (each B x d) then fit in M together (Dao et al.
    2022, Algorithm 1, line 1). The block held in SRAM through the inner loop
    gets the larger size B_c: K/V for ``"kv_outer"``, Q for ``"q_outer"``.
    Returns (block_q, block_k).
    """
    if d < 1 or M < 4 * d:
        raise ValueError(f"paper_block_sizes: need d >= 1 and M >= 4 d elements "
                         f"(room for one row of Q, K, V, O), got d={d}, M={M}")
    bc = math.ceil(M / (4 * d))
    br = min(bc, d)
    return (br, bc) if loop_order == "kv_outer" else (bc, br)


def tile_counts(L: int, S: int, block_q: int, block_k: int, is_causal: bool = False) -> tuple:
    """(tiles computed, tiles skipped) of one head's grid of ceil(L/Bq) x ceil(S/Bk) tiles.

    A causal tile is skipped when its first column comes after its last row
    (j * Bk > (i + 1) * Bq - 1): every score in it is masked.
    """
    n_q, n_k = -(-L // block_q), -(-S // block_k)
    if not is_causal:
        return n_q * n_k, 0
    # Q block i computes K/V blocks j with j * Bk <= min(S, (i+1) Bq) - 1
    computed = sum(-(-min(S, (i + 1) * block_q) // block_k) for i in range(n_q))
    return computed, n_q * n_k - computed


def flash_attention_io(N, d, M=None, block_q=None, block_k=None, loop_order: str = "kv_outer",
                       itemsize: int = 4, is_causal: bool = False) -> IOCount:
    """HBM bytes of the tiled forward for one head (L = S = N).

    Give either the SRAM size ``M`` (elements; blocks then follow
    :func:`paper_block_sizes`) or both block sizes.

    ``"kv_outer"`` (FlashAttention-1, Dao et al. 2022, Algorithm 1): each K_j,
    V_j is read once; for every computed tile, Q_i, O_i, l_i, m_i are read and
    O_i, l_i, m_i written back:
        reads  = 2 N d + sum over tiles (2 Bq d + 2 Bq)
        writes = sum over tiles (Bq d + 2 Bq)
    ``"q_outer"`` (FlashAttention-2, Dao 2023): each Q_i is read once, K_j and
    V_j once per computed tile, O_i and lse_i written once:
        reads  = N d + sum over tiles 2 Bk d
        writes = N d + N
    Both are Theta(N^2 d^2 / M) with the paper's block sizes (tiles ~
    N^2 / (Bq Bk), Bq, Bk ~ M / d), against standard attention's Theta(N^2).
    """
    if loop_order not in ("kv_outer", "q_outer"):
        raise ValueError(f"flash_attention_io: loop_order must be 'kv_outer' or 'q_outer', "
                         f"got {loop_order!r}")
    if M is not None:
        if block_q is not None or block_k is not None:
            raise ValueError("flash_attention_io: give M or the block sizes, not both")
        block_q, block_k = paper_block_sizes(d, M, loop_order)
    elif block_q is None or block_k is None:
        raise ValueError("flash_attention_io: give M, or both block_q and block_k")
    if block_q < 1 or block_k < 1:
        raise ValueError(f"flash_attention_io: block sizes must be >= 1, got "
                         f"block_q={block_q}, block_k={block_k}")
    N, d = int(N), int(d)
    q_rows = kv_rows = 0                     # Q rows and K/V rows, summed over computed tiles
    for i0 in range(0, N, block_q):
        i1 = min(i0 + block_q, N)
        j_end = min(N, i1) if is_causal else N
        n_j = -(-j_end // block_k)           # K/V blocks this Q block meets
        q_rows += (i1 - i0) * n_j
        kv_rows += min(n_j * block_k, N)     # their rows (the last block may be ragged)
    if loop_order == "kv_outer":
        reads = 2 * N * d + q_rows * (2 * d + 2)
        writes = q_rows * (d + 2)
    else:
        reads = N * d + kv_rows * 2 * d
        writes = N * d + N
    return IOCount(reads * itemsize, writes * itemsize)


def paper_flash_bound(N, d, M):
    """The paper's asymptotic count, N^2 d^2 / M elements (Theorem 2), without its constant."""
    return N * N * d * d / M


def measure_peak_bytes(fn, *args, **kwargs) -> tuple:
    """(fn's result, peak bytes allocated during the call above what was live before it).

    Measured with ``tracemalloc``, which sees NumPy's buffers and numba's
    (numba's allocations are traced too; ``tests/test_flash.py`` checks it),
    so the inputs, allocated earlier, do not count and every temporary the
    call makes does.
    """
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        out = fn(*args, **kwargs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return out, peak - base


# ----------------------------------------------------------------------------
# chapter 4's experiments, as data (the tour and notebook 04 draw the same numbers)
# ----------------------------------------------------------------------------

def io_curves(ns, d: int = 64, ms=None, N: int = 8192, Ms=(16 * 1024, 64 * 1024),
              itemsize: int = 2) -> dict:
    """HBM bytes of standard and tiled attention as N grows (for each SRAM size in ``Ms``)
    and, at sequence length ``N``, as the SRAM size M grows beside the paper's
    Theta(N^2 d^2 / M) bound (scaled to meet the count at the smallest M).

    Returns dict(ns, standard, tiled={M: [...]}, ms, vs_m, bound), the arguments of
    ``minigrad.viz.flash.io_vs_n_and_m`` in order.
    """
    ms = [4096 * 2 ** i for i in range(6)] if ms is None else list(ms)
    vs_m = [flash_attention_io(N, d, M=m, itemsize=itemsize).total for m in ms]
    bound = [paper_flash_bound(N, d, m) for m in ms]
    return dict(ns=list(ns), standard=[standard_attention_io(n, d, itemsize).total for n in ns],
                tiled={M: [flash_attention_io(n, d, M=M, itemsize=itemsize).total for n in ns]
                       for M in Ms},
                ms=ms, vs_m=vs_m, bound=[b * vs_m[0] / bound[0] for b in bound])


def peak_memory_vs_n(ns, batch_heads: int = 8, d: int = 64, rng=None) -> dict:
    """Measured peak bytes (``measure_peak_bytes``) of standard attention and of the tiled
    forward, float32, ``batch_heads`` heads of N x d, for each N in ``ns``.

    Returns dict(ns, standard, flash, score_bytes): score_bytes is what the
    (B*H, N, N) float32 score matrix alone takes, the quadratic term.
    """
    from ..tensor import get_rng
    from .attention import flash_attention_forward
    from .reference import standard_attention

    rng = get_rng() if rng is None else rng
    scale = d ** -0.5
    standard, flash = [], []
    warm = rng.standard_normal((1, 8, d)).astype(np.float32)
    flash_attention_forward(warm, warm, warm, scale=scale)    # compile (or load) before measuring
    for n in ns:
        q, k, v = (rng.standard_normal((batch_heads, n, d)).astype(np.float32) for _ in range(3))
        standard.append(measure_peak_bytes(standard_attention, q, k, v, scale=scale)[1])
        flash.append(measure_peak_bytes(flash_attention_forward, q, k, v, scale=scale)[1])
    return dict(ns=list(ns), standard=standard, flash=flash,
                score_bytes=[batch_heads * score_matrix_bytes(n) for n in ns])


def causal_tiles(n: int = 100, block_q: int = 32, block_k: int = 16, d: int = 16,
                 rng=None) -> dict:
    """Which tiles of a causal n x n score matrix the tiled kernel computes, with the
    causal attention weights of random queries and keys to colour them.

    Returns dict(n, block_q, block_k, computed, skipped, weights (n, n)).
    """
    from ..tensor import get_rng

    rng = get_rng() if rng is None else rng
    q, k = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    s = q @ k.T / math.sqrt(d)                                    # (n, d) @ (d, n) -> (n, n)
    s[np.triu(np.ones((n, n), bool), 1)] = -np.inf                # key j > query i
    w = np.exp(s - s.max(axis=1, keepdims=True))
    computed, skipped = tile_counts(n, n, block_q, block_k, is_causal=True)
    return dict(n=n, block_q=block_q, block_k=block_k, computed=computed, skipped=skipped,
                weights=w / w.sum(axis=1, keepdims=True))
