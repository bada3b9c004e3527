"""The process-group API: one program, run once per rank (SPMD), as ``torch.distributed``.

A script written against this module runs unchanged on two backends:

- ``backend="sim"``: every rank is a thread of one Python process, with its
  own rank context; the ranks rendezvous in the collectives of a
  :class:`~minigrad.distributed.cluster.VirtualCluster`, so everything chapter 8
  measures stays: memory budgets and OOM, alpha-beta clocks, the trace, bytes
  counted, packets with checksums and fault injection (all behind the
  simulator, never in the algorithms).
- ``backend="mpi"``: one operating-system process per rank under ``mpiexec``,
  messages through MPI (mpi4py). ``pip install "minigrad[mpi]"``.

Names and argument order are torch.distributed's::

    dist.init_process_group(backend="mpi")
    x = np.full(5, dist.get_rank() + 1.0)
    dist.all_reduce(x)                      # in place: 6.0 everywhere on 3 ranks

Collectives take ndarrays or minigrad Tensors (their ``.data`` is used, in
place), ``op`` is a :class:`ReduceOp`, ``src``/``dst`` are global ranks, and
``async_op=True`` returns a :class:`Work` whose ``wait()`` completes it.
Every rank of the group must call the same collectives in the same order with
the same shapes; a mismatch raises a ``ValueError`` on every rank, naming the
shapes each rank gave.

Launch a script on either backend with ``minigrad launch -n 4 [--backend
mpi|sim] script.py`` (:mod:`minigrad.distributed.launch`), or run a function
on simulated ranks with :func:`spawn`.
"""

from __future__ import annotations

import os
import sys
import threading
from enum import Enum

import numpy as np

__all__ = ["ReduceOp", "Group", "Work", "DistError", "RankError", "DistTimeoutError",
           "init_process_group", "destroy_process_group", "is_initialized", "get_backend",
           "get_rank", "get_world_size", "new_group", "all_reduce", "reduce", "broadcast",
           "all_gather", "all_gather_into_tensor", "reduce_scatter", "reduce_scatter_tensor",
           "all_to_all", "barrier", "send", "recv", "isend", "irecv", "ring_all_reduce",
           "comm_stats", "simulated_gpu", "charge_compute", "book", "unbook", "progress",
           "print0", "spawn", "MPI_EXTRA_HINT"]

MPI_EXTRA_HINT = 'pip install "minigrad[mpi]"'
DEFAULT_TIMEOUT = float(os.environ.get("MINIGRAD_DIST_TIMEOUT", 120.0))


class ReduceOp(Enum):
    """How a reduction combines the ranks' values (torch.distributed.ReduceOp)."""
    SUM = "sum"
    AVG = "avg"
    MAX = "max"
    MIN = "min"
    PRODUCT = "product"


class DistError(RuntimeError):
    """A distributed run failed: a rank raised, died or hung."""


class RankError(DistError):
    """Another rank failed; ``rank`` names it."""

    def __init__(self, rank, message):
        super().__init__(message)
        self.rank = rank


class DistTimeoutError(DistError):
    """A collective or message waited longer than the timeout for some rank."""


class Group:
    """A set of global ranks that run collectives together (``new_group(ranks)``).

    ``ranks[i]`` is the global rank at position i of the group; ``handle`` is
    the backend's own object (an MPI communicator, or None in the simulator).
    """

    def __init__(self, ranks, handle=None):
        self.ranks = tuple(int(r) for r in ranks)
        self.handle = handle

    def __repr__(self):
        return f"Group(ranks={list(self.ranks)})"

    def size(self) -> int:
        return len(self.ranks)

    def position(self, rank: int, fn: str = "collective", what: str = "rank") -> int:
        """Where global ``rank`` sits in the group; ValueError if it is not a member."""
        try:
            return self.ranks.index(int(rank))
        except ValueError:
            raise ValueError(f"{fn}: {what} {rank} is not in the group {list(self.ranks)}") from None


class Work:
    """What ``async_op=True`` returns: ``wait()`` blocks until the operation is done
    (and, on the simulator, makes this rank's compute stream wait for it)."""

    def __init__(self, wait_fn=None, result=None):
        self._wait_fn, self._done, self.result = wait_fn, wait_fn is None, result

    def wait(self, timeout=None) -> bool:
        if not self._done:
            got = self._wait_fn()
            if got is not None:
                self.result = got
            self._done = True
        return True

    def is_completed(self) -> bool:
        return self._done


# ----------------------------------------------------------------------------
# the rank context: a thread's own on the simulator, the process's under MPI
# ----------------------------------------------------------------------------

_local = threading.local()
_process_ctx = None


class _Context:
    """What ``init_process_group`` sets up for one rank: its backend, rank and world."""

    def __init__(self, backend, rank, world_size):
        self.backend, self.rank, self.world_size = backend, rank, world_size
        self.world = Group(range(world_size), backend.world_handle())
        self.auto = False        # made by spawn(), before the rank's own init_process_group


def _ctx(fn="this call") -> _Context:
    ctx = getattr(_local, "ctx", None) or _process_ctx
    if ctx is None:
        raise RuntimeError(f"{fn}: the default process group is not initialized; call "
                           f"minigrad.distributed.init_process_group() first")
    return ctx


def init_process_group(backend=None, world_size=None, rank=None, timeout=None, cluster=None):
    """Join the default process group (once per rank, before any collective).

    Args:
        backend: "sim" (virtual GPUs, ranks as threads of one process) or
            "mpi" (one process per rank under mpiexec). None: the launcher's
            choice (``MINIGRAD_BACKEND``), else "mpi" when started by mpiexec,
            else "sim".
        world_size: expected number of ranks (checked against the launch;
            None takes what was launched). Under "sim" outside a launcher,
            only 1 is possible.
        rank: expected rank (checked), None takes the launched one.
        timeout: seconds a rank waits for the others in one operation
            before the run fails naming the missing ranks (simulator; under
            MPI the launcher enforces it for the whole run).
        cluster: "sim" outside a launcher: the one-GPU VirtualCluster to use.
    """
    global _process_ctx
    auto = getattr(_local, "ctx", None)
    if auto is not None and auto.auto and backend in (None, "sim"):
        auto.auto = False        # spawn() joined this rank already: only check the arguments
        _check_launch(auto, world_size, rank)
        return
    if getattr(_local, "ctx", None) is not None or _process_ctx is not None:
        raise RuntimeError("init_process_group: already initialized in this rank "
                           "(call destroy_process_group() first)")
    backend = _pick_backend(backend)
    if backend == "sim":
        from .backend_sim import attach_rank
        be, r, p = attach_rank(world_size, timeout, cluster)
        ctx = _Context(be, r, p)
        _local.ctx = ctx
    elif backend == "mpi":
        from .backend_mpi import MPIBackend
        be = MPIBackend(timeout)
        ctx = _Context(be, be.rank, be.world_size)
        _process_ctx = ctx
        be.install_rank_hooks()
    else:
        raise ValueError(f"init_process_group: backend must be 'sim' or 'mpi', got {backend!r}")
    try:
        _check_launch(ctx, world_size, rank)
    except ValueError:
        destroy_process_group()
        raise


def _check_launch(ctx, world_size, rank):
    if world_size is not None and world_size != ctx.world_size:
        raise ValueError(f"init_process_group: world_size={world_size} but {ctx.world_size} ranks "
                         f"were launched")
    if rank is not None and rank != ctx.rank:
        raise ValueError(f"init_process_group: rank={rank} but this is rank {ctx.rank}")


def _pick_backend(backend):
    if backend is not None:
        return backend
    env = os.environ.get("MINIGRAD_BACKEND")
    if env:
        return env
    if getattr(_local, "pending", None) is not None:
        return "sim"
    if any(k in os.environ for k in ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE")):
        return "mpi"
    return "sim"


def destroy_process_group(group=None) -> None:
    """Leave the default process group (this rank only)."""
    global _process_ctx
    ctx = getattr(_local, "ctx", None) or _process_ctx
    if ctx is None:
        return
    ctx.backend.close()
    if getattr(_local, "ctx", None) is ctx:
        _local.ctx = None
    else:
        _process_ctx = None


def is_initialized() -> bool:
    return (getattr(_local, "ctx", None) or _process_ctx) is not None


def get_backend(group=None) -> str:
    return _ctx("get_backend").backend.name


def get_rank(group=None) -> int:
    """This rank's number in ``group`` (default: the world), or -1 if not a member."""
    ctx = _ctx("get_rank")
    if group is None:
        return ctx.rank
    return group.ranks.index(ctx.rank) if ctx.rank in group.ranks else -1


def get_world_size(group=None) -> int:
    ctx = _ctx("get_world_size")
    return ctx.world_size if group is None else group.size()


def new_group(ranks=None) -> Group:
    """A group of the given global ranks; every rank of the world must call it (as torch)."""
    ctx = _ctx("new_group")
    ranks = list(range(ctx.world_size)) if ranks is None else [int(r) for r in ranks]
    if not ranks or len(set(ranks)) != len(ranks) or not all(0 <= r < ctx.world_size for r in ranks):
        raise ValueError(f"new_group: ranks must be distinct ranks in [0, {ctx.world_size}), "
                         f"got {ranks}")
    return Group(ranks, ctx.backend.new_group_handle(ranks))


# ----------------------------------------------------------------------------
# arguments
# ----------------------------------------------------------------------------

def _array(t, fn, name="tensor", writeable=True) -> np.ndarray:
    """The ndarray behind ``t`` (a Tensor's ``.data``), contiguous, for in-place use."""
    a = getattr(t, "data", t) if not isinstance(t, np.ndarray) else t
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{fn}: {name} must be an ndarray or a minigrad Tensor, got {type(t).__name__}")
    if writeable and (not a.flags.c_contiguous or not a.flags.writeable):
        raise ValueError(f"{fn}: {name} is written in place, so it must be C-contiguous and "
                         f"writeable (np.ascontiguousarray)")
    return a


def _reduce_op(op, fn, dtype) -> ReduceOp:
    if isinstance(op, str):
        try:
            op = ReduceOp(op.lower())
        except ValueError:
            pass
    if not isinstance(op, ReduceOp):
        raise ValueError(f"{fn}: op must be a ReduceOp (SUM, AVG, MAX, MIN, PRODUCT), got {op!r}")
    if op is ReduceOp.AVG and dtype.kind != "f":
        raise TypeError(f"{fn}: op=ReduceOp.AVG needs floating-point tensors, got {dtype}")
    return op


def _group(group, fn) -> Group:
    ctx = _ctx(fn)
    g = ctx.world if group is None else group
    if not isinstance(g, Group):
        raise TypeError(f"{fn}: group must come from new_group(), got {type(group).__name__}")
    g.position(ctx.rank, fn, "this rank")
    return g


def _list(tensors, n, fn, name):
    if isinstance(tensors, np.ndarray) or not hasattr(tensors, "__len__") or len(tensors) != n:
        raise ValueError(f"{fn}: {name} must be a list of {n} tensors (one per rank of the group)")
    return [_array(t, fn, f"{name}[{i}]") for i, t in enumerate(tensors)]


def _finish(work, async_op):
    if async_op:
        return work
    work.wait()
    return None


# ----------------------------------------------------------------------------
# collectives
# ----------------------------------------------------------------------------

def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False):
    """In place: every rank's ``tensor`` becomes op over all ranks' tensors.

    NumPy definition: ``x[...] = np.sum([x_0, ..., x_(p-1)], axis=0)`` (or
    mean, max, min, prod). Backends: the simulator's ring; MPI_Allreduce.
    """
    a = _array(tensor, "all_reduce")
    g = _group(group, "all_reduce")
    op = _reduce_op(op, "all_reduce", a.dtype)
    return _finish(_ctx().backend.all_reduce(a, op, g), async_op)


def ring_all_reduce(tensor, op=ReduceOp.SUM, group=None):
    """The chapter's own ring all-reduce (reduce-scatter then all-gather), in place.

    Each rank sends 2 (p-1)/p * n * itemsize bytes, counted in
    :func:`comm_stats` on both backends: the simulator's ring, or MPI
    point-to-point ``Sendrecv`` to the right neighbour (not MPI_Allreduce).
    """
    a = _array(tensor, "ring_all_reduce")
    g = _group(group, "ring_all_reduce")
    op = _reduce_op(op, "ring_all_reduce", a.dtype)
    _ctx().backend.ring_all_reduce(a, op, g)


def reduce(tensor, dst, op=ReduceOp.SUM, group=None, async_op=False):
    """In place on rank ``dst`` (global): op over all ranks' tensors; the others are unchanged."""
    a = _array(tensor, "reduce")
    g = _group(group, "reduce")
    op = _reduce_op(op, "reduce", a.dtype)
    g.position(dst, "reduce", "dst")
    return _finish(_ctx().backend.reduce(a, dst, op, g), async_op)


def broadcast(tensor, src, group=None, async_op=False):
    """In place: every rank's ``tensor`` becomes a copy of rank ``src``'s (global rank)."""
    a = _array(tensor, "broadcast")
    g = _group(group, "broadcast")
    g.position(src, "broadcast", "src")
    return _finish(_ctx().backend.broadcast(a, src, g), async_op)


def all_gather(tensor_list, tensor, group=None, async_op=False):
    """``tensor_list[j]`` becomes rank j's ``tensor`` (shapes may differ in their first dim)."""
    g = _group(group, "all_gather")
    a = _array(tensor, "all_gather", writeable=False)
    outs = _list(tensor_list, g.size(), "all_gather", "tensor_list")
    me = g.position(_ctx().rank)
    if outs[me].shape != a.shape or any(o.dtype != a.dtype for o in outs):
        raise ValueError(f"all_gather: tensor_list[{me}] must have this rank's tensor's shape "
                         f"{a.shape} and every entry its dtype {a.dtype}")
    return _finish(_ctx().backend.all_gather(outs, np.ascontiguousarray(a), g), async_op)


def all_gather_into_tensor(output_tensor, input_tensor, group=None, async_op=False):
    """``output_tensor`` (p * n, ...) becomes the ranks' inputs (n, ...) stacked along dim 0."""
    g = _group(group, "all_gather_into_tensor")
    out = _array(output_tensor, "all_gather_into_tensor", "output_tensor")
    a = np.ascontiguousarray(_array(input_tensor, "all_gather_into_tensor", "input_tensor", False))
    p = g.size()
    want = (p * a.shape[0],) + a.shape[1:] if a.ndim else (p,)
    if out.shape != want or out.dtype != a.dtype:
        raise ValueError(f"all_gather_into_tensor: output_tensor must be {want} {a.dtype} for "
                         f"{p} inputs of {a.shape}, got {out.shape} {out.dtype}")
    outs = list(out.reshape((p,) + a.shape))
    return _finish(_ctx().backend.all_gather(outs, a, g), async_op)


def reduce_scatter(output, input_list, op=ReduceOp.SUM, group=None, async_op=False):
    """``output`` on rank j becomes op over all ranks of their ``input_list[j]``.

    Sizes may be uneven: ``input_list[j]`` has rank j's output's shape (the
    same on every rank).
    """
    g = _group(group, "reduce_scatter")
    out = _array(output, "reduce_scatter", "output")
    ins = [np.ascontiguousarray(x) for x in _list(input_list, g.size(), "reduce_scatter", "input_list")]
    op = _reduce_op(op, "reduce_scatter", out.dtype)
    me = g.position(_ctx().rank)
    if ins[me].shape != out.shape or any(x.dtype != out.dtype for x in ins):
        raise ValueError(f"reduce_scatter: input_list[{me}] must have output's shape {out.shape} "
                         f"and every entry its dtype {out.dtype}, got "
                         f"{[(x.shape, str(x.dtype)) for x in ins]}")
    return _finish(_ctx().backend.reduce_scatter(out, ins, op, g), async_op)


def reduce_scatter_tensor(output, input, op=ReduceOp.SUM, group=None, async_op=False):
    """``input`` (p * n, ...) is reduced over ranks; rank j's ``output`` (n, ...) gets rows j."""
    g = _group(group, "reduce_scatter_tensor")
    out = _array(output, "reduce_scatter_tensor", "output")
    a = np.ascontiguousarray(_array(input, "reduce_scatter_tensor", "input", False))
    p = g.size()
    if out.ndim == 0 or a.shape != (p * out.shape[0],) + out.shape[1:] or a.dtype != out.dtype:
        raise ValueError(f"reduce_scatter_tensor: input must be ({p} * {out.shape[0] if out.ndim else 0}"
                         f", ...) {out.dtype} for output {out.shape}, got {a.shape} {a.dtype}")
    op = _reduce_op(op, "reduce_scatter_tensor", out.dtype)
    return _finish(_ctx().backend.reduce_scatter(out, list(a.reshape((p,) + out.shape)), op, g),
                   async_op)


def all_to_all(output_tensor_list, input_tensor_list, group=None, async_op=False):
    """Rank i's ``input_tensor_list[j]`` lands in rank j's ``output_tensor_list[i]``."""
    g = _group(group, "all_to_all")
    p = g.size()
    outs = _list(output_tensor_list, p, "all_to_all", "output_tensor_list")
    ins = [np.ascontiguousarray(x) for x in _list(input_tensor_list, p, "all_to_all",
                                                  "input_tensor_list")]
    if len({x.dtype for x in ins + outs}) > 1:
        raise ValueError("all_to_all: every input and output tensor must share one dtype")
    return _finish(_ctx().backend.all_to_all(outs, ins, g), async_op)


def barrier(group=None, async_op=False):
    """Wait until every rank of the group has reached this call."""
    g = _group(group, "barrier")
    return _finish(_ctx().backend.barrier(g), async_op)


# ----------------------------------------------------------------------------
# point to point
# ----------------------------------------------------------------------------

def isend(tensor, dst, group=None, tag=0) -> Work:
    """Start sending ``tensor`` to global rank ``dst``; keep it unchanged until ``wait()``."""
    a = np.ascontiguousarray(_array(tensor, "isend", writeable=False))
    ctx = _ctx("isend")
    _p2p_peer(dst, ctx, group, "isend", "dst")
    return ctx.backend.isend(a, int(dst), int(tag))


def irecv(tensor, src=None, group=None, tag=0) -> Work:
    """Start receiving into ``tensor`` from global rank ``src``; valid after ``wait()``."""
    a = _array(tensor, "irecv")
    ctx = _ctx("irecv")
    if src is None:
        raise ValueError("irecv: src must be given (receiving from any rank is not supported)")
    _p2p_peer(src, ctx, group, "irecv", "src")
    return ctx.backend.irecv(a, int(src), int(tag))


def send(tensor, dst, group=None, tag=0) -> None:
    """Send ``tensor`` to global rank ``dst`` (returns once the buffer may be reused)."""
    isend(tensor, dst, group, tag).wait()


def recv(tensor, src=None, group=None, tag=0) -> int:
    """Receive into ``tensor`` from global rank ``src``; returns ``src``."""
    irecv(tensor, src, group, tag).wait()
    return int(src)


def _p2p_peer(peer, ctx, group, fn, what):
    if group is not None:
        group.position(peer, fn, what)
    if not 0 <= int(peer) < ctx.world_size or int(peer) == ctx.rank:
        raise ValueError(f"{fn}: {what} must be another rank in [0, {ctx.world_size}), got {peer}")


# ----------------------------------------------------------------------------
# what the simulator adds (no-ops under MPI), and rank-0 output
# ----------------------------------------------------------------------------

def comm_stats() -> dict:
    """This rank's traffic so far: {"bytes_sent", "bytes_received", "messages"}.

    Simulator: every message of every collective. MPI: the messages this
    library sends itself (the ring, send/recv); MPI's own collectives are
    counted in ``calls`` only, as their algorithm is MPICH's choice.
    """
    return _ctx("comm_stats").backend.comm_stats()


def simulated_gpu():
    """This rank's :class:`VirtualGPU` on the simulator; None under MPI."""
    return _ctx("simulated_gpu").backend.gpu()


def charge_compute(flops: float, kind: str = "compute", label: str = "") -> None:
    """Advance this rank's simulated compute clock by ``flops`` (no-op under MPI)."""
    _ctx("charge_compute").backend.compute(flops, kind, label)


def book(name: str, nbytes, kind: str) -> None:
    """Book memory on this rank's virtual GPU (OutOfMemoryError over budget); no-op under MPI."""
    _ctx("book").backend.book(name, nbytes, kind)


def unbook(name: str) -> None:
    _ctx("unbook").backend.unbook(name)


def progress(iterable=None, **kwargs):
    """A tqdm progress bar shown by rank 0 only (every rank iterates)."""
    from tqdm.auto import tqdm
    rank = get_rank() if is_initialized() else 0
    return tqdm(iterable, disable=rank != 0 or kwargs.pop("disable", False), **kwargs)


def print0(*args, **kwargs) -> None:
    """print on rank 0 only (the launchers already silence the others' stdout)."""
    if not is_initialized() or get_rank() == 0:
        print(*args, **kwargs)
        sys.stdout.flush()


def spawn(fn, world_size: int, args=(), cluster=None, timeout=None) -> list:
    """Run ``fn(*args)`` on ``world_size`` simulated ranks; their return values, by rank.

    Each rank is a thread with its own rank context; ``fn`` calls
    ``init_process_group()`` itself (or not: spawn does it when ``fn``
    did not). The ranks share ``cluster`` (default: a fresh
    ``VirtualCluster(world_size)``), whose stats, trace and clocks describe
    the run afterwards. A rank that raises, or a collective that waits
    longer than ``timeout`` for a rank, ends the run with a
    :class:`RankError` / :class:`DistTimeoutError` naming the rank.
    """
    from .backend_sim import spawn as _spawn
    return _spawn(fn, world_size, args, cluster, timeout)
