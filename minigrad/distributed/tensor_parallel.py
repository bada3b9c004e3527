"""Tensor parallelism (Megatron-LM, Shoeybi et al. 2019) and sequence
parallelism (Korthikanti et al. 2022).

Split one Linear y = x W^T + b (W: (out, in)) over p GPUs two ways:

- column-parallel: GPU i holds rows W_i of W (a slice of the *outputs*) and
  computes y_i = x W_i^T + b_i from the full input x. No communication in
  forward; the outputs are sharded along the last dim.
- row-parallel: GPU i holds columns W_i of W (a slice of the *inputs*) and,
  given its slice x_i of the input, computes the partial sum x_i W_i^T; the
  full y = sum_i x_i W_i^T + b needs an all-reduce.

The MLP pairs them (column, then the activation on each shard, then row): one
all-reduce in forward and one in backward per MLP. Attention splits by heads
the same way (Q, K, V column-parallel, the output projection row-parallel).

Each rank holds its own tensors, as an SPMD program would: activations are
lists with one Tensor per rank. Megatron's conjugate operators move data
between the layouts, each a visible collective in forward and in backward:
  f  (copy_to_tensor_parallel):  forward identity,  backward all-reduce
  g  (reduce_from_tensor_parallel): forward all-reduce, backward identity
Sequence parallelism replaces g by a reduce-scatter along the sequence and f
by an all-gather, so LayerNorm and dropout run on 1/p of the tokens, and
their activations take 1/p of the memory.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..nn import Parameter
from ..tensor import Tensor
from .cluster import VirtualCluster
from .collectives import chunk_bounds

__all__ = ["split_linear_columns", "split_linear_rows", "copy_to_tensor_parallel",
           "reduce_from_tensor_parallel", "gather_along_dim", "reduce_scatter_along_dim",
           "column_parallel_linear", "row_parallel_linear", "TensorParallelMLP",
           "TensorParallelAttention", "SequenceParallelMLPBlock"]


# ----------------------------------------------------------------------------
# splitting the weights
# ----------------------------------------------------------------------------

def split_linear_columns(weight: np.ndarray, bias, p: int) -> list:
    """Column-parallel shards: GPU i gets (W[rows_i], b[rows_i]) -- a slice of the outputs.

    Args: weight (out, in), bias (out,) or None. Returns p pairs.
    """
    # BEGIN SOLUTION ch8.split_linear
    bounds = chunk_bounds(weight.shape[0], p)
    return [(weight[bounds[i]:bounds[i + 1]].copy(),
             None if bias is None else bias[bounds[i]:bounds[i + 1]].copy()) for i in range(p)]
    # END SOLUTION


def split_linear_rows(weight: np.ndarray, p: int) -> list:
    """Row-parallel shards: GPU i gets W[:, cols_i] -- a slice of the inputs. (in,) split by chunk_bounds."""
    bounds = chunk_bounds(weight.shape[1], p)
    return [weight[:, bounds[i]:bounds[i + 1]].copy() for i in range(p)]


# ----------------------------------------------------------------------------
# collectives as differentiable operations over the ranks' tensors
# ----------------------------------------------------------------------------

def _spmd_op(tensors, forward, backward, name):
    """p tensors in, p tensors out; ``forward``/``backward`` map lists of arrays to lists.

    The p outputs are rows of one hidden node, so backward sees every rank's
    gradient at once and can run a collective on them.
    """
    outs = forward([t.data for t in tensors])
    if len({o.shape for o in outs}) == 1:
        hub = Tensor._make(np.stack(outs), tuple(tensors),
                           lambda G: tuple(backward(list(G))), name)
        return [hub[i] for i in range(len(outs))]
    raise ValueError(f"{name}: the ranks' outputs must have one shape, got {[o.shape for o in outs]}")


def copy_to_tensor_parallel(cluster: VirtualCluster, xs: list, group=None) -> list:
    """Megatron's f: forward identity; backward all-reduce (sum) of the input gradients."""
    def backward(gs):
        gs = [np.ascontiguousarray(g) for g in gs]
        return cluster.all_reduce(gs, op="sum", group=group)
    return _spmd_op(xs, lambda a: [x.copy() for x in a], backward, "copy_to_tensor_parallel")


def reduce_from_tensor_parallel(cluster: VirtualCluster, ys: list, group=None) -> list:
    """Megatron's g: forward all-reduce (sum) of the partial outputs; backward identity."""
    def forward(a):
        return cluster.all_reduce([np.ascontiguousarray(x).copy() for x in a], op="sum", group=group)
    return _spmd_op(ys, forward, lambda gs: gs, "reduce_from_tensor_parallel")


def _along(fn, arrays, dim):
    moved = [np.ascontiguousarray(np.moveaxis(a, dim, 0)) for a in arrays]
    return [np.moveaxis(o, 0, dim) for o in fn(moved)]


def gather_along_dim(cluster: VirtualCluster, xs: list, dim: int, group=None) -> list:
    """Forward all-gather (concatenate the shards along ``dim``); backward reduce-scatter."""
    def forward(a):
        return _along(lambda m: cluster.all_gather(m, group=group), a, dim)

    def backward(gs):
        return _along(lambda m: cluster.reduce_scatter(m, op="sum", group=group), gs, dim)
    return _spmd_op(xs, forward, backward, "all_gather")


def reduce_scatter_along_dim(cluster: VirtualCluster, ys: list, dim: int, group=None) -> list:
    """Forward reduce-scatter (sum, then split along ``dim``); backward all-gather."""
    def forward(a):
        return _along(lambda m: cluster.reduce_scatter(m, op="sum", group=group), a, dim)

    def backward(gs):
        return _along(lambda m: cluster.all_gather(m, group=group), gs, dim)
    return _spmd_op(ys, forward, backward, "reduce_scatter")


def column_parallel_linear(xs: list, weights: list, biases: list) -> list:
    """y_i = x_i W_i^T + b_i on every rank: (..., in) -> (..., out / p)."""
    return [F.linear(x, w, b) for x, w, b in zip(xs, weights, biases)]


def row_parallel_linear(cluster: VirtualCluster, xs: list, weights: list, bias, group=None) -> list:
    """y = sum_i x_i W_i^T (an all-reduce) + b: (..., in / p) -> (..., out), replicated."""
    partial = [F.linear(x, w) for x, w in zip(xs, weights)]
    ys = reduce_from_tensor_parallel(cluster, partial, group)
    return ys if bias is None else [y + b for y, b in zip(ys, bias)]


# ----------------------------------------------------------------------------
# blocks
# ----------------------------------------------------------------------------

class TensorParallelMLP:
    """fc2(act(fc1(x))) with fc1 column-parallel and fc2 row-parallel over the cluster's GPUs.

    Built from two ordinary ``nn.Linear`` (fc1: C -> H, fc2: H -> C), whose
    weights are split; ``parameters(rank)`` are GPU ``rank``'s shards. The
    bias of fc2 is replicated (added once, after the all-reduce).
    Input: a list of p equal tensors (..., C); output: p equal tensors (..., C).
    """

    def __init__(self, fc1, fc2, cluster: VirtualCluster, activation: str = "gelu"):
        p = cluster.world_size
        if fc1.out_features != fc2.in_features:
            raise ValueError(f"TensorParallelMLP: fc1.out_features={fc1.out_features} must equal "
                             f"fc2.in_features={fc2.in_features}")
        if fc1.out_features < p:
            raise ValueError(f"TensorParallelMLP: hidden size {fc1.out_features} < {p} GPUs")
        self.cluster, self.p = cluster, p
        self.act = {"gelu": F.gelu, "relu": F.relu}[activation]
        col = split_linear_columns(fc1.weight.data, None if fc1.bias is None else fc1.bias.data, p)
        self.w1 = [Parameter(w) for w, _ in col]
        self.b1 = [None if b is None else Parameter(b) for _, b in col]
        self.w2 = [Parameter(w) for w in split_linear_rows(fc2.weight.data, p)]
        self.b2 = None if fc2.bias is None else [Parameter(fc2.bias.data.copy()) for _ in range(p)]

    def parameters(self, rank: int) -> list:
        ps = [self.w1[rank], self.b1[rank], self.w2[rank]] + ([self.b2[rank]] if self.b2 else [])
        return [q for q in ps if q is not None]

    def __call__(self, xs: list) -> list:
        xs = copy_to_tensor_parallel(self.cluster, xs)                       # f
        h = column_parallel_linear(xs, self.w1, self.b1)                     # (..., H/p) per rank
        h = [self.act(t) for t in h]
        return row_parallel_linear(self.cluster, h, self.w2, self.b2)        # g: all-reduce


class TensorParallelAttention:
    """Multi-head self-attention split by heads: GPU i owns heads [i*H/p, (i+1)*H/p).

    Q, K, V projections are column-parallel (their rows are grouped by head),
    attention runs on each GPU's heads alone, and the output projection is
    row-parallel followed by one all-reduce. Built from four ``nn.Linear``
    (C -> C), as an unsplit block would use them. Input/output: p tensors (B, T, C).
    """

    def __init__(self, q, k, v, o, n_heads: int, cluster: VirtualCluster, is_causal: bool = True):
        p = cluster.world_size
        C = q.in_features
        if n_heads % p or C % n_heads:
            raise ValueError(f"TensorParallelAttention: n_heads={n_heads} must be divisible by the "
                             f"{p} GPUs and divide the width {C}")
        self.cluster, self.p, self.n_heads, self.is_causal = cluster, p, n_heads, is_causal
        self.hd = C // n_heads

        def cols(lin):
            return split_linear_columns(lin.weight.data, None if lin.bias is None else lin.bias.data, p)
        self.wq, self.wk, self.wv = ([Parameter(w) for w, _ in cols(lin)] for lin in (q, k, v))
        self.bq, self.bk, self.bv = ([None if b is None else Parameter(b) for _, b in cols(lin)]
                                     for lin in (q, k, v))
        self.wo = [Parameter(w) for w in split_linear_rows(o.weight.data, p)]
        self.bo = None if o.bias is None else [Parameter(o.bias.data.copy()) for _ in range(p)]

    def parameters(self, rank: int) -> list:
        ps = [self.wq[rank], self.bq[rank], self.wk[rank], self.bk[rank], self.wv[rank],
              self.bv[rank], self.wo[rank]] + ([self.bo[rank]] if self.bo else [])
        return [q for q in ps if q is not None]

    def __call__(self, xs: list) -> list:
        xs = copy_to_tensor_parallel(self.cluster, xs)                       # f
        h = self.n_heads // self.p                                           # heads per GPU
        outs = []
        for r, x in enumerate(xs):
            B, T, _ = x.shape

            def heads(t, B=B, T=T):                          # (B, T, h*hd) -> (B, h, T, hd)
                return t.reshape(B, T, h, self.hd).transpose(1, 2)
            q = heads(F.linear(x, self.wq[r], self.bq[r]))
            k = heads(F.linear(x, self.wk[r], self.bk[r]))
            v = heads(F.linear(x, self.wv[r], self.bv[r]))
            a = F.scaled_dot_product_attention(q, k, v, is_causal=self.is_causal)
            outs.append(a.transpose(1, 2).reshape(B, T, h * self.hd))    # (B, T, C/p)
        return row_parallel_linear(self.cluster, outs, self.wo, self.bo)  # g: all-reduce


class SequenceParallelMLPBlock:
    """x + dropout(MLP(LayerNorm(x))), tensor-parallel, with or without sequence parallelism.

    Without it, every GPU runs LayerNorm and dropout on all T tokens
    (replicated work and memory). With it (Korthikanti et al. 2022), GPU i
    holds tokens chunk i of the sequence in those regions: the all-reduce
    after the row-parallel Linear becomes a reduce-scatter along the
    sequence, and an all-gather along the sequence feeds the column-parallel
    Linear -- the same bytes as the all-reduce, split in two.

    Activations of the norm/dropout region (LayerNorm input, the dropout
    mask and output) are booked on each GPU as "activations"; with sequence
    parallelism they take 1/p of the memory.

    Input/output: p tensors, (B, T, C) each, or (B, T/p, C) each with
    ``sequence_parallel=True`` (shards by ``chunk_bounds``).
    """

    def __init__(self, norm, fc1, fc2, cluster: VirtualCluster, sequence_parallel: bool = True,
                 dropout: float = 0.0):
        self.cluster, self.p = cluster, cluster.world_size
        self.sp, self.dropout = sequence_parallel, dropout
        self.mlp = TensorParallelMLP(fc1, fc2, cluster)
        self.norm_shape, self.eps = norm.normalized_shape, norm.eps
        self.ln_w = [Parameter(norm.weight.data.copy()) for _ in range(self.p)]
        self.ln_b = [Parameter(norm.bias.data.copy()) for _ in range(self.p)]

    def parameters(self, rank: int) -> list:
        return [self.ln_w[rank], self.ln_b[rank]] + self.mlp.parameters(rank)

    def _book(self, tag, arrays):
        for r, a in enumerate(arrays):
            g = self.cluster.gpus[r]
            if g.holds(tag):
                g.free(tag)
            g.alloc(tag, a, "activations")

    def __call__(self, xs: list) -> list:
        m = self.mlp
        self._book("sp.ln_input", [x.data for x in xs])
        hs = [F.layer_norm(x, self.norm_shape, w, b, self.eps)
              for x, w, b in zip(xs, self.ln_w, self.ln_b)]
        if self.sp:
            hs = gather_along_dim(self.cluster, hs, dim=1)                  # (B, T/p, C) -> (B, T, C)
        else:
            hs = copy_to_tensor_parallel(self.cluster, hs)                  # f
        h = [m.act(t) for t in column_parallel_linear(hs, m.w1, m.b1)]
        partial = [F.linear(t, w) for t, w in zip(h, m.w2)]
        if self.sp:
            ys = reduce_scatter_along_dim(self.cluster, partial, dim=1)     # (B, T, C) -> (B, T/p, C)
        else:
            ys = reduce_from_tensor_parallel(self.cluster, partial)         # g: all-reduce
        if m.b2 is not None:
            ys = [y + b for y, b in zip(ys, m.b2)]
        ys = [F.dropout(y, self.dropout) for y in ys]
        self._book("sp.dropout_out", [y.data for y in ys])
        return [x + y for x, y in zip(xs, ys)]

    def sync_norm_grads(self) -> None:
        """With sequence parallelism each GPU's LayerNorm saw only its tokens: sum the
        LayerNorm gradients over the GPUs (an all-reduce), as Megatron does."""
        for params in (self.ln_w, self.ln_b):
            grads = [np.ascontiguousarray(q.grad) for q in params]
            self.cluster.all_reduce(grads, op="sum")
            for q, g in zip(params, grads):
                q.grad = g

    def activation_bytes(self, rank: int = 0) -> int:
        """Bytes of the norm/dropout region's activations booked on GPU ``rank``."""
        return self.cluster.gpus[rank].memory_by_kind().get("activations", 0)
