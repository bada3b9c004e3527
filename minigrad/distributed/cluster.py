"""A cluster of virtual GPUs in one process.

Each virtual GPU has a memory budget (every allocation is counted by kind,
and crossing the budget raises :class:`OutOfMemoryError` naming the GPU, what
it holds and the request), a clock per stream (``compute`` and ``comm``, so
communication can overlap computation as on a real GPU), and a speed in
FLOP/s. GPUs exchange data only through :meth:`VirtualCluster.communicate`:
explicit messages, packed into packet buffers with a checksum
(:mod:`minigrad.distributed.kernels`), charged in bytes and in time.

Time of a message of ``n`` bytes over a link: the alpha-beta (latency-
bandwidth) model, ``alpha + n / beta`` (Hockney 1994). A GPU has one send
port and one receive port (full duplex): two messages leaving the same GPU
are sent one after the other.

Every event (compute, and each message on the sender's lane) goes into
``cluster.trace``; :func:`minigrad.viz.dist.timeline` draws it.
"""

from __future__ import annotations

import numbers
from collections import Counter
from dataclasses import dataclass

import numpy as np

from . import kernels

__all__ = ["VirtualCluster", "VirtualGPU", "OutOfMemoryError", "CommunicationError",
           "MessageLostError", "ChecksumError", "Event", "Work", "format_bytes"]


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB' (powers of 1024, as memory is sold)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


class OutOfMemoryError(MemoryError):
    """A virtual GPU was asked for more memory than its budget has left."""


class CommunicationError(RuntimeError):
    """A message did not arrive intact; the arrays of that collective are undefined."""


class MessageLostError(CommunicationError):
    pass


class ChecksumError(CommunicationError):
    pass


@dataclass(frozen=True)
class Event:
    """One bar of the timeline: ``rank``'s ``stream`` was busy with ``kind`` from ``start``."""
    rank: int
    stream: str        # "compute" or "comm"
    start: float       # seconds of simulated time
    duration: float
    kind: str          # "forward", "backward", "optimizer", "all_reduce", ...
    label: str = ""


class VirtualGPU:
    """One GPU: its memory ledger and its clocks.

    ``alloc(name, nbytes, kind)`` books memory (kinds such as "parameters",
    "gradients", "optimizer states", "activations", "buffers"); ``free(name)``
    returns it. ``memory_by_kind()`` says what is held; ``peak`` is the most
    ever held at once.
    """

    def __init__(self, rank: int, memory_limit, flops_per_second: float):
        self.rank = rank
        self.memory_limit = memory_limit
        self.flops_per_second = flops_per_second
        self.slowdown = 1.0          # > 1: a straggler
        self.clock = 0.0             # the compute stream, seconds
        self.comm_clock = 0.0        # the communication stream
        self._allocs: dict = {}      # name -> (kind, nbytes)
        self.used = 0
        self.peak = 0

    def __repr__(self):
        limit = "unlimited" if self.memory_limit is None else format_bytes(self.memory_limit)
        return f"VirtualGPU(rank={self.rank}, used={format_bytes(self.used)}, limit={limit})"

    def alloc(self, name: str, nbytes, kind: str) -> None:
        """Book ``nbytes`` (an int, or an array whose ``nbytes`` is used) under ``name``."""
        if isinstance(nbytes, np.ndarray):
            nbytes = nbytes.nbytes
        nbytes = int(nbytes)
        if name in self._allocs:
            raise ValueError(f"GPU {self.rank}: {name!r} is already allocated")
        if self.memory_limit is not None and self.used + nbytes > self.memory_limit:
            held = ", ".join(f"{k} {format_bytes(v)}" for k, v in self.memory_by_kind().items())
            raise OutOfMemoryError(
                f"GPU {self.rank} out of memory: tried to allocate {format_bytes(nbytes)} "
                f"for {name!r} ({kind}); it holds {format_bytes(self.used)} of "
                f"{format_bytes(self.memory_limit)} ({held or 'nothing'}), "
                f"{format_bytes(self.memory_limit - self.used)} free")
        self._allocs[name] = (kind, nbytes)
        self.used += nbytes
        self.peak = max(self.peak, self.used)

    def free(self, name: str) -> None:
        kind, nbytes = self._allocs.pop(name)
        self.used -= nbytes

    def holds(self, name: str) -> bool:
        return name in self._allocs

    def memory_by_kind(self) -> dict:
        """kind -> bytes held now."""
        out: dict = {}
        for kind, nbytes in self._allocs.values():
            out[kind] = out.get(kind, 0) + nbytes
        return out

    def reset_peak(self) -> None:
        self.peak = self.used


class Work:
    """What ``async_op=True`` returns (as ``torch.distributed``): the values are
    already there, ``wait()`` makes each GPU's compute stream wait for the
    communication to finish."""

    def __init__(self, cluster, ranks, finish):
        self.cluster, self.ranks, self.finish = cluster, list(ranks), dict(finish)

    def wait(self):
        for r in self.ranks:
            g = self.cluster.gpus[r]
            g.clock = max(g.clock, self.finish[r])
        return True


class CommStats:
    """Counters of the traffic: per-rank numpy arrays and a count of collective calls."""

    def __init__(self, world_size: int):
        self.world_size = world_size
        self.reset()

    def reset(self):
        self.bytes_sent = np.zeros(self.world_size, dtype=np.int64)
        self.bytes_received = np.zeros(self.world_size, dtype=np.int64)
        self.messages = np.zeros(self.world_size, dtype=np.int64)
        self.calls = Counter()

    def __repr__(self):
        return (f"CommStats(bytes_sent={self.bytes_sent.tolist()}, "
                f"messages={self.messages.tolist()}, calls={dict(self.calls)})")


class Faults:
    """Faults to inject into the next messages: ``drop`` one or ``corrupt`` one (flip a bit).

    ``src``/``dst`` of None match any GPU; ``after`` skips that many matching
    messages first. Each fault fires once.
    """

    def __init__(self):
        self.pending = []

    def drop(self, src=None, dst=None, after: int = 0):
        self.pending.append({"what": "drop", "src": src, "dst": dst, "after": after})

    def corrupt(self, src=None, dst=None, after: int = 0, word: int = 0, bit: int = 3):
        self.pending.append({"what": "corrupt", "src": src, "dst": dst, "after": after,
                             "word": word, "bit": bit})

    def clear(self):
        self.pending.clear()

    def _match(self, src, dst):
        for f in self.pending:
            if f["src"] in (None, src) and f["dst"] in (None, dst):
                if f["after"] > 0:
                    f["after"] -= 1
                    continue
                self.pending.remove(f)
                return f
        return None


class VirtualCluster:
    """``world_size`` virtual GPUs joined by alpha-beta links.

    Args:
        world_size: number of GPUs, >= 1.
        memory_per_gpu: bytes each GPU may hold, or None for no limit.
        latency: alpha, seconds per message (default 10 us, a PCIe/NVLink hop).
        bandwidth: beta, bytes per second per link (default 100 GB/s).
        gpus_per_node: with ``inter_node_latency``/``inter_node_bandwidth``,
            GPUs ``[k*g, (k+1)*g)`` share a node and links between nodes use
            the (slower) inter-node numbers. None: one flat topology.
        flops_per_second: compute speed of each GPU (default 100 TFLOP/s).
        packet_bytes: the size of one packet on the wire (see kernels).
        segment_bytes: a ring all-reduce of larger arrays moves its data one
            segment of this many bytes per GPU at a time (pipelining, as NCCL
            slices its rings), so the data a segment touches stays in cache;
            bytes and time are still charged for the whole messages.
        use_numba: None (default) follows ``minigrad.kernels``: the numba wire, or its
            NumPy reference under ``use("reference")``; True / False pick one for
            this cluster (a test or benchmark comparing them).

    Attributes:
        gpus: list of :class:`VirtualGPU`. stats: :class:`CommStats`.
        trace: list of :class:`Event`. faults: :class:`Faults`.
    """

    def __init__(self, world_size: int, memory_per_gpu=None, latency: float = 1e-5,
                 bandwidth: float = 1e11, gpus_per_node=None, inter_node_latency=None,
                 inter_node_bandwidth=None, flops_per_second: float = 1e14,
                 packet_bytes: int = 16 * 1024, segment_bytes: int = 2**19,
                 use_numba: bool | None = None):
        if not isinstance(world_size, numbers.Integral) or world_size < 1:
            raise ValueError(f"VirtualCluster: world_size must be an integer >= 1, got {world_size!r}")
        if memory_per_gpu is not None and memory_per_gpu < 0:
            raise ValueError(f"VirtualCluster: memory_per_gpu must be >= 0 or None, got {memory_per_gpu}")
        if latency < 0 or bandwidth <= 0:
            raise ValueError(f"VirtualCluster: need latency >= 0 and bandwidth > 0, got "
                             f"latency={latency}, bandwidth={bandwidth}")
        if gpus_per_node is not None and (gpus_per_node < 1 or world_size % gpus_per_node):
            raise ValueError(f"VirtualCluster: gpus_per_node must divide world_size={world_size}, "
                             f"got {gpus_per_node}")
        self.world_size = int(world_size)
        self.latency, self.bandwidth = float(latency), float(bandwidth)
        self.gpus_per_node = gpus_per_node
        self.inter_node_latency = latency if inter_node_latency is None else inter_node_latency
        self.inter_node_bandwidth = bandwidth if inter_node_bandwidth is None else inter_node_bandwidth
        self.packet_bytes = int(packet_bytes)
        self.segment_bytes = int(segment_bytes)
        self.use_numba = use_numba
        self.gpus = [VirtualGPU(r, memory_per_gpu, flops_per_second) for r in range(world_size)]
        self.stats = CommStats(world_size)
        self.trace: list = []
        self.faults = Faults()
        self.step_hooks: list = []   # called with the cluster after every communicate() step
        self._packets: dict = {}

    def __repr__(self):
        return (f"VirtualCluster(world_size={self.world_size}, latency={self.latency:g} s, "
                f"bandwidth={self.bandwidth:g} B/s)")

    # -- topology and cost model ------------------------------------------------------
    @property
    def topology(self) -> str:
        """'flat' (every pair of GPUs joined by the same link) or 'K nodes x G GPUs'."""
        if self.gpus_per_node is None:
            return "flat"
        return f"{self.world_size // self.gpus_per_node} nodes x {self.gpus_per_node} GPUs"

    def node_of(self, rank: int) -> int:
        return 0 if self.gpus_per_node is None else rank // self.gpus_per_node

    def link(self, src: int, dst: int) -> tuple:
        """(alpha seconds, beta bytes/s) of the link src -> dst."""
        if self.node_of(src) == self.node_of(dst):
            return self.latency, self.bandwidth
        return self.inter_node_latency, self.inter_node_bandwidth

    def message_time(self, nbytes: int, src: int = 0, dst: int = 1) -> float:
        """alpha + nbytes / beta on the link src -> dst."""
        alpha, beta = self.link(src, dst)
        return alpha + nbytes / beta

    @property
    def time(self) -> float:
        """Simulated seconds elapsed: the latest clock of any GPU on any stream."""
        return max(max(g.clock, g.comm_clock) for g in self.gpus)

    def set_slowdown(self, rank: int, factor: float) -> None:
        """Make GPU ``rank`` compute ``factor`` times slower (a straggler)."""
        self._check_rank(rank, "rank")
        if factor <= 0:
            raise ValueError(f"set_slowdown: factor must be > 0, got {factor}")
        self.gpus[rank].slowdown = float(factor)

    def reset(self) -> None:
        """Zero the clocks, counters and trace (memory ledgers are kept)."""
        for g in self.gpus:
            g.clock = g.comm_clock = 0.0
        self.stats.reset()
        self.trace.clear()

    def barrier(self, ranks=None) -> None:
        """Every GPU waits for the slowest (both streams)."""
        ranks = range(self.world_size) if ranks is None else ranks
        t = max(max(self.gpus[r].clock, self.gpus[r].comm_clock) for r in ranks)
        for r in ranks:
            self.gpus[r].clock = self.gpus[r].comm_clock = t

    def _check_rank(self, rank, name):
        if not isinstance(rank, numbers.Integral) or not 0 <= rank < self.world_size:
            raise ValueError(f"{name} must be a rank in [0, {self.world_size}), got {rank!r}")

    # -- compute -------------------------------------------------------------------------
    def compute(self, rank: int, flops: float, kind: str = "compute", label: str = "") -> float:
        """Advance GPU ``rank``'s compute stream by ``flops / flops_per_second * slowdown``."""
        g = self.gpus[rank]
        dur = flops / g.flops_per_second * g.slowdown
        self.trace.append(Event(rank, "compute", g.clock, dur, kind, label))
        g.clock += dur
        return dur

    # -- communication --------------------------------------------------------------------
    def begin(self, ranks) -> None:
        """A collective starts: its data is ready when each GPU's compute stream issued it."""
        for r in ranks:
            g = self.gpus[r]
            g.comm_clock = max(g.comm_clock, g.clock)

    def end(self, ranks, async_op: bool = False):
        """A collective ends: blocking, the compute stream waits for it; async, a Work handle."""
        work = Work(self, ranks, {r: self.gpus[r].comm_clock for r in ranks})
        if async_op:
            return work
        work.wait()
        return None

    def communicate(self, transfers, op: str = "copy", kind: str = "comm", label: str = "") -> list:
        """One step of a collective: point-to-point messages that travel at the same time.

        Each transfer ``(src, dst, src_array, dst_array)`` sends ``src_array``
        (1-D, contiguous) from GPU ``src`` to GPU ``dst``, which combines it
        into ``dst_array`` with ``op`` ("copy", "sum" or "max"). Messages of
        one step must not read what another message of the step writes (true
        of every algorithm in :mod:`minigrad.distributed.collectives`).

        :meth:`charge` books the bytes and the time, :meth:`deliver` moves the
        data. Returns each message's arrival time. Raises
        :class:`MessageLostError` or :class:`ChecksumError` when a fault hits
        a message.
        """
        arrivals = self.charge([(src, dst, a.nbytes) for src, dst, a, _ in transfers], kind, label)
        self.deliver(transfers, op, kind)
        for hook in self.step_hooks:
            hook(self)
        return arrivals

    def charge(self, messages, kind: str = "comm", label: str = "") -> list:
        """Book one step of messages ``(src, dst, nbytes)``: bytes, clocks and trace.

        A message starts when its sender's comm stream, its sender's send port
        and its receiver's receive port are all free, and lasts
        ``alpha + nbytes / beta``. Returns each message's arrival time.
        """
        start_clock = {r: self.gpus[r].comm_clock for m in messages for r in m[:2]}
        send_free, recv_free, finish, arrivals = {}, {}, dict(start_clock), []
        for src, dst, nbytes in messages:
            start = max(start_clock[src], send_free.get(src, 0.0), recv_free.get(dst, 0.0))
            dur = self.message_time(nbytes, src, dst)
            send_free[src] = recv_free[dst] = start + dur
            finish[src] = max(finish[src], start + dur)
            finish[dst] = max(finish[dst], start + dur)
            arrivals.append(start + dur)
            self.trace.append(Event(src, "comm", start, dur, kind, label or f"-> {dst}"))
            self.stats.bytes_sent[src] += nbytes
            self.stats.bytes_received[dst] += nbytes
            self.stats.messages[src] += 1
        for r, t in finish.items():
            self.gpus[r].comm_clock = t
        return arrivals

    def post(self, src: int, dst: int, src_array, dst_array, kind: str = "p2p") -> float:
        """One point-to-point message on its own (``send`` of a process group); its arrival time.

        It leaves when GPU ``src``'s data is ready (its compute clock) and its
        comm stream is free, and lasts ``alpha + nbytes / beta``; only the
        sender's stream is booked. The receiver's clocks are left alone: its
        ``recv`` waits for the arrival when its own program gets there (ranks
        posting messages out of simulated-time order must not delay each other's
        receive ports). The data moves through the wire as in :meth:`communicate`.
        """
        g = self.gpus[src]
        start = max(g.comm_clock, g.clock)
        dur = self.message_time(src_array.nbytes, src, dst)
        self.trace.append(Event(src, "comm", start, dur, kind, f"-> {dst}"))
        self.stats.bytes_sent[src] += src_array.nbytes
        self.stats.bytes_received[dst] += src_array.nbytes
        self.stats.messages[src] += 1
        g.comm_clock = start + dur
        self.deliver([(src, dst, src_array, dst_array)], "copy", kind)
        return start + dur

    def deliver(self, transfers, op: str = "copy", kind: str = "comm") -> None:
        """Move the data of ``(src, dst, src_array, dst_array)`` transfers through the wire."""
        code = kernels.OP_CODES[op]
        for src, dst, a, b in transfers:
            self._deliver(src, dst, a, b, code, kind)

    def _deliver(self, src, dst, a, b, code, kind):
        # called once per message (thousands per large all-reduce): kept lean
        if a.shape != b.shape or a.dtype != b.dtype:
            raise ValueError(f"communicate: message of shape {a.shape} {a.dtype} does not fit "
                             f"the receiving array of shape {b.shape} {b.dtype}")
        flip_word, flip_mask = -1, 0
        if self.faults.pending:
            fault = self.faults._match(src, dst)
            if fault is not None and fault["what"] == "drop":
                raise MessageLostError(f"{kind}: the message from GPU {src} to GPU {dst} "
                                       f"({format_bytes(a.nbytes)}) never arrived (dropped); "
                                       f"the collective is aborted")
            if fault is not None:
                flip_word = min(fault["word"], a.size - 1)
                flip_mask = 1 << (fault["bit"] % (8 * a.itemsize))
        if a.size == 0:
            return
        buf, buf_words = self._packet_buffer(src, a.dtype)
        wtype = buf_words.dtype.type
        # numba has no float16: half-precision messages take the NumPy path
        if self._numba() and a.dtype.char in kernels.NUMBA_CHARS:
            bad = kernels.transfer(a, a.view(wtype), b, buf, buf_words, code, flip_word,
                                   wtype(flip_mask))
        else:
            bad = kernels.transfer_reference(a, a.view(wtype), b, buf, buf_words, code, flip_word,
                                             flip_mask)
        if bad >= 0:
            raise ChecksumError(f"{kind}: packet {bad} of the message from GPU {src} to GPU "
                                f"{dst} failed its checksum (corrupted on the wire); "
                                f"the collective is aborted instead of using a wrong value")

    def _numba(self) -> bool:
        """Whether the wire runs in numba: ``use_numba``, or the library switch when None."""
        if self.use_numba is None:
            from .. import kernels as switch
            return switch.fast()
        return bool(self.use_numba)

    def deliver_ring_segments(self, flats, seg: int, op: str, kind: str = "all_reduce") -> bool:
        """Move a segmented ring all-reduce's data in one numba call, if it may.

        The same messages, packets and checksums as delivering every ring
        step (:func:`kernels.ring_segments` equals its reference), but
        without a Python call per message, and with independent segments run
        on all cores. Only when nothing needs one message at a time: numba
        on, a dtype numba handles, no fault armed. Returns whether it ran;
        if not, the caller delivers step by step.
        """
        dtype = flats[0].dtype
        if not hasattr(kernels, "ring_segments"):
            return False   # a release that stubs the ring: its steps run the student's code
        if not self._numba() or dtype.char not in kernels.NUMBA_CHARS or self.faults.pending:
            return False
        bufs, buf_words = self._worker_packet_buffers(dtype)
        code = kernels.OP_CODES[op]
        if kernels.ring_segments(flats, [kernels.words(f) for f in flats], seg, bufs, buf_words,
                                 code) >= 0:
            raise ChecksumError(f"{kind}: a packet of the ring failed its checksum "
                                f"(corrupted on the wire); the collective is aborted")
        return True

    def _packet_buffers(self, key, rows, dtype):
        """``rows`` packet buffers for ``dtype`` (a (rows, packet) array, or (packet,) when
        rows is None) and their words view, made once per ``key``."""
        got = self._packets.get(key)
        if got is None:
            packet = max(1, self.packet_bytes // dtype.itemsize)
            buf = np.empty(packet if rows is None else (rows, packet), dtype=dtype)
            got = self._packets[key] = (buf, kernels.words(buf))
        return got

    def _packet_buffer(self, rank, dtype):
        """GPU ``rank``'s packet buffer for ``dtype`` and its words view."""
        return self._packet_buffers((rank, dtype.char), None, dtype)

    def _worker_packet_buffers(self, dtype):
        """One packet buffer per numba worker thread for ``dtype``, (threads, packet)."""
        import numba
        threads = numba.get_num_threads()
        return self._packet_buffers(("workers", dtype.char, threads), threads, dtype)

    # -- collectives as methods (the definitions live in collectives.py) -------------------
    def broadcast(self, tensors, src=0, algorithm="tree", group=None, async_op=False):
        from .collectives import broadcast
        return broadcast(self, tensors, src, algorithm, group, async_op)

    def reduce(self, tensors, dst=0, op="sum", algorithm="tree", group=None, async_op=False):
        from .collectives import reduce
        return reduce(self, tensors, dst, op, algorithm, group, async_op)

    def all_reduce(self, tensors, op="sum", algorithm="ring", group=None, async_op=False):
        from .collectives import all_reduce
        return all_reduce(self, tensors, op, algorithm, group, async_op)

    def reduce_scatter(self, tensors, op="sum", algorithm="ring", group=None, async_op=False):
        from .collectives import reduce_scatter
        return reduce_scatter(self, tensors, op, algorithm, group, async_op)

    def all_gather(self, tensors, algorithm="ring", group=None, async_op=False):
        from .collectives import all_gather
        return all_gather(self, tensors, algorithm, group, async_op)

    def all_to_all(self, tensors, group=None, async_op=False):
        from .collectives import all_to_all
        return all_to_all(self, tensors, group, async_op)
