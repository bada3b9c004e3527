"""Distributed training (chapter 8): one per-rank program, on virtual GPUs or real processes.

``import minigrad.distributed as dist`` is shaped like ``torch.distributed``:
``dist.init_process_group(backend="sim"|"mpi")``, ``dist.get_rank()``,
``dist.all_reduce(x, op=dist.ReduceOp.SUM)`` and the other collectives, on
ndarrays and Tensors (:mod:`.process_group`). Scripts run with
``minigrad launch -n 4 [--backend mpi|sim] script.py`` (:mod:`.launch`).

One file per idea, in the order the chapter tells it:

- ``cluster``: virtual GPUs with memory budgets, alpha-beta links, clocks, a trace.
- ``kernels``: the wire (packets with checksums), numba beside a NumPy reference.
- ``collectives``: the whole-cluster algorithms (one array per GPU): ring / tree /
  naive broadcast, reduce, all_reduce, reduce_scatter, all_gather, all_to_all.
- ``process_group``: the per-rank API; ``backend_sim`` (ranks as threads meeting
  in the cluster's collectives), ``backend_mpi`` (mpi4py; the ring on Sendrecv);
  ``launch``.
- ``parameter_server``, ``ddp``: data parallelism.
- ``zero``: ZeRO-1/2/3 and FSDP, hybrid sharding.
- ``pipeline``: GPipe and 1F1B schedules, the bubble.
- ``tensor_parallel``: column/row-parallel Linear, TP MLP and attention, sequence parallelism.
- ``spmd``: the same parallelisms written once per rank on the process-group API.
- ``strategy``: which parallelism to choose.
"""

from .cluster import (ChecksumError, CommunicationError, Event, MessageLostError,
                      OutOfMemoryError, VirtualCluster, VirtualGPU, format_bytes)
from .collectives import alpha_beta_time, chunk_bounds, ring_all_reduce_bytes
from .process_group import (DistError, DistTimeoutError, Group, RankError, ReduceOp, Work,
                            all_gather, all_gather_into_tensor, all_reduce, all_to_all, barrier,
                            book, broadcast, charge_compute, comm_stats, destroy_process_group,
                            get_backend, get_rank, get_world_size, init_process_group, irecv,
                            is_initialized, isend, new_group, print0, progress, recv, reduce,
                            reduce_scatter, reduce_scatter_tensor, ring_all_reduce, send,
                            simulated_gpu, spawn, unbook)

__all__ = ["VirtualCluster", "VirtualGPU", "OutOfMemoryError", "CommunicationError",
           "MessageLostError", "ChecksumError", "Event", "Work", "format_bytes",
           "chunk_bounds", "ring_all_reduce_bytes", "alpha_beta_time",
           "ReduceOp", "Group", "DistError", "RankError", "DistTimeoutError",
           "init_process_group", "destroy_process_group", "is_initialized", "get_backend",
           "get_rank", "get_world_size", "new_group", "all_reduce", "reduce", "broadcast",
           "all_gather", "all_gather_into_tensor", "reduce_scatter", "reduce_scatter_tensor",
           "all_to_all", "barrier", "send", "recv", "isend", "irecv", "ring_all_reduce",
           "comm_stats", "simulated_gpu", "charge_compute", "book", "unbook", "progress",
           "print0", "spawn"]
