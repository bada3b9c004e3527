"""Tensor parallelism (Megatron-LM) and sequence parallelism, per rank.

Rank r keeps a slice of each weight (built from the full ``nn.Linear``,
the same on every rank):

- ``ColumnParallelLinear``: rows ``chunk_bounds(out, p)[r:r+2]`` of W (and b):
  y_r = x W_r^T + b_r, a slice of the outputs, no communication.
- ``RowParallelLinear``: columns of W: y = sum_r x_r W_r^T + b, an all-reduce.

Megatron's conjugate pair, each a visible collective:
  f = ``copy_to_tensor_parallel``: forward identity, backward all-reduce;
  g = ``reduce_from_tensor_parallel``: forward all-reduce, backward identity.
Sequence parallelism (Korthikanti et al. 2022) swaps them for
``gather_along_dim`` (forward all-gather, backward reduce-scatter) and
``reduce_scatter_along_dim`` (the reverse), along the sequence dim.
"""

from __future__ import annotations

import numpy as np

from ... import functional as F
from ...autograd import Function
from ...nn import Parameter
from .. import process_group as dist
from ..collectives import chunk_bounds

__all__ = ["copy_to_tensor_parallel", "reduce_from_tensor_parallel", "gather_along_dim",
           "reduce_scatter_along_dim", "ColumnParallelLinear", "RowParallelLinear",
           "TensorParallelMLP"]


def _summed(a, group):
    out = np.ascontiguousarray(a).copy()
    dist.all_reduce(out, group=group)
    return out


class _CopyTo(Function):
    @staticmethod
    def forward(ctx, x, group=None):
        ctx.group = group
        return x.copy()

    @staticmethod
    def backward(ctx, g):
        return _summed(g, ctx.group)


class _ReduceFrom(Function):
    @staticmethod
    def forward(ctx, x, group=None):
        return _summed(x, group)

    @staticmethod
    def backward(ctx, g):
        return g


def _bounds(n, group):
    p = dist.get_world_size(group)
    return chunk_bounds(n, p)


def _all_gather_dim(a, dim, group):
    """Concatenate every rank's ``a`` along ``dim`` (sizes may differ by chunk_bounds)."""
    moved = np.ascontiguousarray(np.moveaxis(a, dim, 0))
    p = dist.get_world_size(group)
    counts = np.empty(p, np.int64)
    dist.all_gather(list(counts.reshape(p, 1)), np.array([moved.shape[0]], np.int64), group=group)
    sizes = [int(c) for c in counts]
    outs = [np.empty((n,) + moved.shape[1:], a.dtype) for n in sizes]
    dist.all_gather(outs, moved, group=group)
    return np.moveaxis(np.concatenate(outs), 0, dim)


def _reduce_scatter_dim(a, dim, group):
    """Sum over ranks, rank r keeps rows chunk_bounds(n, p)[r:r+2] of ``dim``."""
    moved = np.ascontiguousarray(np.moveaxis(a, dim, 0))
    b = _bounds(moved.shape[0], group)
    me = dist.get_rank(group)
    ins = [moved[b[j]:b[j + 1]] for j in range(len(b) - 1)]
    out = np.empty_like(ins[me])
    dist.reduce_scatter(out, ins, group=group)
    return np.ascontiguousarray(np.moveaxis(out, 0, dim))


class _Gather(Function):
    @staticmethod
    def forward(ctx, x, dim=1, group=None):
        ctx.dim, ctx.group = dim, group
        return _all_gather_dim(x, dim, group)

    @staticmethod
    def backward(ctx, g):
        return _reduce_scatter_dim(g, ctx.dim, ctx.group)


class _ReduceScatter(Function):
    @staticmethod
    def forward(ctx, x, dim=1, group=None):
        ctx.dim, ctx.group = dim, group
        return _reduce_scatter_dim(x, dim, group)

    @staticmethod
    def backward(ctx, g):
        return _all_gather_dim(g, ctx.dim, ctx.group)


def copy_to_tensor_parallel(x, group=None):
    """f: forward identity; backward all-reduce (sum) of the input gradient."""
    return _CopyTo.apply(x, group=group)


def reduce_from_tensor_parallel(x, group=None):
    """g: forward all-reduce (sum) of the partial outputs; backward identity."""
    return _ReduceFrom.apply(x, group=group)


def gather_along_dim(x, dim=1, group=None):
    """Forward all-gather along ``dim`` (this rank's chunk -> the whole); backward reduce-scatter."""
    return _Gather.apply(x, dim=dim, group=group)


def reduce_scatter_along_dim(x, dim=1, group=None):
    """Forward reduce-scatter along ``dim`` (sum, keep this rank's chunk); backward all-gather."""
    return _ReduceScatter.apply(x, dim=dim, group=group)


class ColumnParallelLinear:
    """This rank's rows of ``linear``: (..., in) -> (..., out_r)."""

    def __init__(self, linear, group=None):
        b = _bounds(linear.out_features, group)
        r = dist.get_rank(group)
        self.weight = Parameter(linear.weight.data[b[r]:b[r + 1]].copy())
        self.bias = None if linear.bias is None else Parameter(linear.bias.data[b[r]:b[r + 1]].copy())

    def parameters(self):
        return [q for q in (self.weight, self.bias) if q is not None]

    def __call__(self, x):
        return F.linear(x, self.weight, self.bias)


class RowParallelLinear:
    """This rank's columns of ``linear``: (..., in_r) -> (..., out) after the all-reduce g.

    ``reduce=False`` returns the partial sum (sequence parallelism reduce-scatters it).
    """

    def __init__(self, linear, group=None):
        b = _bounds(linear.in_features, group)
        r = dist.get_rank(group)
        self.group = group
        self.weight = Parameter(linear.weight.data[:, b[r]:b[r + 1]].copy())
        self.bias = None if linear.bias is None else Parameter(linear.bias.data.copy())

    def parameters(self):
        return [q for q in (self.weight, self.bias) if q is not None]

    def __call__(self, x, reduce=True):
        y = F.linear(x, self.weight)
        if not reduce:
            return y
        y = reduce_from_tensor_parallel(y, self.group)
        return y if self.bias is None else y + self.bias


class TensorParallelMLP:
    """fc2(act(fc1(x))), fc1 column- and fc2 row-parallel: one all-reduce forward, one backward.

    ``sequence_parallel=True``: the input is this rank's chunk of the sequence
    (dim 1, by chunk_bounds) and so is the output; the all-reduce becomes an
    all-gather before fc1 and a reduce-scatter after fc2 (the bias of fc2 is
    added after the reduce-scatter). The bias of fc2 is replicated: its
    gradient is the same on every rank without sequence parallelism; with it,
    sum it over ranks (``sync_replicated_grads``).
    """

    def __init__(self, fc1, fc2, activation: str = "gelu", sequence_parallel: bool = False,
                 group=None):
        if fc1.out_features < dist.get_world_size(group):
            raise ValueError(f"TensorParallelMLP: hidden size {fc1.out_features} < "
                             f"{dist.get_world_size(group)} ranks")
        self.fc1, self.fc2 = ColumnParallelLinear(fc1, group), RowParallelLinear(fc2, group)
        self.act = {"gelu": F.gelu, "relu": F.relu}[activation]
        self.sp, self.group = sequence_parallel, group

    def parameters(self):
        return self.fc1.parameters() + self.fc2.parameters()

    def __call__(self, x):
        if self.sp:
            x = gather_along_dim(x, 1, self.group)                  # (B, T_r, C) -> (B, T, C)
        else:
            x = copy_to_tensor_parallel(x, self.group)              # f
        h = self.act(self.fc1(x))                                   # (..., H_r)
        if not self.sp:
            return self.fc2(h)                                      # g: all-reduce
        y = reduce_scatter_along_dim(self.fc2(h, reduce=False), 1, self.group)   # (B, T_r, C)
        return y if self.fc2.bias is None else y + self.fc2.bias

    def sync_replicated_grads(self):
        """Sequence parallelism: each rank's bias gradient saw its tokens only: sum them."""
        b = self.fc2.bias
        if self.sp and b is not None and b.grad is not None:
            b.grad = _summed(b.grad, self.group)
