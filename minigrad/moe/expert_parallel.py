"""Expert parallelism on virtual GPUs: experts spread over GPUs, tokens moved by all-to-all.

GPU r holds the tokens of its own batch shard and experts
[r E/p, (r + 1) E/p) (GShard, Lepikhin et al. 2020). One MoE layer is

    1. route:    every GPU runs the (replicated) router on its own tokens;
    2. dispatch: all_to_all sends each kept (token, choice) row to the GPU
                 holding its expert, sorted by expert (a small all_to_all of
                 counts goes first, so receivers know how many rows to expect);
    3. experts:  every GPU runs its experts on the rows it received;
    4. combine:  all_to_all sends the results back the way they came, and
                 each GPU adds sum_j g_j * row_j into its tokens' outputs.

Bytes per GPU of one all-to-all when routing is balanced (T tokens per GPU,
k choices each, width C, no drops): a fraction (p - 1)/p of the T k rows
leave the GPU,

    bytes = T * k * (p - 1) / p * C * itemsize,

and the combine sends the same again. Every collective is in plain sight below.

Two tellings of the same four steps: :func:`expert_parallel_forward` drives
every GPU of a :class:`~minigrad.distributed.VirtualCluster` from one loop
(what the notebook draws), and :func:`expert_parallel_moe` is the per-rank
(SPMD) code each rank runs by itself through ``minigrad.distributed``'s
torch-shaped collectives, on the simulator (``backend="sim"``) or on real
processes (``backend="mpi"``, under ``minigrad launch``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..tensor import Tensor, no_grad
from .layer import MoE, dispatch_order

__all__ = ["ExpertParallelResult", "experts_of_rank", "dispatch_buffers",
           "expert_parallel_forward", "expert_parallel_moe", "all_to_all_bytes"]


class ExpertParallelResult(NamedTuple):
    """What :func:`expert_parallel_forward` returns."""

    outputs: list                 # per GPU: (T_r, C), that shard's MoE output
    send_counts: np.ndarray       # (p, p): rows GPU i dispatched to GPU j
    tokens_per_gpu: np.ndarray    # (p,): rows each GPU's experts processed
    dispatch_bytes: np.ndarray    # (p,): bytes each GPU sent in the token dispatch
    combine_bytes: np.ndarray     # (p,): ... and in the combine


def all_to_all_bytes(num_tokens: int, k: int, embed_dim: int, world_size: int,
                     itemsize: int = 4) -> float:
    """Bytes one GPU sends in one balanced all-to-all: T k (p - 1)/p C itemsize."""
    return num_tokens * k * (world_size - 1) / world_size * embed_dim * itemsize


def experts_of_rank(num_experts: int, world_size: int, rank: int) -> range:
    """The experts GPU ``rank`` holds: E/p consecutive ones (p must divide E)."""
    if num_experts % world_size:
        raise ValueError(f"expert parallelism: world_size {world_size} must divide num_experts "
                         f"{num_experts}")
    per = num_experts // world_size
    return range(rank * per, (rank + 1) * per)


def dispatch_buffers(x: np.ndarray, expert_index: np.ndarray, kept: np.ndarray,
                     experts_per_rank: int, world_size: int):
    """The rows this GPU sends to each GPU in the dispatch all-to-all.

    Kept assignments are sorted by expert (:func:`~minigrad.moe.layer.dispatch_order`);
    GPU j receives those whose expert e has e // experts_per_rank == j, in that order.

    Args:
        x: (T, C) this GPU's tokens. expert_index, kept: (T, k) from the router.
    Returns:
        (send, token, choice, counts): ``send`` a list of p arrays (n_j, C);
        ``token``/``choice`` (n,) say which (token, choice) each row of
        ``concatenate(send)`` is; ``counts`` (E,) rows per expert.
    """
    E = experts_per_rank * world_size
    token, choice, counts = dispatch_order(expert_index, kept, E)
    # BEGIN SOLUTION ch11.all_to_all_dispatch
    rows = x[token]                                                # (n, C), sorted by expert
    per_rank = counts.reshape(world_size, experts_per_rank).sum(axis=1)
    bounds = np.concatenate([[0], np.cumsum(per_rank)])
    send = [rows[bounds[j]:bounds[j + 1]] for j in range(world_size)]
    # END SOLUTION
    return send, token, choice, counts


def expert_parallel_forward(cluster, moe: MoE, x_shards) -> ExpertParallelResult:
    """One MoE layer over ``cluster``'s GPUs, GPU r holding tokens ``x_shards[r]``.

    Each GPU routes with its own shard's capacity (as each GPU would), so
    ``outputs[r]`` equals ``moe(x_shards[r])``; without a capacity limit the
    concatenated outputs equal ``moe`` on the whole batch. Forward only (no graph).

    Args:
        cluster: a :class:`~minigrad.distributed.VirtualCluster` whose world
            size divides ``moe.num_experts``.
        moe: the layer; its router and experts are used as the GPUs' copies.
        x_shards: p arrays (T_r, C), T_r may differ.
    """
    p = cluster.world_size
    if len(x_shards) != p:
        raise ValueError(f"expert_parallel_forward: x_shards must have one shard per GPU "
                         f"({p}), got {len(x_shards)}")
    local = [experts_of_rank(moe.num_experts, p, r) for r in range(p)]
    per = len(local[0])
    xs = [np.asarray(x.data if isinstance(x, Tensor) else x) for x in x_shards]
    for r, x in enumerate(xs):
        if x.ndim != 2 or x.shape[1] != moe.embed_dim:
            raise ValueError(f"expert_parallel_forward: x_shards[{r}] must be (T, {moe.embed_dim}), "
                             f"got {x.shape}")
    C, H = moe.embed_dim, moe.hidden_dim
    with no_grad():
        # 1. route, on every GPU
        routed = []
        for r, x in enumerate(xs):
            _, _, routing, gate = moe.route(Tensor(x))
            cluster.compute(r, 2 * x.shape[0] * C * moe.num_experts, "router")
            send, token, choice, counts = dispatch_buffers(x, routing.expert_index, routing.kept,
                                                           per, p)
            routed.append((send, token, choice, counts, gate.data))
        # 2. dispatch: the counts of each (source, expert) first, then the rows
        counts_in = cluster.all_to_all([[c[3][local[j].start:local[j].stop]
                                         for j in range(p)] for c in routed])
        before = cluster.stats.bytes_sent.copy()
        rows_in = cluster.all_to_all([send for send, *_ in routed])
        dispatch_bytes = cluster.stats.bytes_sent - before
        # 3. experts: GPU j runs each local expert on that expert's rows from every source
        results, tokens_per_gpu = [], np.zeros(p, np.int64)
        for j in range(p):
            starts = [np.concatenate([[0], np.cumsum(counts_in[j][i])]) for i in range(p)]
            back = [np.empty_like(rows_in[j][i]) for i in range(p)]
            for e_local, e in enumerate(local[j]):
                pieces = [rows_in[j][i][starts[i][e_local]:starts[i][e_local + 1]] for i in range(p)]
                n = sum(len(piece) for piece in pieces)
                if n == 0:
                    continue
                y = moe.experts[e](Tensor(np.concatenate(pieces))).data      # (n, C) -> (n, C)
                cluster.compute(j, 4 * n * C * H, "experts", f"expert {e}")
                lo = 0
                for i, piece in enumerate(pieces):
                    back[i][starts[i][e_local]:starts[i][e_local + 1]] = y[lo:lo + len(piece)]
                    lo += len(piece)
                tokens_per_gpu[j] += n
            results.append(back)
        # 4. combine: results go home; each GPU weights and adds its rows
        before = cluster.stats.bytes_sent.copy()
        rows_back = cluster.all_to_all(results)
        combine_bytes = cluster.stats.bytes_sent - before
    outputs = []
    for r, (_, token, choice, _, gate) in enumerate(routed):
        y = np.concatenate(rows_back[r]) if token.size else np.zeros((0, C), xs[r].dtype)
        out = np.zeros_like(xs[r])
        for j in range(moe.k):                          # choice by choice, as the one-device layer sums
            sel = choice == j
            out[token[sel]] += gate[token[sel], j][:, None] * y[sel]
        outputs.append(out)
    send_counts = np.array([[len(s) for s in send] for send, *_ in routed], dtype=np.int64)
    return ExpertParallelResult(outputs, send_counts, tokens_per_gpu, dispatch_bytes, combine_bytes)


@no_grad()  # grad mode is per thread, so a simulated rank's no_grad leaves the others alone
def expert_parallel_moe(moe: MoE, x, group=None) -> np.ndarray:
    """This rank's MoE output for its tokens ``x`` (T_r, C), experts spread over the ranks.

    The per-rank form of :func:`expert_parallel_forward`: every rank calls it
    with the same ``moe`` (replicated router; rank r uses only the experts
    :func:`experts_of_rank` gives it) and its own tokens, after
    ``minigrad.distributed.init_process_group``. Equals ``moe(x)`` on this
    rank's tokens. Forward only (no graph).
    """
    from .. import distributed as dist

    p, r = dist.get_world_size(group), dist.get_rank(group)
    x = np.ascontiguousarray(x.data if isinstance(x, Tensor) else x)
    if x.ndim != 2 or x.shape[1] != moe.embed_dim:
        raise ValueError(f"expert_parallel_moe: x must be (T, {moe.embed_dim}), got {x.shape}")
    local = experts_of_rank(moe.num_experts, p, r)
    per = len(local)
    # 1. route this rank's tokens
    _, _, routing, gate = moe.route(Tensor(x))
    send, token, choice, counts = dispatch_buffers(x, routing.expert_index, routing.kept,
                                                   per, p)
    # 2. dispatch: rows per (my token -> rank j's experts) first, so receivers can size
    #    their buffers, then the rows themselves
    counts_out = [np.ascontiguousarray(counts[j * per:(j + 1) * per]) for j in range(p)]
    counts_in = [np.empty(per, counts.dtype) for _ in range(p)]
    dist.all_to_all(counts_in, counts_out, group=group)                 # (per,) from each rank
    rows_in = [np.empty((int(c.sum()), moe.embed_dim), x.dtype) for c in counts_in]
    dist.all_to_all(rows_in, [np.ascontiguousarray(s_) for s_ in send], group=group)
    # 3. my experts, each on its rows from every rank
    back = [np.empty_like(rows) for rows in rows_in]
    starts = [np.concatenate([[0], np.cumsum(c)]) for c in counts_in]
    for e_local, e in enumerate(local):
        pieces = [rows_in[i][starts[i][e_local]:starts[i][e_local + 1]] for i in range(p)]
        if sum(len(piece) for piece in pieces) == 0:
            continue
        y = moe.experts[e](Tensor(np.concatenate(pieces))).data          # (n, C) -> (n, C)
        lo = 0
        for i, piece in enumerate(pieces):
            back[i][starts[i][e_local]:starts[i][e_local + 1]] = y[lo:lo + len(piece)]
            lo += len(piece)
    # 4. combine: each row goes back to the rank its token lives on
    rows_back = [np.empty_like(s_) for s_ in send]
    dist.all_to_all(rows_back, back, group=group)
    y = np.concatenate(rows_back) if token.size else np.zeros((0, moe.embed_dim), x.dtype)
    out = np.zeros_like(x)
    g = gate.data
    for j in range(moe.k):                      # choice by choice, as the one-device layer sums
        sel = choice == j
        out[token[sel]] += g[token[sel], j][:, None] * y[sel]
    return out
