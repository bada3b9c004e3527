"""Ring attention (context parallelism): the sequence split over GPUs, K/V passed around a ring.

A sequence too long for one GPU is cut into p shards of positions; GPU r
keeps its queries Q_r and starts with its own keys and values K_r, V_r
(Liu et al. 2023, "Ring Attention with Blockwise Transformers"). In step
s = 0 .. p-1, GPU r holds the K/V block that started on GPU r - s, computes
the attention of Q_r against it (a FlashAttention call: output O_rs and
log-sum-exp lse_rs), folds it into its running result, and passes the block
on to GPU r + 1. The fold is chapter 4's online softmax one level up: two
attentions of the same queries over disjoint keys merge exactly as

    lse = log(exp(lse_a) + exp(lse_b))
    O   = exp(lse_a - lse) O_a + exp(lse_b - lse) O_b

While GPU r computes step s, the block for step s + 1 is already on the wire
(the communication stream of the virtual GPU), so a step costs
max(compute, transfer) instead of their sum when the two overlap.

Causal attention and load balance: with contiguous shards GPU 0's queries see
only its own block while GPU p-1's see all p, so the last GPU does ~2p-1 times
the work of the first and everyone waits for it. The zig-zag layout cuts the
sequence into 2p chunks and gives GPU r chunks r and 2p-1-r (one early, one
late), so every GPU computes the same number of unmasked scores (the order of
Megatron-LM's context parallelism; Striped Attention, Brandon et al. 2023,
balances the same way with a round-robin layout).

The backward runs the same ring: each GPU keeps Q_r, O_r, dO_r and lse_r;
the K/V block travels with its gradient accumulators dK, dV, which every GPU
adds its contribution to (chapter 4's tile backward, recomputing P from the
final lse); after p steps one last hop brings dK, dV home.

Bytes each GPU sends (BH heads, n = N/p positions, head dim d):
forward (p - 1) * 2 n d * BH * itemsize; backward (p - 1) * 2 n d + p * 2 n d,
times BH * itemsize. Memory per GPU is linear in N/p: Q, O, own K, V, lse and
two K/V buffers (the one computed on, the one arriving), no N x N anything.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..autograd import Function
from ..tensor import Tensor
from .attention import IMPLS, _kernels, resolve_impl
from .reference import safe_max

__all__ = ["merge_attention", "ring_layout", "ring_attention", "ring_attention_forward",
           "RingForward", "ring_bytes", "ring_memory_bytes", "scores_per_gpu", "measure_ring_memory", "LAYOUTS"]

LAYOUTS = ("contiguous", "zigzag")


class RingForward(NamedTuple):
    """What :func:`ring_attention_forward` returns (global order, like one-GPU attention)."""

    o: np.ndarray               # (..., N, Ev)
    lse: np.ndarray             # (..., N)
    flops: np.ndarray           # (p,): attention FLOPs each GPU computed
    simulated_time: float       # seconds on the cluster's timeline for this call


# ----------------------------------------------------------------------------
# the merge
# ----------------------------------------------------------------------------

def merge_attention(o_a, lse_a, o_b, lse_b):
    """Attention over keys A and over keys B (same queries) -> attention over A u B.

        lse = log(exp(lse_a) + exp(lse_b))
        O   = exp(lse_a - lse) O_a + exp(lse_b - lse) O_b

    The weights exp(lse_x - lse) are the shares of the softmax mass each part
    holds; they sum to 1. A part that has seen no key (lse = -inf, O = 0)
    contributes nothing, and two such parts give lse = -inf, O = 0, never NaN.

    Args:
        o_a, o_b: (..., L, Ev); lse_a, lse_b: (..., L).
    Returns:
        (o (..., L, Ev), lse (..., L)).
    """
    # BEGIN SOLUTION ch11.lse_merge
    lse = np.logaddexp(lse_a, lse_b)
    shift = safe_max(lse)                      # rows with no key yet: subtract 0, not -inf
    o = np.exp(lse_a - shift)[..., None] * o_a + np.exp(lse_b - shift)[..., None] * o_b
    return o, lse
    # END SOLUTION


# ----------------------------------------------------------------------------
# which positions each GPU holds
# ----------------------------------------------------------------------------

def ring_layout(seq_len: int, world_size: int, layout: str = "zigzag") -> list:
    """The chunks of positions each GPU holds: ``out[r]`` is a list of (chunk id, lo, hi).

    "contiguous": p chunks, GPU r holds chunk r. "zigzag": 2p chunks, GPU r
    holds chunks r and 2p-1-r. Chunks follow ``np.array_split`` (sizes differ
    by at most one when p does not divide N); a chunk may be empty when N < 2p.
    A chunk's id is its order in the sequence, so for causal attention query
    chunk a sees key chunk b fully when b < a, causally when b == a, not at all when b > a.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"ring_layout: layout must be one of {LAYOUTS}, got {layout!r}")
    if not isinstance(world_size, (int, np.integer)) or world_size < 1:
        raise ValueError(f"ring_layout: world_size must be an integer >= 1, got {world_size!r}")
    if seq_len < world_size:
        raise ValueError(f"ring_attention: the sequence length N={seq_len} must be >= "
                         f"world_size={world_size} (every GPU holds at least one position)")
    n_chunks = world_size if layout == "contiguous" else 2 * world_size
    b = np.cumsum([0] + [len(c) for c in np.array_split(np.arange(seq_len), n_chunks)])
    ids = [[r] if layout == "contiguous" else [r, 2 * world_size - 1 - r] for r in range(world_size)]
    return [[(c, int(b[c]), int(b[c + 1])) for c in ids[r]] for r in range(world_size)]


def _offsets(chunks) -> list:
    """(chunk id, local lo, local hi) of each chunk inside the GPU's concatenated shard."""
    out, lo = [], 0
    for c, a, b in chunks:
        out.append((c, lo, lo + b - a))
        lo += b - a
    return out


def _pairs(q_chunks, kv_chunks, is_causal):
    """(q local slice, kv local slice, causal?) for every (query chunk, key chunk) pair with work."""
    for cq, q0, q1 in _offsets(q_chunks):
        for ck, k0, k1 in _offsets(kv_chunks):
            if q1 == q0 or k1 == k0 or (is_causal and ck > cq):
                continue
            yield (q0, q1), (k0, k1), is_causal and ck == cq


def _pair_flops(lq, lk, diagonal, d, dv, bh):
    """FLOPs of one pair's forward: 2 d + 2 dv per unmasked score (Q K^T and P V)."""
    scores = lq * (lq + 1) // 2 if diagonal else lq * lk
    return 2 * (d + dv) * scores * bh


# ----------------------------------------------------------------------------
# the closed forms
# ----------------------------------------------------------------------------

def ring_bytes(seq_len: int, world_size: int, head_dim: int, batch_heads: int = 1,
               itemsize: int = 4, backward: bool = False) -> float:
    """Bytes each GPU sends when p divides N: forward (p-1) 2 n d, backward (2p - 1) 2 n d,
    times BH * itemsize, n = N / p (K and V out; in backward also dK and dV home)."""
    n = seq_len / world_size
    hops = (2 * world_size - 1) if backward else (world_size - 1)
    return hops * 2 * n * head_dim * batch_heads * itemsize


def scores_per_gpu(seq_len: int, world_size: int, layout: str = "zigzag",
                   is_causal: bool = True) -> np.ndarray:
    """(p,) unmasked scores each GPU computes over the whole ring (its share of the work).

    Contiguous and causal: GPU r meets r full blocks and one triangle, so the
    last GPU does about 2p - 1 times the first's work; zig-zag: equal shares.
    """
    layouts = ring_layout(seq_len, world_size, layout)
    out = np.zeros(world_size, np.int64)
    for r in range(world_size):
        for j in range(world_size):
            for (q0, q1), (k0, k1), diag in _pairs(layouts[r], layouts[j], is_causal):
                out[r] += (q1 - q0) * (q1 - q0 + 1) // 2 if diag else (q1 - q0) * (k1 - k0)
    return out


def ring_memory_bytes(seq_len: int, world_size: int, head_dim: int, batch_heads: int = 1,
                      itemsize: int = 4) -> float:
    """Peak bytes per GPU of the ring forward when p divides N (p > 1), n = N / p:
    Q, O (n d each), lse (n), own K, V (2 n d), and two K/V buffers (4 n d):
    n (8 d + 1) BH itemsize. On one GPU (p = 1) there are no buffers: n (4 d + 1)."""
    n = seq_len / world_size
    buffers = 4 * head_dim if world_size > 1 else 0
    return n * (4 * head_dim + 1 + buffers) * batch_heads * itemsize


def measure_ring_memory(seq_lens, world_size: int, head_dim: int = 64, batch_heads: int = 1,
                        dtype=np.float32, impl: str = "numpy") -> list:
    """Peak bytes a GPU booked during the ring forward, for each N in ``seq_lens`` (measured
    on the virtual GPUs' ledgers, to hold against :func:`ring_memory_bytes`)."""
    from ..distributed import VirtualCluster
    from ..tensor import get_rng
    out = []
    for n in seq_lens:
        x = get_rng().standard_normal((batch_heads, n, head_dim)).astype(dtype)
        cluster = VirtualCluster(world_size)
        ring_attention_forward(x, x, x, cluster, is_causal=True, impl=impl)
        out.append(max(g.peak for g in cluster.gpus))
    return out


# ----------------------------------------------------------------------------
# the ring
# ----------------------------------------------------------------------------

def _check(q, k, v, cluster, is_causal, scale, layout, impl):
    fn = "ring_attention"
    if impl not in IMPLS or impl == "numba_scalar":
        raise ValueError(f"{fn}: impl must be 'numba' or 'numpy', got {impl!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"{fn}: layout must be one of {LAYOUTS}, got {layout!r}")
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.ndim < 2 or x.dtype not in (np.float32, np.float64):
            raise ValueError(f"{fn}: {name} must be a float32/float64 array (..., N, dim), "
                             f"got {x.dtype} {x.shape}")
    if not (q.shape[:-1] == k.shape[:-1] == v.shape[:-1]) or q.shape[-1] != k.shape[-1] \
            or not q.dtype == k.dtype == v.dtype:
        raise ValueError(f"{fn}: q, k, v must be (..., N, E), (..., N, E), (..., N, Ev) of one "
                         f"dtype (self-attention over one sequence), got {q.shape}, {k.shape}, "
                         f"{v.shape}")
    N, E = q.shape[-2:]
    ring_layout(N, cluster.world_size, layout)      # raises when N < world_size
    return 1.0 / math.sqrt(E) if scale is None else float(scale)


def _shards(x, layout_r):
    """GPU r's positions of x (BH, N, D): its chunks concatenated, (BH, n_r, D)."""
    return np.ascontiguousarray(np.concatenate([x[:, a:b] for _, a, b in layout_r], axis=1))


def _unshard(pieces, layouts, shape):
    out = np.empty(shape, pieces[0].dtype)
    for piece, chunks in zip(pieces, layouts):
        for (_, a, b), (_, lo, hi) in zip(chunks, _offsets(chunks)):
            out[:, a:b] = piece[:, lo:hi]
    return out


def _pass_on(cluster, blocks, overlap, kind):
    """Send every GPU's block to the next GPU on the ring; returns (received blocks, Work).

    One message per GPU (its arrays packed into one buffer), all at once. With
    ``overlap`` the send is issued on the comm stream and not waited for.
    """
    p = cluster.world_size
    ranks = list(range(p))
    send = [np.concatenate([a.reshape(-1) for a in blk]) for blk in blocks]
    recv = [np.empty_like(send[(r - 1) % p]) for r in ranks]
    cluster.begin(ranks)
    cluster.communicate([(r, (r + 1) % p, send[r], recv[(r + 1) % p]) for r in ranks],
                        kind=kind, label="K/V ->")
    work = cluster.end(ranks, async_op=True)
    if not overlap:
        work.wait()
    out = []
    for r in ranks:
        shapes = [a.shape for a in blocks[(r - 1) % p]]
        parts = np.split(recv[r], np.cumsum([math.prod(s) for s in shapes])[:-1])
        out.append([part.reshape(s) for part, s in zip(parts, shapes)])
    return out, work


def _forward(q3, k3, v3, cluster, is_causal, scale, layout, overlap, impl, block_size):
    """The ring forward on (BH, N, D) arrays; per-GPU O, lse and the bookkeeping."""
    p = cluster.world_size
    BH, N, E = q3.shape
    Ev = v3.shape[-1]
    fwd, _ = _kernels(impl)
    layouts = ring_layout(N, p, layout)
    qs = [_shards(q3, lay) for lay in layouts]
    block = [[_shards(k3, lay), _shards(v3, lay)] for lay in layouts]     # what GPU r holds now
    owner = list(range(p))                                                # whose block that is
    o = [np.zeros((BH, x.shape[1], Ev), q3.dtype) for x in qs]
    lse = [np.full((BH, x.shape[1]), -np.inf, q3.dtype) for x in qs]
    for r in range(p):
        g = cluster.gpus[r]
        for name, a in (("q", qs[r]), ("o", o[r]), ("lse", lse[r]), ("k", block[r][0]),
                        ("v", block[r][1])):
            g.alloc(f"ring {name}", a, "activations")
    flops = np.zeros(p)
    t0 = cluster.time
    work = None
    for s in range(p):
        incoming = None
        if s < p - 1 and overlap:                     # next block on the wire while we compute
            incoming, work = _pass_on(cluster, block, True, "ring_attention")
            for r in range(p):
                cluster.gpus[r].alloc("ring kv incoming", incoming[r][0].nbytes
                                      + incoming[r][1].nbytes, "buffers")
        for r in range(p):
            kb, vb = block[r]
            for (q0, q1), (k0, k1), diag in _pairs(layouts[r], layouts[owner[r]], is_causal):
                ob, lb, _ = fwd(np.ascontiguousarray(qs[r][:, q0:q1]), np.ascontiguousarray(kb[:, k0:k1]),
                                np.ascontiguousarray(vb[:, k0:k1]), scale, diag, block_size,
                                block_size, True)
                o[r][:, q0:q1], lse[r][:, q0:q1] = merge_attention(o[r][:, q0:q1], lse[r][:, q0:q1],
                                                                   ob, lb)
                f = _pair_flops(q1 - q0, k1 - k0, diag, E, Ev, BH)
                flops[r] += f
                cluster.compute(r, f, "attention", f"block of GPU {owner[r]}")
        if s < p - 1 and not overlap:                 # compute first, then wait for the transfer
            incoming, work = _pass_on(cluster, block, False, "ring_attention")
            for r in range(p):
                cluster.gpus[r].alloc("ring kv incoming", incoming[r][0].nbytes
                                      + incoming[r][1].nbytes, "buffers")
        if incoming is not None:
            work.wait()
            for r in range(p):
                g = cluster.gpus[r]
                if g.holds("ring kv current"):
                    g.free("ring kv current")
                g.free("ring kv incoming")
                g.alloc("ring kv current", incoming[r][0].nbytes + incoming[r][1].nbytes, "buffers")
            block = incoming
            owner = [(r - s - 1) % p for r in range(p)]
    for r in range(p):
        g = cluster.gpus[r]
        for name in ("q", "o", "lse", "k", "v", "kv current"):
            if g.holds(f"ring {name}"):
                g.free(f"ring {name}")
    return layouts, qs, o, lse, flops, cluster.time - t0


def _backward(q3, k3, v3, o3, lse3, do3, cluster, is_causal, scale, layout, overlap, impl,
              block_size):
    """The ring backward: K, V travel with their dK, dV; one last hop brings dK, dV home."""
    p = cluster.world_size
    BH, N, E = q3.shape
    _, bwd = _kernels(impl)
    layouts = ring_layout(N, p, layout)
    qs, os_, dos = ([_shards(x, lay) for lay in layouts] for x in (q3, o3, do3))
    lses = [_shards(lse3[..., None], lay)[..., 0] for lay in layouts]
    dq = [np.zeros_like(x) for x in qs]
    block = [[_shards(k3, lay), _shards(v3, lay)] for lay in layouts]
    block = [[kb, vb, np.zeros_like(kb), np.zeros_like(vb)] for kb, vb in block]
    for s in range(p):
        owner = [(r - s) % p for r in range(p)]
        for r in range(p):
            kb, vb, dkb, dvb = block[r]
            for (q0, q1), (k0, k1), diag in _pairs(layouts[r], layouts[owner[r]], is_causal):
                a = [np.ascontiguousarray(x[:, q0:q1]) for x in (qs[r], os_[r], dos[r])]
                dq_p, dk_p, dv_p = bwd(a[0], np.ascontiguousarray(kb[:, k0:k1]),
                                       np.ascontiguousarray(vb[:, k0:k1]), a[1],
                                       np.ascontiguousarray(lses[r][:, q0:q1]), a[2], scale,
                                       diag, block_size, block_size)
                dq[r][:, q0:q1] += dq_p
                dkb[:, k0:k1] += dk_p
                dvb[:, k0:k1] += dv_p
                # backward: 5 matmuls per tile against the forward's 2
                cluster.compute(r, 2.5 * _pair_flops(q1 - q0, k1 - k0, diag, E, v3.shape[-1], BH),
                                "attention backward", f"block of GPU {owner[r]}")
        # pass K, V and their gradients on; the last hop carries only dK, dV (home)
        last = s == p - 1
        send = [blk[2:] if last else blk for blk in block]
        if p > 1:
            block, work = _pass_on(cluster, send, overlap, "ring_attention backward")
            work.wait()
    # after the last hop, GPU r holds its own block's dK, dV
    grads = block if p > 1 else [blk[2:] for blk in block]
    dk = _unshard([g[0] for g in grads], layouts, k3.shape)
    dv = _unshard([g[1] for g in grads], layouts, v3.shape)
    return _unshard(dq, layouts, q3.shape), dk, dv


def _flat3(x):
    return np.ascontiguousarray(x.reshape((-1,) + x.shape[-2:]))


def ring_attention_forward(q, k, v, cluster, is_causal: bool = False, scale=None,
                           layout: str = "zigzag", overlap: bool = True, impl: str | None = None,
                           block_size: int = 64) -> RingForward:
    """The ring forward on arrays, no graph: O, lse, FLOPs per GPU, simulated seconds.

    Same arguments as :func:`ring_attention`.
    """
    q, k, v = (np.asarray(x.data if isinstance(x, Tensor) else x) for x in (q, k, v))
    impl = resolve_impl(impl)
    scale = _check(q, k, v, cluster, is_causal, scale, layout, impl)
    layouts, _, o, lse, flops, t = _forward(_flat3(q), _flat3(k), _flat3(v), cluster,
                                            bool(is_causal), scale, layout, overlap, impl,
                                            int(block_size))
    BH, N = int(np.prod(q.shape[:-2])), q.shape[-2]
    o_all = _unshard(o, layouts, (BH, N, v.shape[-1]))
    lse_all = _unshard([x[..., None] for x in lse], layouts, (BH, N, 1))[..., 0]
    return RingForward(o_all.reshape(q.shape[:-1] + (v.shape[-1],)), lse_all.reshape(q.shape[:-1]),
                       flops, t)


class RingAttention(Function):
    """softmax(scale Q K^T [+ causal]) V over a ring of virtual GPUs; backward on the same ring."""

    @staticmethod
    def forward(ctx, q, k, v, *, cluster, is_causal, scale, layout, overlap, impl, block_size):
        scale = _check(q, k, v, cluster, is_causal, scale, layout, impl)
        q3, k3, v3 = _flat3(q), _flat3(k), _flat3(v)
        layouts, _, o, lse, _, _ = _forward(q3, k3, v3, cluster, is_causal, scale, layout,
                                            overlap, impl, block_size)
        BH, N = q3.shape[:2]
        o3 = _unshard(o, layouts, (BH, N, v3.shape[-1]))
        lse3 = _unshard([x[..., None] for x in lse], layouts, (BH, N, 1))[..., 0]
        ctx.save_for_backward(q3, k3, v3, o3, lse3)
        ctx.meta = (q.shape, k.shape, v.shape, cluster, is_causal, scale, layout, overlap, impl,
                    block_size)
        return o3.reshape(q.shape[:-1] + (v.shape[-1],))

    @staticmethod
    def backward(ctx, grad):
        q3, k3, v3, o3, lse3 = ctx.saved_tensors
        q_shape, k_shape, v_shape, cluster, is_causal, scale, layout, overlap, impl, bs = ctx.meta
        do3 = np.ascontiguousarray(grad.reshape(o3.shape).astype(o3.dtype, copy=False))
        dq, dk, dv = _backward(q3, k3, v3, o3, lse3, do3, cluster, is_causal, scale, layout,
                               overlap, impl, bs)
        return dq.reshape(q_shape), dk.reshape(k_shape), dv.reshape(v_shape)


def ring_attention(q, k, v, cluster, is_causal: bool = False, scale=None, layout: str = "zigzag",
                   overlap: bool = True, impl: str | None = None, block_size: int = 64) -> Tensor:
    """Exact self-attention with the sequence split over ``cluster``'s GPUs (ring attention).

    GPU r holds the positions ``ring_layout(N, p, layout)[r]`` of q, k and v;
    K/V blocks go around the ring (one message per GPU per step, charged on
    the cluster: bytes in ``cluster.stats``, time on its timeline) while each
    GPU merges its partial results with :func:`merge_attention`. Each partial
    result is a FlashAttention call (``impl`` as :func:`~minigrad.flash.flash_attention`).
    The result is in global order and equals
    ``scaled_dot_product_attention(q, k, v, is_causal=is_causal)`` to rounding;
    differentiable in q, k and v (the backward runs a second ring).

    Args:
        q: (..., N, E); k: (..., N, E); v: (..., N, Ev): one sequence, one dtype.
        cluster: a :class:`~minigrad.distributed.VirtualCluster`, p = world_size <= N.
        is_causal: position i attends to j <= i only.
        scale: default 1/sqrt(E).
        layout: "zigzag" (2p chunks, balanced causal work) or "contiguous".
        overlap: send the next block while computing this one (else one after the other).
        impl: None follows ``minigrad.kernels``; or "numba" or "numpy"; block_size: FlashAttention's tile rows.
    Raises:
        ValueError: N < world size, mismatched shapes, unknown layout or impl.
    """
    q, k, v = (x if isinstance(x, Tensor) else Tensor(np.asarray(x)) for x in (q, k, v))
    return RingAttention.apply(q, k, v, cluster=cluster, is_causal=bool(is_causal), scale=scale,
                               layout=layout, overlap=overlap, impl=resolve_impl(impl),
                               block_size=int(block_size))
