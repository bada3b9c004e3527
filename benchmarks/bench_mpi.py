"""Real processes: the chapter's ring over MPI Sendrecv vs MPI_Allreduce vs the simulator.

    python -m benchmarks.bench_mpi

1. All-reduce of 16 MB float32 on 4 ranks: the ring over Sendrecv
   (``ring_all_reduce_mpi``), MPI's own ``Allreduce`` (MPICH's choice of
   algorithm, the anchor), and the simulator's wall time (4 ranks as threads
   in one process). Target: ring <= 2x MPI_Allreduce.
2. A DDP step of an MLP (784-256-256-10, float32, batch 256) at 1, 2 and 4
   ranks: time per step, and the share of it rank 0 spends issuing and
   waiting for the gradient all-reduces (measured in the rank), beside one
   rank's step on batch / p (the compute a rank has to do).

On a 2-core machine 4 ranks are oversubscribed (two processes per core,
MPICH busy-polls): the times say what the algorithms cost here, not on a cluster.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import numpy as np

N = 4 * 2**20                 # 16 MB of float32
ROUNDS = 5
SIZES, BATCH = [784, 256, 256, 10], 256


def _mlp_step_parts():
    from minigrad import functional as F
    from minigrad import manual_seed, nn, optim
    manual_seed(0)
    model = nn.MLP(SIZES)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], BATCH)
    return model, x, y, F.cross_entropy, optim


def rank_part(out_path):
    """What each MPI rank runs."""
    import minigrad.distributed as dist
    from minigrad.distributed.backend_mpi import ring_all_reduce_mpi
    from minigrad.distributed.spmd import DistributedDataParallel
    dist.init_process_group()
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    p, r = comm.Get_size(), comm.Get_rank()
    res = {}
    if p == 4:
        a = np.ones(N, np.float32)
        t = {"ring": [], "mpi": []}
        for _ in range(ROUNDS):                        # interleaved rounds
            comm.Barrier()
            t0 = time.perf_counter()
            ring_all_reduce_mpi(a, comm)
            comm.Barrier()
            t["ring"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, a)
            comm.Barrier()
            t["mpi"].append(time.perf_counter() - t0)
        res["allreduce"] = {k: min(v) for k, v in t.items()}
    model, x, y, loss_fn, optim = _mlp_step_parts()
    ddp = DistributedDataParallel(model)
    opt = optim.SGD(list(model.parameters()), lr=0.01)
    xs, ys = np.array_split(x, p)[r], np.array_split(y, p)[r]
    in_comm = _time_all_reduces()
    times, shares = [], []
    for _ in range(6):
        comm.Barrier()
        in_comm[0] = 0.0
        t0 = time.perf_counter()
        opt.zero_grad()
        ddp.forward_backward(xs, ys, loss_fn)
        opt.step()
        times.append(time.perf_counter() - t0)
        shares.append(in_comm[0] / times[-1])
    res["step"] = float(np.median(times[1:]))
    res["share"] = float(np.median(shares[1:]))
    if r == 0:
        with open(out_path, "w") as f:
            json.dump(res, f)


def _time_all_reduces():
    """Count the seconds this rank spends issuing DDP's all-reduces and waiting for them."""
    from minigrad.distributed import process_group as pg
    spent, issue = [0.0], pg.all_reduce

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        work = issue(*args, **kwargs)
        spent[0] += time.perf_counter() - t0
        if work is not None:
            wait = work.wait

            def timed_wait(*a, **k):
                t1 = time.perf_counter()
                out = wait(*a, **k)
                spent[0] += time.perf_counter() - t1
                return out
            work.wait = timed_wait
        return work
    pg.all_reduce = timed
    return spent


def _compute_alone(p):
    """The per-rank work of a p-rank DDP step with no communication: batch / p on one rank."""
    import minigrad.distributed as dist
    from minigrad.distributed.spmd import DistributedDataParallel

    def body():
        model, x, y, loss_fn, optim = _mlp_step_parts()
        ddp = DistributedDataParallel(model)
        opt = optim.SGD(list(model.parameters()), lr=0.01)
        xs, ys = x[:BATCH // p], y[:BATCH // p]
        times = []
        for _ in range(6):
            t0 = time.perf_counter()
            opt.zero_grad()
            ddp.forward_backward(xs, ys, loss_fn)
            opt.step()
            times.append(time.perf_counter() - t0)
        return float(np.median(times[1:]))
    return dist.spawn(body, 1)[0]


def _sim_allreduce():
    import minigrad.distributed as dist
    arrays = {}

    def body():
        a = np.ones(N, np.float32)
        arrays[dist.get_rank()] = a
        ts = []
        for _ in range(ROUNDS):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(a)
            ts.append(time.perf_counter() - t0)
        return min(ts)
    return max(dist.spawn(body, 4))


def main():
    from minigrad.distributed.launch import launch
    results = {}
    with tempfile.TemporaryDirectory() as d:
        for p in (1, 2, 4):
            out = os.path.join(d, f"r{p}.json")
            launch(__file__, p, "mpi", ["--rank-part", out], capture=True, timeout=300)
            with open(out) as f:
                results[p] = json.load(f)
    sim = _sim_allreduce()
    ar = results[4]["allreduce"]
    print(f"bench_mpi: 4 ranks on {os.cpu_count()} cores (oversubscribed when > cores), "
          f"MPICH via mpi4py")
    print(f"\nall-reduce of 16 MB float32, 4 ranks (best of {ROUNDS})")
    print(f"{'what':34s} {'ms':>9s} {'x MPI_Allreduce':>16s}")
    for name, t in (("MPI_Allreduce (anchor)", ar["mpi"]), ("ring over Sendrecv (chapter 8)", ar["ring"]),
                    ("simulator, 4 ranks as threads", sim)):
        print(f"{name:34s} {t * 1e3:9.2f} {t / ar['mpi']:16.2f}")
    print(f"target: ring <= 2x MPI_Allreduce: {'met' if ar['ring'] <= 2 * ar['mpi'] else 'MISSED'}")
    print(f"\nDDP step, MLP {SIZES}, float32, batch {BATCH} split over the ranks (median of 5)")
    print(f"{'ranks':>5s} {'ms/step':>9s} {'x 1 rank':>9s} {'share in all-reduce':>20s} "
          f"{'1 rank on batch/p (sim)':>24s}")
    for p in (1, 2, 4):
        t, c = results[p]["step"], _compute_alone(p)
        print(f"{p:5d} {t * 1e3:9.2f} {t / results[1]['step']:9.2f} {results[p]['share']:20.0%} "
              f"{c * 1e3:21.2f} ms")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--rank-part":
        rank_part(sys.argv[2])
    else:
        main()
