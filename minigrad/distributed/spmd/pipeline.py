"""Pipeline parallelism per rank: rank s runs stage s, micro-batches over send/recv.

Rank s holds layers ``split_stages(n_layers, p)[s]`` and runs its own list
of operations from the schedule (``gpipe_schedule`` or
``one_f_one_b_schedule`` of :mod:`minigrad.distributed.pipeline`, the
same lists the simulator times):

    ("F", i): receive micro-batch i's activation from rank s - 1 (rank 0
              reads the input), run the stage, send the output to rank s + 1
              (the last rank computes the loss / m instead);
    ("B", i): receive the output gradient from rank s + 1 (the last rank
              has it from the loss), backward through the stage, send the
              input gradient to rank s - 1.

Sends are ``isend`` (waited at the end of the step), so a rank never blocks
on a send and the schedule's order of receives is the only synchronisation:
a schedule is deadlock-free exactly when ``simulate_schedule`` finishes it.
Gradients accumulate over the m micro-batches, so they equal the unsplit
model's gradient on the whole batch.
"""

from __future__ import annotations

import numpy as np

from ...tensor import Tensor
from .. import process_group as dist
from ..ddp import split_batch
from ..pipeline import SCHEDULES, split_stages
from .layers import backward_layers, forward_layers, layers_of

__all__ = ["PipelineStage"]

_HEADER = 8     # a message's shape travels first, as 8 int64 (ndim, dims..., -1 padding)


def _send_array(a, dst, tag, works):
    a = np.ascontiguousarray(a)
    head = np.full(_HEADER, -1, np.int64)
    head[0] = a.ndim
    head[1:1 + a.ndim] = a.shape
    works.append(dist.isend(head, dst, tag=2 * tag))
    works.append(dist.isend(a, dst, tag=2 * tag + 1))


def _recv_array(src, tag, dtype):
    head = np.empty(_HEADER, np.int64)
    dist.recv(head, src, tag=2 * tag)
    out = np.empty(tuple(int(d) for d in head[1:1 + head[0]]), dtype)
    dist.recv(out, src, tag=2 * tag + 1)
    return out


class PipelineStage:
    """This rank's stage of ``model`` (every rank builds the same model, keeps its layers).

    Args:
        model: the whole ``Sequential`` (same weights on every rank, e.g. one seed).
        num_microbatches: m; the batch splits evenly.
        schedule: "gpipe" or "1f1b".
        stages: layer ranges [(lo, hi)] per rank (default: ``split_stages``).
    """

    def __init__(self, model, num_microbatches: int = 4, schedule: str = "1f1b", stages=None):
        if schedule not in SCHEDULES:
            raise ValueError(f"PipelineStage: schedule must be one of {sorted(SCHEDULES)}, "
                             f"got {schedule!r}")
        self.p, self.s = dist.get_world_size(), dist.get_rank()
        self.m = int(num_microbatches)
        all_layers = layers_of(model)
        self.lo, self.hi = (stages or split_stages(len(all_layers), self.p))[self.s]
        self.layers = all_layers[self.lo:self.hi]
        self.ops = SCHEDULES[schedule](self.p, self.m)[self.s]
        self.dtype = next(iter(model.parameters())).data.dtype
        dist.book("pp.parameters", sum(q.data.nbytes for layer in self.layers
                                       for q in layer.parameters()), "parameters")

    def parameters(self) -> list:
        return [q for layer in self.layers for q in layer.parameters()]

    def train_step(self, x, y, loss_fn) -> float:
        """One step over the m micro-batches; gradients accumulate into this stage's
        parameters. Returns the batch loss (the mean of the micro-batch losses), on every rank."""
        s, p, m = self.s, self.p, self.m
        xs = split_batch(x, m) if s == 0 else None
        ys = split_batch(y, m) if s == p - 1 else None
        saved, grads, works, losses = {}, {}, [], np.zeros(1, np.float64)
        for kind, i in self.ops:
            if kind == "F":
                h = xs[i] if s == 0 else _recv_array(s - 1, i, self.dtype)
                saved[i] = forward_layers(self.layers, h, tag=f"pp.mb{i}.", offset=self.lo)
                out = saved[i][-1][1]
                if s < p - 1:
                    _send_array(out.data, s + 1, i, works)
                else:                                   # the last stage: loss / m
                    leaf = Tensor(out.data, requires_grad=True)
                    loss = loss_fn(leaf, ys[i])
                    loss.backward()
                    losses += float(loss.item()) / m
                    grads[i] = leaf.grad / m
            else:
                g = grads.pop(i) if s == p - 1 else _recv_array(s + 1, m + i, self.dtype)
                g = backward_layers(self.layers, saved.pop(i), g, tag=f"pp.mb{i}.",
                                    offset=self.lo)
                if s > 0:
                    _send_array(g, s - 1, m + i, works)
        for w in works:
            w.wait()
        dist.broadcast(losses, src=p - 1)               # every rank reports the batch loss
        return float(losses[0])
