"""Chapter 8's parallelisms written once, per rank, on the process-group API.

Each class is what one rank runs (SPMD): it holds only that rank's part of
the model and talks to the others through :mod:`minigrad.distributed`'s
collectives, visible at the call site. The same code runs on
``backend="sim"`` (virtual GPUs: memory booked, clocks, bytes, faults) and
on ``backend="mpi"`` (real processes). One file per parallelism:

- ``ddp``: DistributedDataParallel, gradient buckets all-reduced
  asynchronously from per-layer backward hooks (overlap).
- ``zero``: ZeRO stages 1, 2, 3 and FullyShardedDataParallel (stage 3).
- ``pipeline``: GPipe and 1F1B over send/recv.
- ``tensor_parallel``: column/row-parallel Linear, the Megatron MLP, sequence parallelism.

A model is a ``Sequential`` run layer by layer (:mod:`.layers`): minigrad's
autograd has no gradient hooks, so backward runs one layer at a time and
the hooks fire after each layer, where PyTorch's post-accumulate-grad hooks
would.
"""

from .ddp import DistributedDataParallel
from .pipeline import PipelineStage
from .tensor_parallel import (ColumnParallelLinear, RowParallelLinear, TensorParallelMLP,
                              gather_along_dim, reduce_scatter_along_dim)
from .zero import FullyShardedDataParallel, ZeroDataParallel

__all__ = ["DistributedDataParallel", "ZeroDataParallel", "FullyShardedDataParallel",
           "PipelineStage", "ColumnParallelLinear", "RowParallelLinear", "TensorParallelMLP",
           "gather_along_dim", "reduce_scatter_along_dim"]
