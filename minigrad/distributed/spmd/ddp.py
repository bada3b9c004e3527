"""DistributedDataParallel, per rank (Li et al. 2020): what one rank of DDP runs.

Each rank holds a full replica (made equal by a broadcast from rank 0) and a
slice of the batch. Gradients are grouped into buckets of about
``bucket_cap_bytes`` in the order backward produces them (last layer
first); the moment a bucket's last gradient exists its hook launches
``all_reduce(bucket, op=AVG, async_op=True)`` and backward goes on with the
earlier layers while the bucket travels. Before the optimizer step every
rank waits for its buckets and copies the averages back. Averaging the
gradients of equal slices gives the gradient of the whole batch, so p ranks
train exactly like one process on the whole batch.
"""

from __future__ import annotations

import numpy as np

from .. import process_group as dist
from .layers import backward_layers, forward_layers, layers_of

__all__ = ["DistributedDataParallel", "flatten_into", "unflatten_from"]


def flatten_into(buf, arrays) -> None:
    i = 0
    for a in arrays:
        buf[i:i + a.size] = a.reshape(-1)
        i += a.size


def unflatten_from(buf, arrays) -> None:
    i = 0
    for a in arrays:
        a[...] = buf[i:i + a.size].reshape(a.shape)
        i += a.size


class DistributedDataParallel:
    """Wrap this rank's replica; ``loss = ddp.forward_backward(x_local, y_local, loss_fn)``.

    Args:
        module: a ``Sequential``; rank 0's weights are broadcast to all ranks.
        bucket_cap_bytes: gradient bucket size (PyTorch's default 25 MB).
        overlap: False waits for the whole backward before the first all-reduce.
        group: the data-parallel group (default: the world).
    """

    def __init__(self, module, bucket_cap_bytes: int = 25 * 2**20, overlap: bool = True,
                 group=None):
        self.module, self.group, self.overlap = module, group, overlap
        self.layers = layers_of(module)
        for q in module.parameters():                       # the replicas start equal
            dist.broadcast(q.data, src=group.ranks[0] if group else 0, group=group)
        self.buckets, current, size = [], [], 0             # layer ids, last layer first
        for k in reversed(range(len(self.layers))):
            if not list(self.layers[k].parameters()):
                continue
            current.append(k)
            size += sum(q.data.nbytes for q in self.layers[k].parameters())
            if size >= bucket_cap_bytes:
                self.buckets.append(current)
                current, size = [], 0
        if current:
            self.buckets.append(current)
        self.bufs = [np.zeros(sum(q.numel() for q in self._params(b)),
                              dtype=next(iter(module.parameters())).data.dtype)
                     for b in range(len(self.buckets))]
        nbytes = sum(q.data.nbytes for q in module.parameters())
        dist.book("ddp.parameters", nbytes, "parameters")
        dist.book("ddp.gradients", nbytes, "gradients")

    def _params(self, b):
        return [q for k in self.buckets[b] for q in self.layers[k].parameters()]

    def parameters(self):
        return self.module.parameters()

    def _launch(self, b, works):
        """The bucket's hook: flatten its gradients and start their all-reduce (AVG)."""
        flatten_into(self.bufs[b], [q.grad for q in self._params(b)])
        works[b] = dist.all_reduce(self.bufs[b], op=dist.ReduceOp.AVG, group=self.group,
                                   async_op=True)

    def forward_backward(self, x, y, loss_fn) -> float:
        """Forward and backward on this rank's slice; gradients averaged over the ranks.

        Returns this rank's loss (the caller all-reduces it if it wants the
        batch's). ``loss_fn`` must be a mean over examples and the slices equal.
        """
        saved = forward_layers(self.layers, np.asarray(x), tag="ddp.")
        out = saved[-1][1]
        leaf = type(out)(out.data, requires_grad=True)
        loss = loss_fn(leaf, y)
        loss.backward()
        works = {}
        last_of = {b[-1]: i for i, b in enumerate(self.buckets)}

        def hook(k):                       # fires after layer k's backward
            if self.overlap and k in last_of:
                self._launch(last_of[k], works)
        backward_layers(self.layers, saved, leaf.grad, after=hook, tag="ddp.")
        if not self.overlap:
            for b in range(len(self.buckets)):
                self._launch(b, works)
        for b, w in works.items():        # wait for every bucket before the update
            w.wait()
            unflatten_from(self.bufs[b], [q.grad for q in self._params(b)])
        return float(loss.item())
