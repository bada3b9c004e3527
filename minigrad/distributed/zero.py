"""ZeRO (Rajbhandari et al. 2020) and FSDP (Zhao et al. 2023): data parallelism
that shards the model states instead of replicating them.

Per parameter, mixed-precision Adam keeps 2 + 2 + K bytes: fp16 weights (2),
fp16 gradients (2) and K = 12 bytes of optimizer state (an fp32 master copy
of the weight, Adam's m and v). On N GPUs, per GPU:

    stage 0 (DDP)            (2 + 2 + K) * Psi
    stage 1 (shard optimizer) (2 + 2) * Psi + K * Psi / N
    stage 2 (+ gradients)     2 * Psi + (2 + K) * Psi / N
    stage 3 (+ parameters)    (2 + 2 + K) * Psi / N         (= FSDP, full sharding)

:func:`zero_memory_per_gpu` is that table. :class:`ZeRO` books every array it
holds on the virtual GPUs (``memory_per_gpu``), ``held_memory_per_gpu`` adds up
the arrays each GPU really keeps, and the tests check all three agree.

What each stage sends, per GPU per step (Psi elements, itemsize 2):
stages 0-2: a reduce-scatter of the gradients and an all-gather of the new
weights, 2 (N-1)/N Psi * 2 bytes -- the same as DDP's all-reduce (which is
exactly a reduce-scatter followed by an all-gather). Stage 3 gathers the
weights twice (for forward and again for backward): 3 (N-1)/N Psi * 2.

As in FSDP, each layer is a unit with its own flat buffer, padded to a
multiple of N so every GPU's shard has the same size; stage 3 gathers one
unit just before it is used and frees it right after.

Hybrid sharding (HSDP): shard inside groups of ``shard_group_size`` GPUs (a
node, fast links) and replicate across groups; the gradient shards are then
averaged across the groups with an all-reduce over the slow links.
"""

from __future__ import annotations

import numpy as np

from ..optim import adam_update
from .cluster import VirtualCluster
from .ddp import (backward_layer, flatten, forward_layer, loss_and_grad, replicate, split_batch,
                  unflatten_into)

__all__ = ["ZeRO", "FSDP", "zero_memory_per_gpu", "zero_comm_bytes_per_gpu", "STAGES"]

STAGES = (0, 1, 2, 3)


def zero_memory_per_gpu(num_params: int, world_size: int, stage: int, param_bytes: float = 2,
                        grad_bytes: float = 2, optimizer_bytes: float = 12) -> dict:
    """Bytes of model states per GPU under ZeRO ``stage`` (the paper's Figure 1).

    Args:
        num_params: Psi, parameters in the model.
        world_size: N, the GPUs the states are sharded over.
        stage: 0 (plain data parallel), 1 (optimizer states sharded),
            2 (+ gradients), 3 (+ parameters).
        param_bytes, grad_bytes, optimizer_bytes: bytes per parameter of each
            (2, 2, 12 for mixed-precision Adam: K = 12).
    Returns:
        {"parameters": ..., "gradients": ..., "optimizer states": ...} in bytes.
    """
    if stage not in STAGES:
        raise ValueError(f"zero_memory_per_gpu: stage must be one of {STAGES}, got {stage!r}")
    if world_size < 1:
        raise ValueError(f"zero_memory_per_gpu: world_size must be >= 1, got {world_size}")
    # BEGIN SOLUTION ch8.zero_memory
    n = world_size
    return {"parameters": param_bytes * num_params / (n if stage >= 3 else 1),
            "gradients": grad_bytes * num_params / (n if stage >= 2 else 1),
            "optimizer states": optimizer_bytes * num_params / (n if stage >= 1 else 1)}
    # END SOLUTION


def zero_comm_bytes_per_gpu(num_params: int, world_size: int, stage: int, itemsize: int = 2) -> float:
    """Bytes each GPU sends per step: 2 (N-1)/N Psi itemsize, or 3 (N-1)/N ... at stage 3."""
    if stage not in STAGES:
        raise ValueError(f"zero_comm_bytes_per_gpu: stage must be one of {STAGES}, got {stage!r}")
    if world_size < 1:
        raise ValueError(f"zero_comm_bytes_per_gpu: world_size must be >= 1, got {world_size}")
    n = world_size
    rounds = 3 if stage == 3 else 2
    return rounds * (n - 1) / n * num_params * itemsize


class ZeRO:
    """Data parallel training with ZeRO stage 0-3 sharding and Adam(W).

    Args:
        model: a ``Sequential``; each layer with parameters is one unit.
        cluster: the :class:`VirtualCluster` (all its GPUs take part).
        stage: 0, 1, 2 or 3.
        lr, betas, eps, weight_decay: AdamW's (decoupled weight decay; 0 is Adam).
        param_dtype: dtype of the weights and gradients used in forward and
            backward (np.float16 for mixed precision).
        master_dtype: dtype of the master weights and Adam's m and v.
        shard_group_size: None shards over all GPUs; g shards inside groups
            of g consecutive GPUs and replicates across groups (hybrid).
    """

    def __init__(self, model, cluster: VirtualCluster, stage: int = 3, lr: float = 1e-3,
                 betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 param_dtype=np.float16, master_dtype=np.float32, shard_group_size=None):
        if stage not in STAGES:
            raise ValueError(f"ZeRO: stage must be one of {STAGES}, got {stage!r}")
        p = cluster.world_size
        g = p if shard_group_size is None else int(shard_group_size)
        if g < 1 or p % g:
            raise ValueError(f"ZeRO: shard_group_size must divide world_size={p}, got {shard_group_size}")
        self.cluster, self.stage = cluster, stage
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay
        self.param_dtype, self.master_dtype = np.dtype(param_dtype), np.dtype(master_dtype)
        self.ranks = list(range(p))
        # shard groups (fast links) and replicate groups (the same shard across groups)
        self.shard_groups = [list(range(s, s + g)) for s in range(0, p, g)]
        self.replicate_groups = [list(range(i, p, g)) for i in range(g)]
        self.N = g
        self.replicas = replicate(model, cluster)
        self.layers = [list(r) for r in self.replicas]
        for rep in self.replicas:
            for q in rep.parameters():
                q.data = q.data.astype(self.param_dtype)
        self.units = [k for k, layer in enumerate(self.layers[0]) if list(layer.parameters())]
        self.numel = {k: sum(q.numel() for q in self.layers[0][k].parameters()) for k in self.units}
        self.padded = {k: -(-n // g) * g for k, n in self.numel.items()}   # a multiple of N
        self.shapes = {k: [q.shape for q in self.layers[0][k].parameters()] for k in self.units}
        self.num_params = sum(self.numel.values())
        self.num_params_padded = sum(self.padded.values())
        self.step_count = 0
        self._init_states()

    # -- where each GPU's states live ------------------------------------------------------
    def _pos(self, r):
        return r % self.N     # position inside its shard group

    def _shard(self, k, r, full):
        """GPU r's shard of unit k's (padded) flat array."""
        s = self.padded[k] // self.N
        return full[self._pos(r) * s:(self._pos(r) + 1) * s]

    def _padded_flat(self, arrays, k, dtype):
        out = np.zeros(self.padded[k], dtype=dtype)
        out[:self.numel[k]] = flatten(arrays)
        return out

    def _params(self, r, k):
        return list(self.layers[r][k].parameters())

    def _init_states(self):
        st = self.stage
        self.master, self.m, self.v, self.param_shard, self.grad_shard = ({}, {}, {}, {}, {})
        self.grad_buf = {}   # the memory that holds each unit's gradient: full (stages 0-1) or a shard
        for r in self.ranks:
            gpu = self.cluster.gpus[r]
            for k in self.units:
                full = self._padded_flat([q.data for q in self._params(r, k)], k, self.master_dtype)
                opt = full if st == 0 else self._shard(k, r, full).copy()
                self.master[r, k] = opt
                self.m[r, k], self.v[r, k] = np.zeros_like(opt), np.zeros_like(opt)
                gpu.alloc(f"zero.opt{k}", 3 * opt.nbytes, "optimizer states")
                if st == 3:   # the full weights exist only while gathered
                    self.param_shard[r, k] = self._shard(k, r, full).astype(self.param_dtype)
                    for q in self._params(r, k):
                        q.data = np.empty(0, dtype=self.param_dtype)
                    gpu.alloc(f"zero.param{k}", self.param_shard[r, k], "parameters")
                else:
                    gpu.alloc(f"zero.param{k}", sum(q.data.nbytes for q in self._params(r, k)),
                              "parameters")
                gsize = self.padded[k] if st < 2 else self.padded[k] // self.N
                self.grad_buf[r, k] = np.zeros(gsize, dtype=self.param_dtype)
                gpu.alloc(f"zero.grad{k}", self.grad_buf[r, k], "gradients")

    def memory_per_gpu(self, rank: int = 0) -> dict:
        """Model states booked on GPU ``rank`` now, by kind (bytes)."""
        held = self.cluster.gpus[rank].memory_by_kind()
        return {kind: held.get(kind, 0) for kind in ("parameters", "gradients", "optimizer states")}

    def held_memory_per_gpu(self, rank: int = 0) -> dict:
        """Model states GPU ``rank`` really keeps now, by kind: the bytes of its arrays.

        The measurement behind the ledger: weights (the replica's, or its
        shard at stage 3), gradient buffers plus any gradient autograd left on
        a parameter, and the master weights with Adam's m and v.
        """
        qs = [q for k in self.units for q in self._params(rank, k)]
        params = sum(q.data.nbytes for q in qs)
        params += sum(self.param_shard[rank, k].nbytes for k in self.units if (rank, k) in self.param_shard)
        grads = sum(q.grad.nbytes for q in qs if q.grad is not None)
        grads += sum(self.grad_buf[rank, k].nbytes for k in self.units)
        opt = sum(d[rank, k].nbytes for d in (self.master, self.m, self.v) for k in self.units)
        return {"parameters": params, "gradients": grads, "optimizer states": opt}

    # -- stage 3: gather a unit's weights before use, free them after ------------------------
    def _gather(self, k):
        for grp in self.shard_groups:
            shards = [self.param_shard[r, k] for r in grp]
            fulls = self.cluster.all_gather(shards, group=grp)          # all-gather the unit
            for r, full in zip(grp, fulls):
                self.cluster.gpus[r].alloc(f"zero.gathered{k}", full, "buffers")
                i = 0
                for q, shape in zip(self._params(r, k), self.shapes[k]):
                    n = int(np.prod(shape))
                    q.data = full[i:i + n].reshape(shape)
                    i += n

    def _release(self, k):
        for r in self.ranks:
            self.cluster.gpus[r].free(f"zero.gathered{k}")
            for q in self._params(r, k):
                q.data = np.empty(0, dtype=self.param_dtype)

    # -- one training step --------------------------------------------------------------------
    def train_step(self, x, y, loss_fn) -> float:
        """Forward, backward and AdamW step on batch (x, y) split evenly over the GPUs."""
        p = len(self.ranks)
        xs, ys = split_batch(x, p), split_batch(y, p)
        xs = [a.astype(self.param_dtype) if a.dtype.kind == "f" else a for a in xs]
        for rep in self.replicas:
            rep.zero_grad()
        n_layers = len(self.layers[0])
        ins = [[None] * n_layers for _ in self.ranks]
        outs = [[None] * n_layers for _ in self.ranks]
        h = list(xs)
        for k in range(n_layers):                                   # forward
            if self.stage == 3 and k in self.units:
                self._gather(k)
            for r in self.ranks:
                ins[r][k], outs[r][k] = forward_layer(self.layers[r][k], k, h[r], self.cluster, r,
                                                      "zero.")
                h[r] = outs[r][k].data
            if self.stage == 3 and k in self.units:
                self._release(k)
        losses, grads = [], []
        for r in self.ranks:
            loss, g = loss_and_grad(outs[r][-1], ys[r], loss_fn)
            losses.append(loss)
            grads.append(g)
        for k in reversed(range(n_layers)):                         # backward
            if self.stage == 3 and k in self.units:
                self._gather(k)
            for r in self.ranks:
                grads[r] = backward_layer(self.layers[r][k], k, ins[r][k], outs[r][k], grads[r],
                                          self.cluster, r, "zero.")
            if k in self.units:
                self._reduce_gradients(k)
            if self.stage == 3 and k in self.units:
                self._release(k)
        self._optimizer_step()
        self.step_count += 1
        return float(np.mean(losses))

    def _reduce_gradients(self, k):
        """Average unit k's gradients: all-reduce (stage 0) or reduce-scatter (stages 1-3)."""
        grads = {}
        for r in self.ranks:
            # autograd's gradients move into one flat buffer and are released from the parameters:
            # the gradient buffer (stages 0-1), or a temporary full gradient (stages 2-3)
            grads[r] = self.grad_buf[r, k] if self.stage < 2 else \
                np.empty(self.padded[k], dtype=self.param_dtype)
            grads[r][:] = self._padded_flat([q.grad for q in self._params(r, k)], k, self.param_dtype)
            for q in self._params(r, k):
                q.grad = None
        if self.stage == 0:
            self.cluster.all_reduce([grads[r] for r in self.ranks], op="mean")
            for r in self.ranks:
                self.grad_shard[r, k] = grads[r]
            return
        for r in self.ranks:       # the full gradient is a temporary from stage 2 on
            if self.stage >= 2:
                self.cluster.gpus[r].alloc(f"zero.fullgrad{k}", grads[r], "buffers")
        for grp in self.shard_groups:
            shards = self.cluster.reduce_scatter([grads[r] for r in grp], op="mean", group=grp)
            for r, s in zip(grp, shards):
                # stage 1 keeps the full buffer and uses its own slice; stages 2-3 keep only the shard
                self.grad_shard[r, k] = self._shard(k, r, grads[r]) if self.stage == 1 \
                    else self.grad_buf[r, k]
                self.grad_shard[r, k][:] = s
        if len(self.shard_groups) > 1:   # hybrid: average the shards across the groups
            for grp in self.replicate_groups:
                self.cluster.all_reduce([self.grad_shard[r, k] for r in grp], op="mean", group=grp)
        for r in self.ranks:
            if self.stage >= 2:
                self.cluster.gpus[r].free(f"zero.fullgrad{k}")

    def _optimizer_step(self):
        b1, b2 = self.betas
        t = self.step_count + 1
        for r in self.ranks:
            for k in self.units:
                master = self.master[r, k]
                if self.weight_decay:
                    master *= 1 - self.lr * self.weight_decay
                adam_update(master, self.grad_shard[r, k].astype(self.master_dtype),
                            self.m[r, k], self.v[r, k], t, self.lr, b1, b2, self.eps)
                self.cluster.compute(r, 10.0 * master.size, "optimizer", f"U{k}")
        for k in self.units:
            if self.stage == 3:      # each GPU keeps only its shard of the weights
                for r in self.ranks:
                    self.param_shard[r, k] = self.master[r, k].astype(self.param_dtype)
                continue
            if self.stage == 0:
                fulls = {r: self.master[r, k].astype(self.param_dtype) for r in self.ranks}
            else:                    # every GPU updated its shard: gather the new weights
                fulls = {}
                for grp in self.shard_groups:
                    got = self.cluster.all_gather(
                        [self.master[r, k].astype(self.param_dtype) for r in grp], group=grp)
                    fulls.update(zip(grp, got))
            for r in self.ranks:
                unflatten_into(fulls[r][:self.numel[k]], [q.data for q in self._params(r, k)])

    def full_parameters(self, rank: int = 0) -> list:
        """The model's weights as GPU ``rank`` would see them after a gather (for checks)."""
        out = []
        for k in self.units:
            full = np.concatenate([self.master[r, k] for r in self._group_of(rank)]) \
                if self.stage > 0 else self.master[rank, k]
            i = 0
            for shape in self.shapes[k]:
                n = int(np.prod(shape))
                out.append(full[i:i + n].reshape(shape).astype(self.param_dtype))
                i += n
        return out

    def _group_of(self, rank):
        return next(g for g in self.shard_groups if rank in g)


class FSDP(ZeRO):
    """Fully sharded data parallel (Zhao et al. 2023): ZeRO-3 with per-layer units.

    ``sharding_strategy`` as PyTorch: "FULL_SHARD" (stage 3), "SHARD_GRAD_OP"
    (stage 2), "NO_SHARD" (stage 0), "HYBRID_SHARD" (stage 3 inside groups of
    ``shard_group_size``, replicated across them).
    """

    _STRATEGIES = {"FULL_SHARD": 3, "SHARD_GRAD_OP": 2, "NO_SHARD": 0, "HYBRID_SHARD": 3}

    def __init__(self, model, cluster, sharding_strategy: str = "FULL_SHARD", shard_group_size=None,
                 **kw):
        if sharding_strategy not in self._STRATEGIES:
            raise ValueError(f"FSDP: sharding_strategy must be one of {sorted(self._STRATEGIES)}, "
                             f"got {sharding_strategy!r}")
        if sharding_strategy == "HYBRID_SHARD" and shard_group_size is None:
            raise ValueError("FSDP: HYBRID_SHARD needs shard_group_size (the GPUs of one node)")
        super().__init__(model, cluster, stage=self._STRATEGIES[sharding_strategy],
                         shard_group_size=shard_group_size, **kw)
