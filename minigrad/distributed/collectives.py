"""Collective communication on a :class:`~minigrad.distributed.cluster.VirtualCluster`.

Names and ops follow ``torch.distributed``: broadcast, reduce, all_reduce,
reduce_scatter, all_gather, all_to_all; ops "sum", "mean", "max". Each takes
one array per rank of the group (``tensors[i]`` lives on GPU ``group[i]``)
and every byte moves through ``cluster.communicate``, so it is counted in
``cluster.stats`` and timed by the alpha-beta model.

As in torch.distributed, broadcast, reduce and all_reduce work in place on
the given arrays (and return them); reduce_scatter, all_gather and all_to_all
return new arrays. With ``async_op=True`` a collective returns
``(result, work)`` and only ``work.wait()`` makes the compute streams wait
(used by DDP to overlap communication with backward).

Chunks: an array of n rows split over p ranks gives rank i the rows
``chunk_bounds(n, p)[i]:chunk_bounds(n, p)[i + 1]`` (as ``np.array_split``:
the first n % p chunks get one extra row), so any length works.

Algorithms and their costs for n bytes on p ranks (alpha latency, beta
bandwidth), bytes sent by the busiest rank in brackets:
  ring all-reduce (Patarasuk & Yuan 2009): 2(p-1) alpha + 2(p-1)/p n/beta
      [2(p-1)/p n] -- bandwidth-optimal: no algorithm sends less per rank.
  tree all-reduce (binomial reduce + broadcast): 2 ceil(log2 p)(alpha + n/beta)
      [at most 2 ceil(log2 p) n] -- few steps, good for small messages.
  naive all-reduce (everyone to rank 0 and back): 2(p-1)(alpha + n/beta)
      [(p-1) n at rank 0].
"""

from __future__ import annotations

import math

import numpy as np

from .cluster import VirtualCluster

__all__ = ["broadcast", "reduce", "all_reduce", "reduce_scatter", "all_gather", "all_to_all",
           "chunk_bounds", "OPS", "ALGORITHMS", "ring_all_reduce_bytes", "alpha_beta_time",
           "measure_all_reduce"]

OPS = ("sum", "mean", "max")
ALGORITHMS = {"broadcast": ("tree", "naive"), "reduce": ("tree", "naive"),
              "all_reduce": ("ring", "tree", "naive"), "reduce_scatter": ("ring", "naive"),
              "all_gather": ("ring", "naive")}


# ----------------------------------------------------------------------------
# closed forms (what the tests and the notebook compare against)
# ----------------------------------------------------------------------------

def _check_world(n: int, p: int, fn: str) -> None:
    if p < 1 or n < 0:
        raise ValueError(f"{fn}: need a world size p >= 1 and n >= 0 elements, got p={p}, n={n}")


def chunk_bounds(n: int, p: int) -> np.ndarray:
    """Boundaries of ``np.array_split(range(n), p)``: p + 1 integers from 0 to n."""
    _check_world(n, p, "chunk_bounds")
    sizes = np.full(p, n // p, dtype=np.int64)
    sizes[: n % p] += 1
    return np.concatenate([[0], np.cumsum(sizes)])


def ring_all_reduce_bytes(n: int, p: int, itemsize: int) -> float:
    """Bytes each rank sends in a ring all-reduce of n elements: 2 (p-1)/p * n * itemsize.

    Exact for every rank when p divides n. Otherwise rank i sends every chunk but
    its own (reduce-scatter) and every chunk but rank i+1's (all-gather),
    (2n - |c_i| - |c_{i+1}|) * itemsize: this is their mean, and no rank is more
    than 2 * itemsize away from it.
    """
    _check_world(n, p, "ring_all_reduce_bytes")
    return 2 * (p - 1) / p * n * itemsize


def alpha_beta_time(nbytes: float, p: int, algorithm: str, alpha: float, beta: float) -> float:
    """Time of an all-reduce of ``nbytes`` on p ranks under the alpha-beta model."""
    if p == 1:
        return 0.0
    if algorithm == "ring":
        return 2 * (p - 1) * alpha + 2 * (p - 1) / p * nbytes / beta
    if algorithm == "tree":
        return 2 * math.ceil(math.log2(p)) * (alpha + nbytes / beta)
    if algorithm == "naive":
        return 2 * (p - 1) * (alpha + nbytes / beta)
    raise ValueError(f"alpha_beta_time: algorithm must be 'ring', 'tree' or 'naive', got {algorithm!r}")


def measure_all_reduce(p: int, nbytes: int, algorithm: str = "ring", latency: float = 1e-5,
                       bandwidth: float = 1e11) -> dict:
    """Run one all-reduce of ``nbytes`` (float32) per GPU on a fresh p-GPU cluster.

    Returns {"time": simulated seconds, "bytes_max": bytes sent by the busiest
    GPU, "formula": the alpha-beta time}, to put measurement beside theory.
    """
    n = max(1, nbytes // 4)
    cluster = VirtualCluster(p, latency=latency, bandwidth=bandwidth)
    all_reduce(cluster, [np.ones(n, np.float32) for _ in range(p)], algorithm=algorithm)
    return {"time": cluster.time, "bytes_max": int(cluster.stats.bytes_sent.max()),
            "formula": alpha_beta_time(n * 4, p, algorithm, latency, bandwidth)}


# ----------------------------------------------------------------------------
# checking the arguments
# ----------------------------------------------------------------------------

def _group(cluster, group, fn):
    if not isinstance(cluster, VirtualCluster):
        raise TypeError(f"{fn}: cluster must be a VirtualCluster, got {type(cluster).__name__}")
    if group is None:
        return list(range(cluster.world_size))
    group = [int(r) for r in group]
    if not group or len(set(group)) != len(group) or not all(0 <= r < cluster.world_size for r in group):
        raise ValueError(f"{fn}: group must list distinct ranks in [0, {cluster.world_size}), got {group}")
    return group


def _arrays(tensors, ranks, fn, same_shape=True):
    if isinstance(tensors, np.ndarray) or not hasattr(tensors, "__len__"):
        raise TypeError(f"{fn}: tensors must be a list with one array per rank")
    if len(tensors) != len(ranks):
        raise ValueError(f"{fn}: got {len(tensors)} arrays for a group of {len(ranks)} ranks "
                         f"(tensors needs one array per rank)")
    arrays = [t if isinstance(t, np.ndarray) else np.asarray(getattr(t, "data", t)) for t in tensors]
    shapes = [a.shape for a in arrays]
    dtypes = [a.dtype for a in arrays]
    if len(set(dtypes)) > 1:
        raise ValueError(f"{fn}: tensors have different dtypes across ranks: {dtypes}")
    if same_shape and len(set(shapes)) > 1:
        raise ValueError(f"{fn}: tensors have different shapes across ranks: {shapes}")
    if not same_shape and len({s[1:] for s in shapes}) > 1:
        raise ValueError(f"{fn}: tensors must agree on every dim but the first, got {shapes}")
    return arrays


def _op(op, fn, dtype):
    if op not in OPS:
        raise ValueError(f"{fn}: op must be one of {OPS}, got {op!r}")
    if op == "mean" and dtype.kind != "f":
        raise TypeError(f"{fn}: op='mean' needs floating-point arrays, got {dtype}")
    return "sum" if op == "mean" else op


def _algorithm(algorithm, fn):
    if algorithm not in ALGORITHMS[fn]:
        raise ValueError(f"{fn}: algorithm must be one of {ALGORITHMS[fn]}, got {algorithm!r}")


def _flat(a: np.ndarray, fn: str) -> np.ndarray:
    """A 1-D view that writes through to ``a`` (in-place collectives need one)."""
    if not a.flags.c_contiguous or not a.flags.writeable:
        raise ValueError(f"{fn}: works in place, so each array must be C-contiguous and writeable "
                         f"(use np.ascontiguousarray)")
    return a.reshape(-1)


def _rows(a: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Rows lo:hi of a contiguous array as a flat view."""
    per_row = int(np.prod(a.shape[1:], dtype=np.int64))
    return a.reshape(-1)[lo * per_row: hi * per_row]


# ----------------------------------------------------------------------------
# the ring: reduce-scatter and all-gather (Patarasuk & Yuan 2009)
# ----------------------------------------------------------------------------

def ring_reduce_scatter_(cluster, flats, bounds, op, ranks, kind="reduce_scatter"):
    """In place: afterwards ``flats[i][chunk i]`` holds the reduction of chunk i over ranks.

    p - 1 steps. At step s, rank i sends chunk (i - s - 1) mod p to rank
    i + 1, which reduces it into its own copy of that chunk; the chunk rank i
    + 1 received is the one it sends at step s + 1. After p - 1 steps every
    chunk has visited every rank once and ends, complete, at its owner.

    Args:
        flats: p flat arrays (n,), one per rank (overwritten with partial sums).
        bounds: chunk boundaries, (p + 1,), see :func:`chunk_bounds`.
        op: "sum" or "max".
        ranks: the GPU of each position in the ring.
    """
    p = len(flats)
    # BEGIN SOLUTION ch8.ring_reduce_scatter
    for step in range(p - 1):
        transfers = []
        for i in range(p):
            c = (i - step - 1) % p
            lo, hi = bounds[c], bounds[c + 1]
            j = (i + 1) % p
            transfers.append((ranks[i], ranks[j], flats[i][lo:hi], flats[j][lo:hi]))
        cluster.communicate(transfers, op=op, kind=kind)
    # END SOLUTION


def ring_all_gather_(cluster, flats, bounds, ranks, kind="all_gather"):
    """In place: afterwards every ``flats[i]`` holds every rank's chunk.

    Before: ``flats[i][chunk i]`` is rank i's piece. p - 1 steps: at step s,
    rank i sends chunk (i - s) mod p (its own first, then what it just
    received) to rank i + 1, which copies it in.
    """
    p = len(flats)
    # BEGIN SOLUTION ch8.ring_all_gather
    for step in range(p - 1):
        transfers = []
        for i in range(p):
            c = (i - step) % p
            lo, hi = bounds[c], bounds[c + 1]
            j = (i + 1) % p
            transfers.append((ranks[i], ranks[j], flats[i][lo:hi], flats[j][lo:hi]))
        cluster.communicate(transfers, op="copy", kind=kind)
    # END SOLUTION


# ----------------------------------------------------------------------------
# binomial trees (reduce to a root, broadcast from it)
# ----------------------------------------------------------------------------

def _tree_reduce_(cluster, flats, root, op, ranks, kind):
    """In place into flats[root]; other flats hold partial sums afterwards.

    Positions are renumbered so the root is 0 (v = (i - root) mod p). In round
    k, every v with v mod 2^(k+1) == 2^k sends its partial result to v - 2^k:
    ceil(log2 p) rounds.
    """
    p = len(flats)
    k = 1
    while k < p:
        transfers = []
        for v in range(k, p, 2 * k):
            i, j = (v + root) % p, (v - k + root) % p
            transfers.append((ranks[i], ranks[j], flats[i], flats[j]))
        cluster.communicate(transfers, op=op, kind=kind)
        k *= 2


def _tree_broadcast_(cluster, flats, root, ranks, kind):
    """In place from flats[root]: the reduce's rounds run backwards (v sends to v + 2^k)."""
    p = len(flats)
    k = 1 << max(0, math.ceil(math.log2(p)) - 1) if p > 1 else 0
    while k >= 1:
        transfers = []
        for v in range(0, p, 2 * k):
            if v + k < p:
                i, j = (v + root) % p, (v + k + root) % p
                transfers.append((ranks[i], ranks[j], flats[i], flats[j]))
        cluster.communicate(transfers, op="copy", kind=kind)
        k //= 2


def _naive_reduce_(cluster, flats, root, op, ranks, kind):
    """Everyone sends its whole array to the root, whose one receive port takes them in turn."""
    transfers = [(ranks[i], ranks[root], flats[i], flats[root])
                 for i in range(len(flats)) if i != root]
    cluster.communicate(transfers, op=op, kind=kind)


def _naive_broadcast_(cluster, flats, root, ranks, kind):
    transfers = [(ranks[root], ranks[j], flats[root], flats[j])
                 for j in range(len(flats)) if j != root]
    cluster.communicate(transfers, op="copy", kind=kind)


def _finish_mean(flats, op, p):
    if op == "mean":
        for f in flats:
            f /= p


# ----------------------------------------------------------------------------
# the public collectives
# ----------------------------------------------------------------------------

def broadcast(cluster, tensors, src=0, algorithm="tree", group=None, async_op=False):
    """Every rank's array becomes a copy of ``tensors[src]`` (in place)."""
    ranks = _group(cluster, group, "broadcast")
    arrays = _arrays(tensors, ranks, "broadcast")
    _algorithm(algorithm, "broadcast")
    if not 0 <= src < len(ranks):
        raise ValueError(f"broadcast: src must be a position in the group [0, {len(ranks)}), got {src}")
    flats = [_flat(a, "broadcast") for a in arrays]
    cluster.stats.calls["broadcast"] += 1
    cluster.begin(ranks)
    (_tree_broadcast_ if algorithm == "tree" else _naive_broadcast_)(
        cluster, flats, src, ranks, "broadcast")
    work = cluster.end(ranks, async_op)
    return (arrays, work) if async_op else arrays


def reduce(cluster, tensors, dst=0, op="sum", algorithm="tree", group=None, async_op=False):
    """``tensors[dst]`` becomes op over all ranks' arrays (in place); the others are unchanged."""
    ranks = _group(cluster, group, "reduce")
    arrays = _arrays(tensors, ranks, "reduce")
    base = _op(op, "reduce", arrays[0].dtype)
    _algorithm(algorithm, "reduce")
    if not 0 <= dst < len(ranks):
        raise ValueError(f"reduce: dst must be a position in the group [0, {len(ranks)}), got {dst}")
    # partial sums travel in scratch copies so only the root's array changes
    flats = [_flat(a, "reduce") if i == dst else a.reshape(-1).copy() for i, a in enumerate(arrays)]
    cluster.stats.calls["reduce"] += 1
    cluster.begin(ranks)
    (_tree_reduce_ if algorithm == "tree" else _naive_reduce_)(cluster, flats, dst, base, ranks, "reduce")
    _finish_mean([flats[dst]], op, len(ranks))
    work = cluster.end(ranks, async_op)
    return (arrays, work) if async_op else arrays


class _ChargeOnly:
    """Stands in for the cluster: books each step's bytes and time, moves no data."""

    def __init__(self, cluster):
        self.cluster = cluster

    def communicate(self, transfers, op="copy", kind="comm", label=""):
        return self.cluster.charge([(s, d, a.nbytes) for s, d, a, _ in transfers], kind, label)


class _DataOnly:
    """Stands in for the cluster: moves each step's data (checksummed), books nothing."""

    def __init__(self, cluster):
        self.cluster = cluster

    def communicate(self, transfers, op="copy", kind="comm", label=""):
        self.cluster.deliver(transfers, op, kind)


def _ring_all_reduce_(cluster, flats, op, ranks, kind):
    """Reduce-scatter then all-gather; large arrays pipelined segment by segment.

    A segment (``cluster.segment_bytes`` per GPU) runs the whole ring before
    the next starts, so what it touches stays in cache, as NCCL slices its
    chunks. The bytes and time booked are those of the unsegmented ring.
    The loop below is the definition; when no fault is armed the cluster
    runs the same messages in one numba call, segments spread over the cores
    (``VirtualCluster.deliver_ring_segments``).
    """
    n, p = flats[0].size, len(flats)
    bounds = chunk_bounds(n, p)
    seg = max(p, cluster.segment_bytes // flats[0].itemsize)
    if n <= seg:
        ring_reduce_scatter_(cluster, flats, bounds, op, ranks, kind)
        ring_all_gather_(cluster, flats, bounds, ranks, kind)
        return
    ring_reduce_scatter_(_ChargeOnly(cluster), flats, bounds, op, ranks, kind)
    ring_all_gather_(_ChargeOnly(cluster), flats, bounds, ranks, kind)
    if cluster.deliver_ring_segments(flats, seg, op, kind):
        return                       # the same messages, all segments in one numba call
    data = _DataOnly(cluster)
    for lo in range(0, n, seg):
        part = [f[lo:lo + seg] for f in flats]
        b = chunk_bounds(part[0].size, p)
        ring_reduce_scatter_(data, part, b, op, ranks, kind)
        ring_all_gather_(data, part, b, ranks, kind)


def all_reduce(cluster, tensors, op="sum", algorithm="ring", group=None, async_op=False):
    """Every rank's array becomes op over all ranks' arrays (in place), e.g. the sum.

    NumPy definition: ``for a in tensors: a[...] = np.sum(tensors, axis=0)``.
    Ring: reduce-scatter then all-gather, each rank sending
    2 (p-1)/p * n * itemsize bytes in all (chunks of unequal size: 2n - |c_i|
    - |c_(i+1)| elements). Tree: binomial reduce to rank 0, then broadcast.
    Naive: everyone to rank 0 and back.
    """
    ranks = _group(cluster, group, "all_reduce")
    arrays = _arrays(tensors, ranks, "all_reduce")
    base = _op(op, "all_reduce", arrays[0].dtype)
    _algorithm(algorithm, "all_reduce")
    flats = [_flat(a, "all_reduce") for a in arrays]
    p = len(ranks)
    cluster.stats.calls["all_reduce"] += 1
    cluster.begin(ranks)
    if algorithm == "ring":
        _ring_all_reduce_(cluster, flats, base, ranks, "all_reduce")
    elif algorithm == "tree":
        _tree_reduce_(cluster, flats, 0, base, ranks, "all_reduce")
        _tree_broadcast_(cluster, flats, 0, ranks, "all_reduce")
    else:
        _naive_reduce_(cluster, flats, 0, base, ranks, "all_reduce")
        _naive_broadcast_(cluster, flats, 0, ranks, "all_reduce")
    _finish_mean(flats, op, p)
    work = cluster.end(ranks, async_op)
    return (arrays, work) if async_op else arrays


def reduce_scatter(cluster, tensors, op="sum", algorithm="ring", group=None, async_op=False):
    """Rank i gets chunk i (rows ``chunk_bounds(n, p)[i:i+2]``) of op over all ranks' arrays.

    NumPy definition: ``np.array_split(np.sum(tensors, axis=0), p)[i]``. The
    inputs are not changed. Ring: p - 1 steps, (n - |c_i|) elements sent by
    rank i. Naive: each rank sends chunk j straight to rank j (same bytes).
    """
    ranks = _group(cluster, group, "reduce_scatter")
    arrays = _arrays(tensors, ranks, "reduce_scatter")
    base = _op(op, "reduce_scatter", arrays[0].dtype)
    _algorithm(algorithm, "reduce_scatter")
    if arrays[0].ndim == 0:
        raise ValueError("reduce_scatter: tensors must have at least one dimension to split")
    p, n = len(ranks), arrays[0].shape[0]
    bounds = chunk_bounds(n, p)
    work_bufs = [np.ascontiguousarray(a).copy() for a in arrays]  # the inputs stay as they were
    cluster.stats.calls["reduce_scatter"] += 1
    cluster.begin(ranks)
    if algorithm == "ring":
        per_row = int(np.prod(arrays[0].shape[1:], dtype=np.int64))
        ring_reduce_scatter_(cluster, [w.reshape(-1) for w in work_bufs], bounds * per_row, base,
                             ranks, "reduce_scatter")
    else:
        for s in range(1, p):   # p - 1 rounds of a shifted pairing, so no port is used twice per round
            transfers = []
            for i in range(p):
                j = (i + s) % p
                transfers.append((ranks[i], ranks[j], _rows(work_bufs[i], bounds[j], bounds[j + 1]),
                                  _rows(work_bufs[j], bounds[j], bounds[j + 1])))
            cluster.communicate(transfers, op=base, kind="reduce_scatter")
    out = [work_bufs[i][bounds[i]:bounds[i + 1]].copy() for i in range(p)]
    _finish_mean(out, op, p)
    work = cluster.end(ranks, async_op)
    return (out, work) if async_op else out


def all_gather(cluster, tensors, algorithm="ring", group=None, async_op=False):
    """Every rank gets ``np.concatenate(tensors, axis=0)``; pieces may differ in length.

    Ring: p - 1 steps, rank i sends n - |piece (i+1)| rows. Naive: every rank
    sends its piece straight to every other rank.
    """
    ranks = _group(cluster, group, "all_gather")
    arrays = _arrays(tensors, ranks, "all_gather", same_shape=False)
    _algorithm(algorithm, "all_gather")
    if arrays[0].ndim == 0:
        raise ValueError("all_gather: tensors must have at least one dimension to concatenate")
    p = len(ranks)
    bounds = np.concatenate([[0], np.cumsum([a.shape[0] for a in arrays])])
    shape = (int(bounds[-1]),) + arrays[0].shape[1:]
    out = [np.empty(shape, dtype=arrays[0].dtype) for _ in range(p)]
    for i, a in enumerate(arrays):  # each rank's own piece is already in place (local copy)
        _rows(out[i], bounds[i], bounds[i + 1])[:] = a.reshape(-1)
    cluster.stats.calls["all_gather"] += 1
    cluster.begin(ranks)
    if algorithm == "ring":
        per_row = int(np.prod(shape[1:], dtype=np.int64))
        ring_all_gather_(cluster, [o.reshape(-1) for o in out], bounds * per_row, ranks, "all_gather")
    else:
        for s in range(1, p):
            transfers = []
            for i in range(p):
                j = (i + s) % p
                piece = _rows(out[i], bounds[i], bounds[i + 1])
                transfers.append((ranks[i], ranks[j], piece, _rows(out[j], bounds[i], bounds[i + 1])))
            cluster.communicate(transfers, op="copy", kind="all_gather")
    work = cluster.end(ranks, async_op)
    return (out, work) if async_op else out


def all_to_all(cluster, tensors, group=None, async_op=False):
    """Rank i sends ``tensors[i][j]`` to rank j: ``out[j][i] = tensors[i][j]``.

    ``tensors[i]`` is a list of p arrays (their shapes may differ). p - 1
    rounds of a shifted pairing (round s: i sends to i + s), so every port is
    used once per round. Expert parallelism routes tokens this way.
    """
    ranks = _group(cluster, group, "all_to_all")
    p = len(ranks)
    if len(tensors) != p or any(len(row) != p for row in tensors):
        raise ValueError(f"all_to_all: tensors must be {p} lists of {p} arrays (one per "
                         f"destination), got lengths {[len(r) for r in tensors]}")
    rows = [[np.ascontiguousarray(np.asarray(x)) for x in row] for row in tensors]
    if len({x.dtype for row in rows for x in row}) > 1:
        raise ValueError("all_to_all: all arrays must share one dtype")
    out = [[None] * p for _ in range(p)]
    for i in range(p):
        out[i][i] = rows[i][i].copy()
    cluster.stats.calls["all_to_all"] += 1
    cluster.begin(ranks)
    for s in range(1, p):
        transfers = []
        for i in range(p):
            j = (i + s) % p
            out[j][i] = np.empty_like(rows[i][j])
            transfers.append((ranks[i], ranks[j], rows[i][j].reshape(-1), out[j][i].reshape(-1)))
        cluster.communicate(transfers, op="copy", kind="all_to_all")
    work = cluster.end(ranks, async_op)
    return (out, work) if async_op else out
