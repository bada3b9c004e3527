"""ZeRO stages 1-3 (Rajbhandari et al. 2020) and FSDP (Zhao et al. 2023), per rank.

Each layer with parameters is a unit with one flat buffer padded to a
multiple of p; rank r owns elements [r s, (r + 1) s) of it (s = padded / p)
and keeps the fp master copy of its shard with Adam's m and v:

- stage 1: full weights and gradients on every rank; after backward the
  gradient is reduce-scattered (AVG), each rank steps its shard, and the new
  weights are all-gathered.
- stage 2: as stage 1, but a rank keeps only its gradient shard.
- stage 3 (FSDP's FULL_SHARD): a rank keeps only its shard of the weights;
  a unit is all-gathered just before its forward and again before its
  backward, and freed after each.

The optimizer is AdamW (``weight_decay=0`` is Adam), elementwise, so the
sharded step equals the unsharded one exactly.
"""

from __future__ import annotations

import numpy as np

from ...optim import adam_update
from .. import process_group as dist
from .ddp import flatten_into, unflatten_from
from .layers import backward_layers, forward_layers, layers_of

__all__ = ["ZeroDataParallel", "FullyShardedDataParallel"]


class ZeroDataParallel:
    """This rank's part of ZeRO ``stage`` (1, 2 or 3) with AdamW.

    ``loss = z.train_step(x_local, y_local, loss_fn)`` runs forward,
    backward, the gradient reduce-scatter and the sharded AdamW step.
    """

    def __init__(self, module, stage: int = 1, lr: float = 1e-3, betas=(0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        if stage not in (1, 2, 3):
            raise ValueError(f"ZeroDataParallel: stage must be 1, 2 or 3, got {stage!r}")
        self.stage, self.lr, self.betas, self.eps, self.wd = stage, lr, tuple(betas), eps, weight_decay
        self.p, self.rank = dist.get_world_size(), dist.get_rank()
        self.layers = layers_of(module)
        for q in module.parameters():
            dist.broadcast(q.data, src=0)
        self.units = [k for k, layer in enumerate(self.layers) if list(layer.parameters())]
        self.numel = {k: sum(q.numel() for q in self.layers[k].parameters()) for k in self.units}
        self.padded = {k: -(-n // self.p) * self.p for k, n in self.numel.items()}
        self.dtype = next(iter(module.parameters())).data.dtype
        self.master, self.m, self.v, self.grad_shard = {}, {}, {}, {}
        self.shapes = {k: [q.shape for q in self.layers[k].parameters()] for k in self.units}
        self.t = 0
        for k in self.units:
            full = np.zeros(self.padded[k], self.dtype)
            flatten_into(full, [q.data for q in self._params(k)])
            self.master[k] = self._shard(k, full).copy()
            self.m[k], self.v[k] = np.zeros_like(self.master[k]), np.zeros_like(self.master[k])
            self.grad_shard[k] = np.zeros_like(self.master[k])
            dist.book(f"zero.opt{k}", 3 * self.master[k].nbytes, "optimizer states")
            held = self.master[k].nbytes if stage == 3 else full.nbytes
            dist.book(f"zero.param{k}", held, "parameters")
            dist.book(f"zero.grad{k}", self.master[k].nbytes if stage >= 2 else full.nbytes,
                      "gradients")
            if stage == 3:
                self._release(k)

    def _params(self, k):
        return list(self.layers[k].parameters())

    def _shard(self, k, full):
        s = self.padded[k] // self.p
        return full[self.rank * s:(self.rank + 1) * s]

    # -- stage 3: a unit's weights exist only around its use -----------------------------------
    def _gather(self, k):
        full = np.empty(self.padded[k], self.dtype)
        dist.all_gather_into_tensor(full, self.master[k])            # the unit's weights
        dist.book(f"zero.gathered{k}", full.nbytes, "buffers")
        i = 0
        for q, shape in zip(self._params(k), self.shapes[k]):
            n = int(np.prod(shape))
            q.data = full[i:i + n].reshape(shape)
            i += n

    def _release(self, k):
        if self.stage == 3 and dist.simulated_gpu() is not None and \
                dist.simulated_gpu().holds(f"zero.gathered{k}"):
            dist.unbook(f"zero.gathered{k}")
        for q in self._params(k):
            q.data = np.empty(0, self.dtype)

    def _around(self, k, gather):
        if self.stage == 3 and k in self.units:
            self._gather(k) if gather else self._release(k)

    def parameters_full(self) -> list:
        """Every weight as a full array (gathers at stage 3: a collective, call on all ranks)."""
        out = []
        for k in self.units:
            full = np.empty(self.padded[k], self.dtype)
            dist.all_gather_into_tensor(full, self.master[k])
            i = 0
            for shape in self.shapes[k]:
                n = int(np.prod(shape))
                out.append(full[i:i + n].reshape(shape).copy())
                i += n
        return out

    # -- one step --------------------------------------------------------------------------
    def _reduce_gradient(self, k):
        """Layer k's backward is done: reduce-scatter (AVG) its gradient into this rank's shard."""
        if k not in self.units:
            return
        full = np.zeros(self.padded[k], self.dtype)
        flatten_into(full, [q.grad for q in self._params(k)])
        for q in self._params(k):
            q.grad = None
        dist.reduce_scatter_tensor(self.grad_shard[k], full, op=dist.ReduceOp.AVG)
        self._around(k, gather=False)

    def train_step(self, x, y, loss_fn) -> float:
        saved = forward_layers(self.layers, np.asarray(x), tag="zero.",
                               before=lambda k: self._around(k, True),
                               after=lambda k: self._around(k, False))
        out = saved[-1][1]
        leaf = type(out)(out.data, requires_grad=True)
        loss = loss_fn(leaf, y)
        loss.backward()
        backward_layers(self.layers, saved, leaf.grad, tag="zero.",
                        before=lambda k: self._around(k, True), after=self._reduce_gradient)
        self.t += 1
        b1, b2 = self.betas
        for k in self.units:                                   # AdamW on this rank's shard
            if self.wd:
                self.master[k] *= 1 - self.lr * self.wd
            adam_update(self.master[k], self.grad_shard[k], self.m[k], self.v[k], self.t,
                        self.lr, b1, b2, self.eps)
            dist.charge_compute(10.0 * self.master[k].size, "optimizer", f"U{k}")
            if self.stage < 3:                                 # everyone gets the new weights
                full = np.empty(self.padded[k], self.dtype)
                dist.all_gather_into_tensor(full, self.master[k])
                unflatten_from(full, [q.data for q in self._params(k)])
        return float(loss.item())


class FullyShardedDataParallel(ZeroDataParallel):
    """FSDP: ``sharding_strategy`` "FULL_SHARD" (ZeRO-3) or "SHARD_GRAD_OP" (ZeRO-2)."""

    _STRATEGIES = {"FULL_SHARD": 3, "SHARD_GRAD_OP": 2}

    def __init__(self, module, sharding_strategy: str = "FULL_SHARD", **kw):
        if sharding_strategy not in self._STRATEGIES:
            raise ValueError(f"FullyShardedDataParallel: sharding_strategy must be one of "
                             f"{sorted(self._STRATEGIES)}, got {sharding_strategy!r}")
        super().__init__(module, stage=self._STRATEGIES[sharding_strategy], **kw)
