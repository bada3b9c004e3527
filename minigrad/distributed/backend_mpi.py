"""backend="mpi": one process per rank under ``mpiexec``, messages through MPI (mpi4py).

The collectives of :mod:`minigrad.distributed.process_group` map onto MPI's
non-blocking ones (``Iallreduce``, ``Ireduce``, ``Ibcast``, ``Iallgatherv``,
``Ireduce_scatter``, ``Ialltoallv``, ``Ibarrier``), so ``async_op=True``
really overlaps, and ``send``/``recv`` onto ``Isend``/``Irecv``. ReduceOp.AVG
is MPI_SUM then a division by the group's size.

:func:`ring_all_reduce` is the chapter's own ring written on MPI
point-to-point: p - 1 ``Sendrecv`` steps of reduce-scatter (send chunk
(r - s - 1) mod p right, receive chunk (r - s - 2) mod p from the left and
reduce it in) then p - 1 of all-gather, the same schedule as the simulator's
:func:`~minigrad.distributed.collectives.ring_reduce_scatter_`; its bytes are
counted per rank.

``MINIGRAD_MPI_ALL_REDUCE=ring`` makes ``all_reduce`` itself run that ring
(blocking), so a run's bytes can be set beside the simulator's.

Before each collective the ranks compare what they pass (name, shapes,
dtype, op): one 16-byte all-reduce of its checksum (max and -min), and only
on a mismatch an ``allgather`` of the details, so a mismatch raises a
ValueError on every rank, naming each rank's shapes, instead of a hang or
garbage (``MINIGRAD_DIST_CHECK=0`` skips it).

Failure: a rank that waits inside one MPI call longer than ``timeout``
seconds (``init_process_group(timeout=)``, default ``MINIGRAD_DIST_TIMEOUT``
or 120) ends the job, so a hung or dead peer never hangs the run silently.
Under ``minigrad launch`` each rank keeps a one-line status file
(its pid, and the collective it is in); an uncaught exception prints
``[rank r]`` with the traceback, marks the status failed and calls
``MPI_Abort`` so the whole job ends; the launcher names the rank.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import traceback
import zlib
from collections import Counter

import numpy as np

from . import process_group as pg
from .collectives import chunk_bounds

__all__ = ["MPIBackend", "ring_all_reduce_mpi", "import_mpi"]

_UFUNCS = {pg.ReduceOp.SUM: np.add, pg.ReduceOp.AVG: np.add, pg.ReduceOp.MAX: np.maximum,
           pg.ReduceOp.MIN: np.minimum, pg.ReduceOp.PRODUCT: np.multiply}


def import_mpi():
    """mpi4py's MPI module, or an ImportError naming the extra to install."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(f'backend="mpi" needs mpi4py and an MPI library; install them with '
                          f'{pg.MPI_EXTRA_HINT} (mpi4py + mpich wheels)') from e
    return MPI


class _Status:
    """A rank's one-line status file, rewritten in place (cheap: one pwrite)."""

    WIDTH = 160

    def __init__(self, folder, rank):
        self.fd = os.open(os.path.join(folder, f"rank{rank}"), os.O_RDWR | os.O_CREAT, 0o644)
        self.pid = os.getpid()
        self.set("running")

    def set(self, state):
        line = f"{self.pid} {state}"[:self.WIDTH - 1].ljust(self.WIDTH - 1) + "\n"
        os.pwrite(self.fd, line.encode(), 0)


class MPIBackend:
    name = "mpi"

    def __init__(self, timeout=None):
        MPI = import_mpi()
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD
        self.rank, self.world_size = self.comm.Get_rank(), self.comm.Get_size()
        self.ops = {pg.ReduceOp.SUM: MPI.SUM, pg.ReduceOp.AVG: MPI.SUM, pg.ReduceOp.MAX: MPI.MAX,
                    pg.ReduceOp.MIN: MPI.MIN, pg.ReduceOp.PRODUCT: MPI.PROD}
        self.check = os.environ.get("MINIGRAD_DIST_CHECK", "1") != "0"
        # "mpi": all_reduce is MPI_Iallreduce; "ring": the chapter's ring over Sendrecv
        self.all_reduce_algorithm = os.environ.get("MINIGRAD_MPI_ALL_REDUCE", "mpi")
        self.stats = {"bytes_sent": 0, "bytes_received": 0, "messages": 0, "calls": Counter()}
        self.seq = 0
        self.timeout = pg.DEFAULT_TIMEOUT if timeout is None else float(timeout)
        self._busy = None            # (what, since when) while this rank waits inside MPI
        folder = os.environ.get("MINIGRAD_STATUS_DIR")
        self.status = _Status(folder, self.rank) if folder else None

    # -- process-wide behaviour -----------------------------------------------------------------
    def install_rank_hooks(self):
        """Rank-0-only stdout; an uncaught exception aborts the whole job, naming the rank."""
        if self.rank != 0 and os.environ.get("MINIGRAD_ALL_RANKS_PRINT") != "1":
            sys.stdout = open(os.devnull, "w")
        def hook(kind, value, tb):
            self.failed = True
            if self.status:
                self.status.set(f"failed {kind.__name__}: {value}".replace("\n", " "))
            text = "".join(traceback.format_exception(kind, value, tb))
            sys.stderr.write("".join(f"[rank {self.rank}] {line}\n" for line in text.splitlines()))
            sys.stderr.flush()
            if self.world_size > 1:
                self.comm.Abort(1)           # ends every rank (MPICH may return first)
            os._exit(1)
        self.failed = False
        sys.excepthook = hook
        if self.world_size > 1:
            threading.Thread(target=self._watchdog, name="minigrad-watchdog", daemon=True).start()
        if self.status:
            atexit.register(lambda: self.failed or self.status.set("done"))

    def _watchdog(self):
        """Abort the job when this rank has waited inside one MPI call longer than the timeout
        (mpi4py lets go of the GIL while it waits, so this thread runs)."""
        while True:
            time.sleep(min(1.0, self.timeout / 4))
            busy = self._busy
            if busy is None or time.monotonic() - busy[1] < self.timeout:
                continue
            self.failed = True
            if self.status:
                self.status.set(f"timed out in {busy[0]} after {self.timeout:g} s")
            sys.stderr.write(f"[rank {self.rank}] waited {self.timeout:g} s in {busy[0]}: another "
                             f"rank hangs, died or skipped the call; ending the job\n")
            sys.stderr.flush()
            self.comm.Abort(1)
            os._exit(1)

    def _waiting(self, what, req):
        self._busy = (what, time.monotonic())
        req.Wait()
        self._busy = None

    def world_handle(self):
        return self.comm

    def new_group_handle(self, ranks):
        inside = self.rank in ranks
        color = 0 if inside else self.MPI.UNDEFINED
        return self.comm.Split(color, ranks.index(self.rank) if inside else 0)

    def close(self):
        pass

    # -- what only the simulator has ---------------------------------------------------------
    def gpu(self):
        return None

    def compute(self, flops, kind, label):
        pass

    def book(self, name, nbytes, kind):
        pass

    def unbook(self, name):
        pass

    def comm_stats(self):
        return {k: (dict(v) if isinstance(v, Counter) else v) for k, v in self.stats.items()}

    # -- checks and status ---------------------------------------------------------------------
    def _enter(self, name, group, sig, validate=None):
        """Count the call, mark the status, and make the ranks agree on what they pass."""
        self.seq += 1
        self.stats["calls"][name] += 1
        if self.status:
            self.status.set(f"in {name} #{self.seq}")
        self._busy = (f"{name} #{self.seq}", time.monotonic())
        if self.check and group.size() > 1:
            if validate is None:     # the common case: one small all-reduce of a checksum
                h = zlib.crc32(repr((name, sig)).encode())
                both = np.array([h, -h], np.int64)
                group.handle.Allreduce(self.MPI.IN_PLACE, both, op=self.MPI.MAX)
                if both[0] == -both[1]:          # max == min: every rank passed the same
                    return
            sigs = group.handle.allgather((name, sig))
            if len({n for n, _ in sigs}) > 1 or (validate is None and len(set(sigs)) > 1):
                detail = "; ".join(f"rank {r} {n} {s}" for r, (n, s) in zip(group.ranks, sigs))
                raise ValueError(f"{name}: the ranks' calls do not match: {detail}")
            if validate is not None:        # the parts differ by rank: check how they fit
                validate([s for _, s in sigs])

    def _left(self, name):
        self._busy = None
        if self.status:
            self.status.set(f"after {name} #{self.seq}")

    def _work(self, name, req, post=None):
        self._left(name)

        label = f"{name} #{self.seq}"

        def wait():
            self._waiting(label, req)
            if post is not None:
                post()
        return pg.Work(wait)

    def _avg(self, a, op, p):
        return (lambda: np.divide(a, p, out=a)) if op is pg.ReduceOp.AVG else None

    # -- collectives -------------------------------------------------------------------------
    def all_reduce(self, a, op, group):
        if self.all_reduce_algorithm == "ring":     # the chapter's ring, bytes counted (blocking)
            self.ring_all_reduce(a, op, group)
            return pg.Work()
        self._enter("all_reduce", group, (a.shape, a.dtype.str, op.name))
        flat = a.reshape(-1)
        req = group.handle.Iallreduce(self.MPI.IN_PLACE, flat, op=self.ops[op])
        return self._work("all_reduce", req, self._avg(a, op, group.size()))

    def ring_all_reduce(self, a, op, group):
        self._enter("ring_all_reduce", group, (a.shape, a.dtype.str, op.name))
        sent = ring_all_reduce_mpi(a.reshape(-1), group.handle, _UFUNCS[op])
        if op is pg.ReduceOp.AVG:
            a /= group.size()
        self.stats["bytes_sent"] += sent
        self.stats["bytes_received"] += sent
        self.stats["messages"] += 2 * (group.size() - 1)
        self._left("ring_all_reduce")

    def reduce(self, a, dst, op, group):
        self._enter("reduce", group, (a.shape, a.dtype.str, op.name, dst))
        root = group.position(dst)
        flat = a.reshape(-1)
        if group.position(self.rank) == root:
            req = group.handle.Ireduce(self.MPI.IN_PLACE, flat, op=self.ops[op], root=root)
            post = self._avg(a, op, group.size())
        else:
            req = group.handle.Ireduce(flat, None, op=self.ops[op], root=root)
            post = None
        return self._work("reduce", req, post)

    def broadcast(self, a, src, group):
        self._enter("broadcast", group, (a.shape, a.dtype.str, src))
        req = group.handle.Ibcast(a.reshape(-1), root=group.position(src))
        return self._work("broadcast", req)

    def all_gather(self, outs, a, group):
        # equal tensor_list shapes everywhere, and tensor_list[me] of my tensor's shape
        # (checked before): then every rank's piece fits
        sizes = [o.size for o in outs]
        self._enter("all_gather", group, (tuple(o.shape for o in outs), a.dtype.str))
        recv = np.empty(sum(sizes), dtype=a.dtype)
        displs = np.cumsum([0] + sizes[:-1]).tolist()
        req = group.handle.Iallgatherv(a.reshape(-1), [recv, (sizes, displs)])

        def post():
            for o, lo, n in zip(outs, displs, sizes):
                o.reshape(-1)[:] = recv[lo:lo + n]
        return self._work("all_gather", req, post)

    def reduce_scatter(self, out, ins, op, group):
        self._enter("reduce_scatter", group, (tuple(x.shape for x in ins), out.dtype.str, op.name))
        send = np.concatenate([x.reshape(-1) for x in ins]) if ins else np.zeros(0, out.dtype)
        counts = [x.size for x in ins]
        req = group.handle.Ireduce_scatter(send, out.reshape(-1), counts, op=self.ops[op])
        return self._work("reduce_scatter", req, self._avg(out, op, group.size()))

    def all_to_all(self, outs, ins, group):
        p = group.size()

        def validate(sigs):
            for i in range(p):
                for j in range(p):
                    if sigs[i][0][j] != sigs[j][1][i]:
                        raise ValueError(
                            f"all_to_all: rank {group.ranks[i]} sends input_tensor_list[{j}] of "
                            f"shape {sigs[i][0][j]}, but rank {group.ranks[j]}'s "
                            f"output_tensor_list[{i}] has shape {sigs[j][1][i]}")
        self._enter("all_to_all", group, (tuple(x.shape for x in ins),
                                          tuple(o.shape for o in outs)), validate)
        scounts, rcounts = [x.size for x in ins], [o.size for o in outs]
        sdispls = np.cumsum([0] + scounts[:-1]).tolist()
        rdispls = np.cumsum([0] + rcounts[:-1]).tolist()
        send = np.concatenate([x.reshape(-1) for x in ins])
        recv = np.empty(sum(rcounts), dtype=send.dtype)
        req = group.handle.Ialltoallv([send, (scounts, sdispls)], [recv, (rcounts, rdispls)])

        def post():
            for o, lo, n in zip(outs, rdispls, rcounts):
                o.reshape(-1)[:] = recv[lo:lo + n]
        return self._work("all_to_all", req, post)

    def barrier(self, group):
        self._enter("barrier", group, ())
        return self._work("barrier", group.handle.Ibarrier())

    # -- point to point ------------------------------------------------------------------------
    def isend(self, a, dst, tag):
        req = self.comm.Isend(a.reshape(-1), dest=dst, tag=tag)
        self.stats["bytes_sent"] += a.nbytes
        self.stats["messages"] += 1
        return pg.Work(lambda: self._waiting(f"send to rank {dst}", req), result=a)  # keeps ``a``

    def irecv(self, a, src, tag):
        if self.status:
            self.status.set(f"in recv from rank {src} #{self.seq}")
        req = self.comm.Irecv(a.reshape(-1), source=src, tag=tag)
        self.stats["bytes_received"] += a.nbytes
        return pg.Work(lambda: self._waiting(f"recv from rank {src}", req))


def ring_all_reduce_mpi(flat: np.ndarray, comm, ufunc=np.add) -> int:
    """The ring all-reduce on MPI point-to-point, in place on this rank's ``flat`` (n,).

    Reduce-scatter: at step s (0..p-2) rank r sends chunk (r - s - 1) mod p
    to rank r + 1 and receives chunk (r - s - 2) mod p from rank r - 1,
    reducing it into its own copy with ``ufunc``; afterwards rank r holds the
    full reduction of chunk r. All-gather: at step s rank r sends chunk
    (r - s) mod p and receives chunk (r - s - 1) mod p, copied in. Chunks
    follow :func:`chunk_bounds` (any n). Returns the bytes this rank sent,
    2 (p-1)/p * n * itemsize when p divides n (every chunk but two, twice,
    in general: (2n - |c_r| - |c_(r+1)|) * itemsize), as the simulator counts.
    """
    p, r = comm.Get_size(), comm.Get_rank()
    if p == 1:
        return 0
    b = chunk_bounds(flat.size, p)
    right, left = (r + 1) % p, (r - 1) % p
    tmp = np.empty(int(np.max(np.diff(b))), dtype=flat.dtype)
    sent = 0
    for step in range(p - 1):                      # reduce-scatter
        s, c = (r - step - 1) % p, (r - step - 2) % p
        piece = tmp[:b[c + 1] - b[c]]
        comm.Sendrecv(flat[b[s]:b[s + 1]], dest=right, recvbuf=piece, source=left)
        ufunc(flat[b[c]:b[c + 1]], piece, out=flat[b[c]:b[c + 1]])
        sent += (b[s + 1] - b[s]) * flat.itemsize
    for step in range(p - 1):                      # all-gather
        s, c = (r - step) % p, (r - step - 1) % p
        comm.Sendrecv(flat[b[s]:b[s + 1]], dest=right, recvbuf=flat[b[c]:b[c + 1]], source=left)
        sent += (b[s + 1] - b[s]) * flat.itemsize
    return int(sent)
