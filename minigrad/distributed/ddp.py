"""Data parallelism with all-reduce: DistributedDataParallel (Li et al. 2020).

Every GPU holds a full replica of the model and the optimizer, and takes a
different slice of the batch. After backward each gradient is averaged over
the GPUs with an all-reduce, so every replica applies the same update and
the replicas stay identical: training on p GPUs with p slices of a batch is
training on the whole batch (for a loss that is a mean over examples).

PyTorch's two tricks, both here:
- buckets: gradients are all-reduced in groups of about ``bucket_cap_bytes``
  (one large message costs one latency, many small ones many);
- overlap: a bucket is all-reduced as soon as its last gradient exists,
  while backward goes on with earlier layers (``async_op=True``).

To know when a gradient exists, the replica is a ``Sequential`` walked layer
by layer: each layer's backward runs on its own (the input of each layer is
a leaf), last layer first, and a bucket is sent the moment its layers are
done -- what PyTorch does with autograd hooks.

The ranks run in lockstep inside one process: layer k's backward runs on
every GPU, then the buckets it completed are all-reduced.
"""

from __future__ import annotations

import copy

import numpy as np

from ..nn import Linear, Sequential
from ..tensor import Tensor
from .cluster import VirtualCluster

__all__ = ["DistributedDataParallel", "replicate", "split_batch", "layer_flops",
           "flatten", "unflatten_into", "max_divergence", "ddp_vs_one_gpu"]


# ----------------------------------------------------------------------------
# helpers shared by the data-parallel strategies
# ----------------------------------------------------------------------------

def replicate(model, cluster: VirtualCluster, ranks=None) -> list:
    """One independent copy of ``model`` per rank, made equal by a broadcast from rank 0.

    (Deep copies start equal already; the broadcast is what a real cluster
    needs, so its bytes are counted.)
    """
    ranks = list(range(cluster.world_size)) if ranks is None else list(ranks)
    replicas = [copy.deepcopy(model) for _ in ranks]
    flats = [flatten([p.data for p in r.parameters()]) for r in replicas]
    cluster.broadcast(flats, src=0, group=ranks)
    for rep, f in zip(replicas, flats):
        unflatten_into(f, [p.data for p in rep.parameters()])
    return replicas


def split_batch(x: np.ndarray, p: int) -> list:
    """Split a batch into p equal slices along axis 0 (equal, so a mean of means is the mean)."""
    x = np.asarray(getattr(x, "data", x))
    if x.shape[0] % p:
        raise ValueError(f"split_batch: batch size {x.shape[0]} must be divisible by the number "
                         f"of GPUs {p}, so every GPU's mean loss weighs the same")
    return np.split(x, p)


def flatten(arrays) -> np.ndarray:
    """Concatenate arrays into one flat buffer (a bucket)."""
    return np.concatenate([np.ravel(a) for a in arrays]) if arrays else np.zeros(0)


def unflatten_into(flat: np.ndarray, arrays) -> None:
    """Copy consecutive pieces of ``flat`` back into ``arrays`` (in place)."""
    i = 0
    for a in arrays:
        a[...] = flat[i:i + a.size].reshape(a.shape)
        i += a.size


def layer_flops(layer, rows: int, in_features: int) -> float:
    """FLOPs of one layer's forward on ``rows`` rows: 2 * rows * in * out for Linear,
    one per element otherwise. Backward costs twice the forward (two matmuls)."""
    if isinstance(layer, Linear):
        return 2.0 * rows * layer.in_features * layer.out_features
    return float(rows * in_features)


def max_divergence(replicas) -> float:
    """Largest |difference| between any replica's parameters and replica 0's."""
    ref = [p.data for p in replicas[0].parameters()]
    return max((float(np.max(np.abs(p.data - r))) for rep in replicas[1:]
                for p, r in zip(rep.parameters(), ref)), default=0.0)


def _layers(model):
    if not isinstance(model, Sequential):
        raise TypeError(f"expected a Sequential model (walked layer by layer), got {type(model).__name__}")
    return list(model)


def forward_layer(layer, k, x, cluster, rank, tag=""):
    """Layer k on input array x as a leaf (so its gradient can be read); returns (leaf, output).

    Charges the forward FLOPs to GPU ``rank`` and books the output as activations.
    """
    h_in = Tensor(x, requires_grad=k > 0 and np.asarray(x).dtype.kind == "f")
    out = layer(h_in)
    rows = int(np.prod(h_in.shape[:-1]))
    cluster.compute(rank, layer_flops(layer, rows, h_in.shape[-1]), "forward", f"L{k}")
    cluster.gpus[rank].alloc(f"{tag}act{k}", out.data, "activations")
    return h_in, out


def forward_layers(layers, x, cluster, rank, tag=""):
    """Run layers one by one (see :func:`forward_layer`); returns (inputs, outputs) per layer."""
    ins, outs = [], []
    for k, layer in enumerate(layers):
        h_in, out = forward_layer(layer, k, x, cluster, rank, tag)
        ins.append(h_in)
        outs.append(out)
        x = out.data
    return ins, outs


def backward_layer(layer, k, h_in, out, grad, cluster, rank, tag=""):
    """Backward of layer k alone; returns the gradient for layer k - 1's output."""
    out.backward(grad)
    rows = int(np.prod(h_in.shape[:-1]))
    cluster.compute(rank, 2 * layer_flops(layer, rows, h_in.shape[-1]), "backward", f"L{k}")
    cluster.gpus[rank].free(f"{tag}act{k}")
    return h_in.grad


def loss_and_grad(out: Tensor, y, loss_fn):
    """loss_fn on a leaf copy of ``out``; returns (loss value, d loss / d out)."""
    leaf = Tensor(out.data, requires_grad=True)
    loss = loss_fn(leaf, y)
    loss.backward()
    return float(loss.item()), leaf.grad


# ----------------------------------------------------------------------------
# DDP
# ----------------------------------------------------------------------------

class DistributedDataParallel:
    """One replica per GPU; bucketed, overlapped gradient all-reduce.

    Args:
        model: a ``Sequential`` (e.g. ``nn.MLP``); replicated to every GPU.
        cluster: the :class:`VirtualCluster`.
        make_optimizer: ``params -> Optimizer``, called once per replica.
        bucket_cap_bytes: gradients are sent in buckets of about this size
            (PyTorch's default is 25 MB).
        overlap: True sends each bucket as soon as it is ready; False waits
            for the whole backward first (to see what overlap buys).
        algorithm: the all-reduce algorithm.

    Memory booked on each GPU: parameters, gradients (the bucket buffers),
    optimizer states (after the first step), activations (during a step).
    """

    def __init__(self, model, cluster: VirtualCluster, make_optimizer, bucket_cap_bytes=25 * 2**20,
                 overlap: bool = True, algorithm: str = "ring"):
        self.cluster = cluster
        self.ranks = list(range(cluster.world_size))
        self.replicas = replicate(model, cluster)
        self.layers = [_layers(r) for r in self.replicas]
        self.optimizers = [make_optimizer(list(r.parameters())) for r in self.replicas]
        self.overlap, self.algorithm = overlap, algorithm
        # buckets in the order gradients appear: last layer first
        n_layers = len(self.layers[0])
        self.buckets, current, size = [], [], 0
        for k in reversed(range(n_layers)):
            params = list(self.layers[0][k].parameters())
            if not params:
                continue
            current.append(k)
            size += sum(p.data.nbytes for p in params)
            if size >= bucket_cap_bytes:
                self.buckets.append(current)
                current, size = [], 0
        if current:
            self.buckets.append(current)
        for r in self.ranks:
            g = cluster.gpus[r]
            nbytes = sum(p.data.nbytes for p in self.replicas[r].parameters())
            g.alloc("ddp.parameters", nbytes, "parameters")
            g.alloc("ddp.gradients", nbytes, "gradients")
        self.step_count = 0

    def _bucket_params(self, r, b):
        return [p for k in self.buckets[b] for p in self.layers[r][k].parameters()]

    def train_step(self, x, y, loss_fn, skip_sync=()) -> float:
        """One step on the batch (x, y), split evenly over the GPUs; returns the mean loss.

        ``skip_sync``: ranks that (wrongly) skip the all-reduce and step on their
        local gradient only, to watch the replicas drift apart.
        """
        p = len(self.ranks)
        xs, ys = split_batch(x, p), split_batch(y, p)
        synced = [r for r in self.ranks if r not in set(skip_sync)]
        for opt in self.optimizers:
            opt.zero_grad()
        state = []
        losses = []
        for r in self.ranks:                                   # forward + loss on every GPU
            ins, outs = forward_layers(self.layers[r], xs[r], self.cluster, r, "ddp.")
            loss, g = loss_and_grad(outs[-1], ys[r], loss_fn)
            losses.append(loss)
            state.append([ins, outs, g])
        works, flats = [], {}
        for k in reversed(range(len(self.layers[0]))):        # backward, layer by layer
            for r in self.ranks:
                ins, outs, g = state[r]
                state[r][2] = backward_layer(self.layers[r][k], k, ins[k], outs[k], g, self.cluster, r,
                                             "ddp.")
            for b, layer_ids in enumerate(self.buckets):
                if layer_ids[-1] == k and self.overlap:          # this bucket just completed
                    works.append(self._sync_bucket(b, synced, flats))
        if not self.overlap:
            for b in range(len(self.buckets)):
                works.append(self._sync_bucket(b, synced, flats))
        for w in works:                                          # wait before the update
            if w is not None:
                w.wait()
        for b, arrays in flats.items():
            for i, r in enumerate(synced):
                unflatten_into(arrays[i], [q.grad for q in self._bucket_params(r, b)])
        for r in self.ranks:
            self.optimizers[r].step()
            self.cluster.compute(r, 4.0 * sum(q.numel() for q in self.replicas[r].parameters()),
                                 "optimizer", "step")
            g = self.cluster.gpus[r]
            if g.holds("ddp.optimizer"):
                g.free("ddp.optimizer")
            g.alloc("ddp.optimizer", self.optimizers[r].state_bytes(), "optimizer states")
        self.step_count += 1
        return float(np.mean(losses))

    def _sync_bucket(self, b, synced, flats):
        if len(synced) < 2:
            return None
        # BEGIN SOLUTION ch8.ddp_bucket_allreduce
        arrays = [flatten([q.grad for q in self._bucket_params(r, b)]) for r in synced]
        _, work = self.cluster.all_reduce(arrays, op="mean", algorithm=self.algorithm,
                                          group=synced, async_op=True)
        # END SOLUTION
        flats[b] = arrays
        return work

    def replicas_in_sync(self, atol: float = 0.0) -> bool:
        return max_divergence(self.replicas) <= atol


def ddp_vs_one_gpu(model, cluster: VirtualCluster, make_optimizer, x, y, loss_fn, steps: int,
                   **ddp_kwargs):
    """Train ``model`` with DDP on ``cluster`` and a copy of it on one GPU on the whole
    batch, side by side for ``steps`` steps; the DDP wrapper and the largest
    |weight difference| between the last replica and the single-GPU model.

    DDP sums the shards' gradients, so the two should agree to rounding. Each
    step starts on a clean clock (``cluster.reset()``), so the trace afterwards
    is the last step's.
    """
    serial = copy.deepcopy(model)
    ddp = DistributedDataParallel(model, cluster, make_optimizer, **ddp_kwargs)
    opt = make_optimizer(list(serial.parameters()))
    for _ in range(steps):
        cluster.reset()
        ddp.train_step(x, y, loss_fn)
        opt.zero_grad()
        loss_fn(serial(Tensor(x)), y).backward()
        opt.step()
    diff = max(float(np.abs(a.data - b.data).max())
               for a, b in zip(ddp.replicas[-1].parameters(), serial.parameters()))
    return ddp, diff
