"""One per-rank training loop per parallelism, and the single-process run they must equal.

``train(strategy, steps)`` is what every rank runs (after
``init_process_group``): chapter 2's MLP classifier on a fixed synthetic
batch, Adam, float64, the same seed on every rank. It returns the losses,
the final full weights (gathered), the bytes this rank sent and the wall
time. ``train_single(strategy, steps)`` runs the same model on the whole
batch in one process. The two agree to rounding (float64: 1e-12).
"""

from __future__ import annotations

import threading
import time

import numpy as np

from ... import functional as F
from ... import manual_seed, nn, optim
from ...tensor import Tensor
from .. import process_group as dist

__all__ = ["STRATEGIES", "make_problem", "train", "train_single"]

STRATEGIES = ("ddp", "zero1", "zero2", "zero3", "gpipe", "1f1b", "tp")
SIZES = (32, 64, 64, 64, 8)
BATCH, LR = 48, 1e-2
_SEEDING = threading.Lock()   # simulated ranks are threads sharing minigrad's one generator


def make_problem(strategy="ddp", seed=0, sizes=SIZES, batch=BATCH, dtype=np.float64):
    """(model, x, y, loss_fn): the same on every rank for a seed."""
    with _SEEDING:
        return _make_problem(strategy, seed, sizes, batch, dtype)


def _make_problem(strategy, seed, sizes, batch, dtype):
    manual_seed(seed)
    rng = np.random.default_rng(seed)
    if strategy == "tp":                  # one Megatron MLP block on (B, T, C) tokens
        C, H = sizes[0], sizes[1]
        model = nn.Sequential(nn.Linear(C, H, dtype=dtype), nn.GELU(), nn.Linear(H, C, dtype=dtype))
        x = rng.standard_normal((batch // 8, 6, C)).astype(dtype)
        y = rng.standard_normal((batch // 8, 6, C)).astype(dtype)
        return model, x, y, F.mse_loss
    model = nn.MLP(list(sizes), dtype=dtype)
    x = rng.standard_normal((batch, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], batch)
    return model, x, y, F.cross_entropy


def _flat(arrays):
    return np.concatenate([np.ravel(a) for a in arrays]) if arrays else np.zeros(0)


def _gather_concat(local, group=None):
    """Every rank's 1-D ``local`` concatenated in rank order (uneven sizes)."""
    p = dist.get_world_size(group)
    counts = np.zeros((p, 1), np.int64)
    dist.all_gather(list(counts), np.array([local.size], np.int64), group=group)
    outs = [np.empty(int(c), local.dtype) for c in counts[:, 0]]
    dist.all_gather(outs, np.ascontiguousarray(local), group=group)
    return outs


def train(strategy: str = "ddp", steps: int = 3, seed: int = 0, **problem) -> dict:
    """Run ``steps`` steps of ``strategy`` on this rank; see the module docstring."""
    from ..spmd import (DistributedDataParallel, PipelineStage, TensorParallelMLP,
                        ZeroDataParallel)
    if strategy not in STRATEGIES:
        raise ValueError(f"train: strategy must be one of {STRATEGIES}, got {strategy!r}")
    p, r = dist.get_world_size(), dist.get_rank()
    model, x, y, loss_fn = make_problem(strategy, seed, **problem)
    losses = []
    t0 = time.perf_counter()
    if strategy in ("ddp", "zero1", "zero2", "zero3"):
        xs, ys = np.array_split(x, p)[r], np.array_split(y, p)[r]
        if strategy == "ddp":
            engine = DistributedDataParallel(model)
            opt = optim.Adam(list(model.parameters()), lr=LR)
        else:
            engine = ZeroDataParallel(model, stage=int(strategy[-1]), lr=LR)
        sent0 = dist.comm_stats()["bytes_sent"]       # the steps' traffic, not the setup's
        for _ in dist.progress(range(steps), desc=strategy, leave=False):
            if strategy == "ddp":
                opt.zero_grad()
                loss = engine.forward_backward(xs, ys, loss_fn)
                opt.step()
            else:
                loss = engine.train_step(xs, ys, loss_fn)
            batch_loss = np.array([loss / p])
            dist.all_reduce(batch_loss)                   # the mean of the equal slices' losses
            losses.append(float(batch_loss[0]))
        params = _flat([q.data for q in model.parameters()]) if strategy == "ddp" \
            else _flat(engine.parameters_full())
    elif strategy in ("gpipe", "1f1b"):
        stage = PipelineStage(model, num_microbatches=4, schedule=strategy)
        opt = optim.Adam(stage.parameters(), lr=LR)
        sent0 = dist.comm_stats()["bytes_sent"]       # the steps' traffic, not the setup's
        for _ in dist.progress(range(steps), desc=strategy, leave=False):
            opt.zero_grad()
            losses.append(stage.train_step(x, y, loss_fn))
            opt.step()
        params = np.concatenate(_gather_concat(_flat([q.data for q in stage.parameters()])))
    else:
        fc1, _, fc2 = list(model)
        tp = TensorParallelMLP(fc1, fc2)
        opt = optim.Adam(tp.parameters(), lr=LR)
        sent0 = dist.comm_stats()["bytes_sent"]       # the steps' traffic, not the setup's
        for _ in dist.progress(range(steps), desc=strategy, leave=False):
            opt.zero_grad()
            loss = loss_fn(tp(Tensor(x)), y)
            loss.backward()
            opt.step()
            losses.append(float(loss.item()))
        # the full weights: fc1's rows and fc2's columns gathered from the shards
        w1 = np.concatenate(_gather_concat(tp.fc1.weight.data.ravel()))
        b1 = np.concatenate(_gather_concat(tp.fc1.bias.data))
        w2_parts = _gather_concat(tp.fc2.weight.data.T.ravel())
        w2 = np.concatenate([w.reshape(-1, fc2.out_features) for w in w2_parts]).T
        params = _flat([w1, b1, w2, tp.fc2.bias.data])
    wall = time.perf_counter() - t0
    return {"losses": losses, "params": params, "bytes_sent": dist.comm_stats()["bytes_sent"] - sent0,
            "wall": wall}


def train_single(strategy: str = "ddp", steps: int = 3, seed: int = 0, **problem) -> dict:
    """The same training in one process on the whole batch (the reference)."""
    model, x, y, loss_fn = make_problem(strategy, seed, **problem)
    opt = optim.Adam(list(model.parameters()), lr=LR)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(Tensor(x)), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    return {"losses": losses, "params": _flat([q.data for q in model.parameters()])}


def run_example(strategies, argv=None) -> None:
    """The examples' main: under a launcher, this rank trains; run directly, 4 simulated ranks.

    Prints (rank 0 only) each strategy's losses, their largest difference from
    one process on the whole batch, the bytes rank 0 sent and the wall time.
    """
    import argparse
    import os
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("-n", "--world-size", type=int, default=4,
                    help="simulated ranks when run directly (ignored under a launcher)")
    args = ap.parse_args(argv)
    launched = "MINIGRAD_BACKEND" in os.environ or "PMI_RANK" in os.environ or \
        dist.is_initialized()

    def body():
        if not dist.is_initialized():
            dist.init_process_group()
        for s in strategies:
            got, ref = train(s, args.steps), train_single(s, args.steps)
            diff = max(abs(a - b) for a, b in zip(got["losses"], ref["losses"]))
            sent = f"rank 0 sent {got['bytes_sent']:,} B"
            if dist.get_backend() == "mpi" and os.environ.get("MINIGRAD_MPI_ALL_REDUCE") != "ring":
                sent += " (+ MPI's own collectives, uncounted: MINIGRAD_MPI_ALL_REDUCE=ring counts)"
            dist.print0(f"{s:6s} on {dist.get_world_size()} ranks ({dist.get_backend()}): losses "
                        + " ".join(f"{v:.4f}" for v in got["losses"])
                        + f"  | vs one process {diff:.1e} | {sent} | {got['wall'] * 1e3:.0f} ms")
    if launched:
        body()
    else:
        dist.spawn(body, args.world_size)


def compare_backends(strategy: str = "ddp", world_sizes=(2, 4), steps: int = 2) -> list:
    """The same per-rank ``train`` on the simulator and on real MPI processes, side by side.

    The MPI run's all-reduces use the chapter's ring over Sendrecv, so its
    bytes are counted as the simulator's. Returns rows {"ranks", "backend", "final loss", "bytes sent by rank 0",
    "train ms" (rank 0's training loop), "launch s" (the whole run,
    process start and imports included)}. Needs mpi4py and mpiexec for the
    MPI rows (``pip install "minigrad[mpi]"``).
    """
    import json
    import os
    import tempfile

    from ..launch import launch
    # load the simulated wire's compiled kernels first, so its first row times training only
    dist.spawn(lambda: dist.all_reduce(np.ones(8)), 2)
    rows = []
    for p in world_sizes:
        t0 = time.perf_counter()
        sim = dist.spawn(lambda: train(strategy, steps), p)[0]
        rows.append({"ranks": p, "backend": "sim", "final loss": sim["losses"][-1],
                     "bytes sent by rank 0": sim["bytes_sent"], "train ms": sim["wall"] * 1e3,
                     "launch s": time.perf_counter() - t0})
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "rank0.json")
            t0 = time.perf_counter()
            launch("minigrad.distributed.examples.common", p, "mpi",
                   [strategy, str(steps), out], module=True, capture=True, timeout=120,
                   env=dict(os.environ, MINIGRAD_MPI_ALL_REDUCE="ring"))   # bytes counted
            elapsed = time.perf_counter() - t0
            with open(out) as f:
                got = json.load(f)
        rows.append({"ranks": p, "backend": "mpi", "final loss": got["losses"][-1],
                     "bytes sent by rank 0": got["bytes_sent"], "train ms": got["wall"] * 1e3,
                     "launch s": elapsed})
    return rows


if __name__ == "__main__":          # one rank of compare_backends' MPI run: strategy steps out.json
    import json
    import sys
    dist.init_process_group()
    res = train(sys.argv[1], int(sys.argv[2]))
    if dist.get_rank() == 0:
        with open(sys.argv[3], "w") as f:
            json.dump({"losses": res["losses"], "bytes_sent": res["bytes_sent"],
                       "wall": res["wall"]}, f)
