"""backend="sim": a script's ranks as threads of one process, on a VirtualCluster.

Each rank runs the same function in its own thread with its own rank
context. A collective is a *rendezvous*: every rank of the group deposits
its array under the collective's sequence number; the last to arrive runs
the simulator's whole-cluster collective (:mod:`minigrad.distributed.collectives`)
on all of them at once, so every byte goes through ``cluster.communicate``:
packets, checksums, fault injection, alpha-beta clocks, the trace, the
counters. The algorithms above never see any of it.

Checks made at the rendezvous, raised on every rank: all ranks called the
same collective, with the same shapes and dtypes. A rank that raises, exits
early or does not arrive within ``timeout`` seconds fails everyone waiting,
naming the rank.

MIN and PRODUCT have no op on the simulated wire (it adds, takes the max or
copies): their values are reduced in NumPy while the same messages as a SUM
travel on scratch copies, so bytes and time are still counted.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import defaultdict, deque

import numpy as np

from . import collectives as C
from . import process_group as pg
from .cluster import VirtualCluster

__all__ = ["SimWorld", "SimBackend", "spawn", "attach_rank"]

_WIRE_OPS = {pg.ReduceOp.SUM: "sum", pg.ReduceOp.AVG: "mean", pg.ReduceOp.MAX: "max"}
_NUMPY_OPS = {pg.ReduceOp.SUM: np.sum, pg.ReduceOp.AVG: np.mean, pg.ReduceOp.MAX: np.max,
              pg.ReduceOp.MIN: np.min, pg.ReduceOp.PRODUCT: np.prod}


def numpy_reduce(arrays, op) -> np.ndarray:
    """The NumPy definition of a reduction over ranks: op over axis 0 of the stacked arrays."""
    stacked = np.stack(arrays)
    out = _NUMPY_OPS[op](stacked, axis=0)
    return out.astype(arrays[0].dtype, copy=False)


class SimWorld:
    """What the ranks of one simulated run share: the cluster, the rendezvous, the mailboxes."""

    def __init__(self, cluster: VirtualCluster, timeout=None):
        self.cluster = cluster
        self.world_size = cluster.world_size
        self.timeout = pg.DEFAULT_TIMEOUT if timeout is None else float(timeout)
        self.cond = threading.Condition(threading.RLock())   # also guards the cluster
        self.slots: dict = {}
        self.seq: dict = defaultdict(int)         # (rank, group ranks) -> collectives called
        self.mail: dict = defaultdict(deque)      # (src, dst, tag) -> [(array, ready time)]
        self.failed: dict = {}                    # rank -> what it raised
        self.exited: set = set()

    # -- ranks failing or leaving ----------------------------------------------------------
    def fail(self, rank, exc):
        with self.cond:
            self.failed.setdefault(rank, f"{type(exc).__name__}: {exc}")
            self.cond.notify_all()

    def exit(self, rank):
        with self.cond:
            self.exited.add(rank)
            self.cond.notify_all()

    def _wait(self, done, rank, what, waiting_for):
        """Block until ``done()``; raise naming the rank that failed, left or never came."""
        deadline = time.monotonic() + self.timeout
        while not done():
            others = {r: m for r, m in self.failed.items() if r != rank}
            if others:
                r = min(others)
                raise pg.RankError(r, f"rank {r} failed ({others[r]}) while rank {rank} waited "
                                      f"in {what}")
            gone = [r for r in waiting_for() if r in self.exited]
            if gone:
                raise pg.RankError(gone[0], f"rank {gone[0]} finished without joining {what} "
                                            f"(rank {rank} waited for it)")
            left = deadline - time.monotonic()
            if left <= 0:
                missing = waiting_for()
                raise pg.DistTimeoutError(
                    f"{what}: rank(s) {missing} did not arrive within {self.timeout:g} s "
                    f"(rank {rank} waited); a rank hangs or skipped the call")
            self.cond.wait(min(left, 1.0))

    # -- the rendezvous ---------------------------------------------------------------------
    def rendezvous(self, rank, group, name, sig, payload, run):
        """Deposit this rank's part of collective ``name``; the last rank runs ``run``.

        ``run(payloads)`` gets the parts in group order and returns one result
        per position (or raises: then every rank raises it).
        """
        with self.cond:
            k = self.seq[rank, group.ranks]
            self.seq[rank, group.ranks] = k + 1
            key = (group.ranks, k)
            slot = self.slots.setdefault(key, {"calls": {}, "done": False, "taken": 0})
            slot["calls"][rank] = (name, sig, payload)
            what = f"{name} #{k} of group {list(group.ranks)}"
            if len(slot["calls"]) == group.size():
                slot["result"] = self._run(group, slot["calls"], what, run)
                slot["done"] = True
                self.cond.notify_all()
            else:
                self._wait(lambda: slot["done"], rank, what,
                           lambda: [r for r in group.ranks if r not in slot["calls"]])
            slot["taken"] += 1
            if slot["taken"] == group.size():
                del self.slots[key]
            res = slot["result"]
        if isinstance(res, BaseException):
            raise res
        return res[group.position(rank)]

    def _run(self, group, calls, what, run):
        names = {r: calls[r][0] for r in group.ranks}
        if len(set(names.values())) > 1:
            return ValueError(f"{what}: the ranks called different collectives: "
                              + ", ".join(f"rank {r} {n}" for r, n in names.items()))
        sigs = {r: calls[r][1] for r in group.ranks}
        if len(set(sigs.values())) > 1:
            return ValueError(f"{what}: the ranks' tensors do not match: "
                              + "; ".join(f"rank {r} {s}" for r, s in sigs.items()))
        try:
            return run([calls[r][2] for r in group.ranks])
        except Exception as e:              # every rank of the group raises it
            return e


class SimBackend:
    """One rank's view of a :class:`SimWorld`."""

    name = "sim"

    def __init__(self, world: SimWorld, rank: int):
        self.w, self.rank = world, rank
        self.cluster = world.cluster

    def world_handle(self):
        return None

    def new_group_handle(self, ranks):
        return None

    def close(self):
        pass

    # -- the virtual GPU ----------------------------------------------------------------------
    def gpu(self):
        return self.cluster.gpus[self.rank]

    def compute(self, flops, kind, label):
        with self.w.cond:
            self.cluster.compute(self.rank, flops, kind, label)

    def book(self, name, nbytes, kind):
        with self.w.cond:                  # booking a name again replaces it (a new engine)
            g = self.cluster.gpus[self.rank]
            if g.holds(name):
                g.free(name)
            g.alloc(name, nbytes, kind)

    def unbook(self, name):
        with self.w.cond:
            if self.cluster.gpus[self.rank].holds(name):
                self.cluster.gpus[self.rank].free(name)

    def comm_stats(self):
        s = self.cluster.stats
        return {"bytes_sent": int(s.bytes_sent[self.rank]),
                "bytes_received": int(s.bytes_received[self.rank]),
                "messages": int(s.messages[self.rank]), "calls": dict(s.calls)}

    # -- helpers ---------------------------------------------------------------------------
    def _work(self, finish):
        """A Work whose wait() makes this rank's compute stream wait until ``finish``."""
        def wait():
            with self.w.cond:
                g = self.cluster.gpus[self.rank]
                g.clock = max(g.clock, finish)
        return pg.Work(wait)

    def _collective(self, name, group, sig, payload, run):
        finish = self.w.rendezvous(self.rank, group, name, sig, payload, run)
        return self._work(finish)

    def _finishes(self, cluster_work, group):
        return [cluster_work.finish[r] for r in group.ranks]

    def _reduction(self, arrays, op, group, run_wire, write):
        """Run ``run_wire(arrays, wire_op)``; for MIN/PRODUCT on scratch copies, the values by NumPy."""
        if op in _WIRE_OPS:
            return run_wire(arrays, _WIRE_OPS[op])
        want = numpy_reduce(arrays, op)
        work = run_wire([np.zeros_like(a) for a in arrays], "sum")
        write(want)
        return work

    # -- collectives -----------------------------------------------------------------------
    def all_reduce(self, a, op, group, algorithm="ring"):
        ranks = list(group.ranks)

        def run(arrays):
            def wire(arrs, wire_op):
                return C.all_reduce(self.cluster, arrs, op=wire_op, algorithm=algorithm,
                                    group=ranks, async_op=True)[1]

            def write(v):
                for x in arrays:
                    x[...] = v
            return self._finishes(self._reduction(arrays, op, group, wire, write), group)
        return self._collective("all_reduce", group, (a.shape, str(a.dtype), op.name), a, run)

    def ring_all_reduce(self, a, op, group):
        self.all_reduce(a, op, group, algorithm="ring").wait()

    def reduce(self, a, dst, op, group):
        ranks, root = list(group.ranks), group.position(dst)

        def run(arrays):
            def wire(arrs, wire_op):
                return C.reduce(self.cluster, arrs, dst=root, op=wire_op, group=ranks,
                                async_op=True)[1]

            def write(v):
                arrays[root][...] = v
            return self._finishes(self._reduction(arrays, op, group, wire, write), group)
        return self._collective("reduce", group, (a.shape, str(a.dtype), op.name, dst), a, run)

    def broadcast(self, a, src, group):
        ranks, root = list(group.ranks), group.position(src)

        def run(arrays):
            work = C.broadcast(self.cluster, arrays, src=root, group=ranks, async_op=True)[1]
            return self._finishes(work, group)
        return self._collective("broadcast", group, (a.shape, str(a.dtype), src), a, run)

    def all_gather(self, outs, a, group):
        ranks = list(group.ranks)
        sig = (tuple(o.shape for o in outs), str(a.dtype))

        def run(parts):
            for j, (_, x) in enumerate(parts):
                if x.shape != outs[j].shape:
                    raise ValueError(f"all_gather: rank {ranks[j]} gave a tensor of shape "
                                     f"{x.shape}, but tensor_list[{j}] has shape {outs[j].shape}")
            got, work = C.all_gather(self.cluster, [x.reshape(-1) for _, x in parts], group=ranks,
                                     async_op=True)
            bounds = np.cumsum([0] + [x.size for _, x in parts])
            for (o_list, _), flat in zip(parts, got):
                for j, o in enumerate(o_list):
                    o.reshape(-1)[:] = flat[bounds[j]:bounds[j + 1]]
            return self._finishes(work, group)
        return self._collective("all_gather", group, sig, (outs, a), run)

    def reduce_scatter(self, out, ins, op, group):
        ranks = list(group.ranks)
        sig = (tuple(x.shape for x in ins), str(out.dtype), op.name)

        def run(parts):
            bounds = np.cumsum([0] + [x.size for x in parts[0][1]])
            flats = [np.concatenate([x.reshape(-1) for x in xs]) if xs else np.zeros(0, out.dtype)
                     for _, xs in parts]

            def wire(fl, wire_op):
                self.cluster.stats.calls["reduce_scatter"] += 1
                self.cluster.begin(ranks)
                C.ring_reduce_scatter_(self.cluster, fl, bounds, "sum" if wire_op == "mean"
                                       else wire_op, ranks, "reduce_scatter")
                return self.cluster.end(ranks, async_op=True)

            results = {}

            def write(v):
                results["v"] = v
            work = self._reduction(flats, op, group, wire, write)
            for i, (o, _) in enumerate(parts):
                src = results["v"] if "v" in results else flats[i]
                o.reshape(-1)[:] = src[bounds[i]:bounds[i + 1]]
                if op is pg.ReduceOp.AVG:
                    o /= len(ranks)
            return self._finishes(work, group)
        return self._collective("reduce_scatter", group, sig, (out, ins), run)

    def all_to_all(self, outs, ins, group):
        ranks = list(group.ranks)
        sig = str(ins[0].dtype) if ins else ""

        def run(parts):
            p = len(parts)
            for i in range(p):
                for j in range(p):
                    if parts[i][1][j].shape != parts[j][0][i].shape:
                        raise ValueError(
                            f"all_to_all: rank {ranks[i]} sends input_tensor_list[{j}] of shape "
                            f"{parts[i][1][j].shape}, but rank {ranks[j]}'s "
                            f"output_tensor_list[{i}] has shape {parts[j][0][i].shape}")
            got, work = C.all_to_all(self.cluster, [xs for _, xs in parts], group=ranks,
                                     async_op=True)
            for j, (o_list, _) in enumerate(parts):
                for i in range(p):
                    o_list[i][...] = got[j][i]
            return self._finishes(work, group)
        return self._collective("all_to_all", group, sig, (outs, ins), run)

    def barrier(self, group):
        def run(_):
            self.cluster.barrier(list(group.ranks))
            return [self.cluster.gpus[r].clock for r in group.ranks]
        return self._collective("barrier", group, (), None, run)

    # -- point to point ------------------------------------------------------------------------
    def isend(self, a, dst, tag):
        """The message travels now (``cluster.post``: this rank's comm stream, from its
        compute clock) into a buffer; the receiver picks it up at its arrival."""
        with self.w.cond:
            msg = np.empty_like(a)
            arrival = self.cluster.post(self.rank, dst, a.reshape(-1), msg.reshape(-1))
            self.w.mail[self.rank, dst, tag].append((msg, arrival))
            self.w.cond.notify_all()
        return pg.Work()

    def irecv(self, a, src, tag):
        def wait():
            w = self.w
            with w.cond:
                box = w.mail[src, self.rank, tag]
                w._wait(lambda: bool(box), self.rank, f"recv from rank {src} (tag {tag})",
                        lambda: [src])
                msg, arrival = box.popleft()
                if msg.shape != a.shape or msg.dtype != a.dtype:
                    raise ValueError(f"recv: rank {src} sent {msg.shape} {msg.dtype}, but the "
                                     f"receiving tensor is {a.shape} {a.dtype}")
                a[...] = msg
                g = self.cluster.gpus[self.rank]
                g.clock = max(g.clock, arrival)          # the compute stream waits for it
        return pg.Work(wait)


# ----------------------------------------------------------------------------
# starting ranks
# ----------------------------------------------------------------------------

def attach_rank(world_size, timeout, cluster):
    """init_process_group("sim") outside spawn(): a world of one rank."""
    pending = getattr(pg._local, "pending", None)
    if pending is not None:
        world, rank = pending
        return SimBackend(world, rank), rank, world.world_size
    if world_size not in (None, 1):
        raise ValueError(f"init_process_group: backend='sim' with world_size={world_size} needs "
                         f"the ranks started for it: `minigrad launch -n {world_size} --backend sim "
                         f"script.py` or minigrad.distributed.spawn(fn, {world_size})")
    world = SimWorld(cluster if cluster is not None else VirtualCluster(1), timeout)
    return SimBackend(world, 0), 0, 1


class _RankZeroStream:
    """sys.stdout while ranks run as threads: only rank 0's writes get through."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, s):
        ctx = getattr(pg._local, "ctx", None)
        if ctx is None or ctx.rank == 0:
            return self.stream.write(s)
        return len(s)

    def flush(self):
        self.stream.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


def spawn(fn, world_size, args=(), cluster=None, timeout=None) -> list:
    """See :func:`minigrad.distributed.spawn`."""
    if cluster is None:
        cluster = VirtualCluster(world_size)
    if cluster.world_size != world_size:
        raise ValueError(f"spawn: world_size={world_size} but the cluster has "
                         f"{cluster.world_size} GPUs")
    world = SimWorld(cluster, timeout)
    results, errors = [None] * world_size, {}

    def body(rank):
        pg._local.pending = (world, rank)
        ctx = pg._Context(SimBackend(world, rank), rank, world_size)
        ctx.auto = True
        pg._local.ctx = ctx
        try:
            results[rank] = fn(*args)
        except BaseException as e:   # noqa: B036 -- reported to the caller, naming the rank
            errors[rank] = e
            world.fail(rank, e)
        finally:
            pg._local.ctx = pg._local.pending = None
            world.exit(rank)

    threads = [threading.Thread(target=body, args=(r,), name=f"minigrad-rank{r}", daemon=True)
               for r in range(world_size)]
    out = sys.stdout
    wrapped = not isinstance(out, _RankZeroStream)
    if wrapped:
        sys.stdout = _RankZeroStream(out)
    try:
        for t in threads:
            t.start()
        # ranks may compute as long as they like; once one has failed, the others get
        # ``timeout`` seconds to notice (they do at their next collective) before we give up
        failed_at = None
        for t in threads:
            while t.is_alive() and not (failed_at and time.monotonic() - failed_at > world.timeout):
                t.join(0.25)                       # returns as soon as the rank ends
                if errors and failed_at is None:
                    failed_at = time.monotonic()
    finally:
        if wrapped:
            sys.stdout = out
    if errors:
        raise _root_cause(errors)
    return results


def _root_cause(errors):
    """The error to report: a rank's own failure before the ones it caused in the others."""
    own = {r: e for r, e in errors.items() if not isinstance(e, pg.DistError)}
    if own:
        r = min(own)
        err = pg.RankError(r, f"rank {r} failed: {type(own[r]).__name__}: {own[r]}")
        err.exception = own[r]
        err.__cause__ = own[r]
        return err
    timeouts = [e for e in errors.values() if isinstance(e, pg.DistTimeoutError)]
    return timeouts[0] if timeouts else errors[min(errors)]
