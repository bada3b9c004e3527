"""Distributed training on virtual GPUs (chapter 8).

One file per idea, in the order the chapter tells it:

- ``cluster``: virtual GPUs with memory budgets, alpha-beta links, clocks, a trace.
- ``kernels``: the wire (packets with checksums), numba beside a NumPy reference.
- ``collectives``: broadcast, reduce, all_reduce, reduce_scatter, all_gather,
  all_to_all, with ring / tree / naive algorithms.
- ``parameter_server``, ``ddp``: data parallelism.
- ``zero``: ZeRO-1/2/3 and FSDP, hybrid sharding.
- ``pipeline``: GPipe and 1F1B schedules, the bubble.
- ``tensor_parallel``: column/row-parallel Linear, TP MLP and attention, sequence parallelism.
- ``strategy``: which parallelism to choose.
"""

from .cluster import (ChecksumError, CommunicationError, Event, MessageLostError,
                      OutOfMemoryError, VirtualCluster, VirtualGPU, Work, format_bytes)
from .collectives import (all_gather, all_reduce, all_to_all, alpha_beta_time, broadcast,
                          chunk_bounds, reduce, reduce_scatter, ring_all_reduce_bytes)

__all__ = ["VirtualCluster", "VirtualGPU", "OutOfMemoryError", "CommunicationError",
           "MessageLostError", "ChecksumError", "Event", "Work", "format_bytes",
           "broadcast", "reduce", "all_reduce", "reduce_scatter", "all_gather", "all_to_all",
           "chunk_bounds", "ring_all_reduce_bytes", "alpha_beta_time"]
