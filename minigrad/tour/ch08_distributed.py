"""Tour, chapter 8: distributed training on virtual GPUs."""

from __future__ import annotations


import numpy as np

TITLE = "8. Distributed training"


def run(out_dir, quick: bool) -> list:
    from .. import Tensor, nn, optim
    from .. import functional as F
    from ..distributed import OutOfMemoryError, VirtualCluster, format_bytes
    from ..distributed.collectives import measure_all_reduce, ring_all_reduce_bytes
    from ..distributed.ddp import ddp_vs_one_gpu
    from ..distributed.pipeline import SCHEDULES, bubble_fraction, simulate_schedule
    from ..distributed.strategy import recommend_strategy
    from ..distributed.tensor_parallel import TensorParallelMLP
    from ..distributed.zero import ZeRO, zero_memory_per_gpu
    from ..viz import dist as V
    from ..viz import savefig

    rows = []
    savefig(V.ring_allreduce_steps(4), "ch08_ring_allreduce_steps", out_dir)

    # collectives: bytes and time against the closed forms
    p, n = 8, 2**16
    cl = VirtualCluster(p)
    cl.all_reduce([np.ones(n, np.float32) for _ in range(p)])
    rows.append(("ring all-reduce bytes/GPU (measured = 2(p-1)/p n*4)",
                 f"{cl.stats.bytes_sent[0]:,} = {ring_all_reduce_bytes(n, p, 4):,.0f}"))
    sizes = [2**k for k in range(8, 22 if quick else 25, 2)]
    algs = ("naive", "tree", "ring")
    meas = {a: [measure_all_reduce(8, s, a, bandwidth=1e10) for s in sizes] for a in algs}
    worlds = [2, 4, 8, 16] if quick else [2, 4, 8, 16, 32]
    big_msg = 2**20 if quick else 2**22
    meas_p = {a: [measure_all_reduce(w, big_msg, a, bandwidth=1e10) for w in worlds] for a in algs}
    savefig(V.collective_costs(sizes, {a: [m["time"] for m in meas[a]] for a in algs},
                               {a: [m["formula"] for m in meas[a]] for a in algs}, worlds,
                               {a: [m["time"] for m in meas_p[a]] for a in algs},
                               {a: [m["formula"] for m in meas_p[a]] for a in algs}, big_msg),
            "ch08_collective_costs", out_dir)
    rows.append((f"{big_msg / 2**20:.0f} MiB all-reduce on 8 GPUs: naive / tree / ring (ms)",
                 " / ".join(f"{meas_p[a][worlds.index(8)]['time'] * 1e3:.3f}" for a in algs)))

    # DDP on 4 virtual GPUs equals one GPU on the whole batch; overlap on the timeline
    model = nn.MLP([32, 64, 64, 64, 8], dtype=np.float64)
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((64, 32)), rng.integers(0, 8, 64)

    def make_opt(ps):
        return optim.Adam(ps, lr=1e-2)
    cl = VirtualCluster(4, latency=2e-7, bandwidth=4e9, flops_per_second=1e10)
    _, diff = ddp_vs_one_gpu(model, cl, make_opt, X, Y, F.cross_entropy, steps=3,
                             bucket_cap_bytes=64 * 65 * 8)
    rows.append(("DDP (4 GPUs) vs 1 GPU, max |weight diff| after 3 steps", f"{diff:.1e}"))
    savefig(V.timeline(cl.trace, "DDP step: bucket all-reduces overlap the backward"),
            "ch08_ddp_timeline", out_dir)

    # ZeRO memory per GPU, measured against the paper's formula; OOM under DDP, fits under ZeRO-3
    big = nn.MLP([64, 128, 128, 16])
    psi = big.num_parameters()
    measured, sent, formula = {}, {}, {}
    Xb, Yb = rng.standard_normal((16, 64)), rng.integers(0, 16, 16)
    for stage in range(4):
        cz = VirtualCluster(8)
        z = ZeRO(big, cz, stage=stage)
        cz.stats.reset()
        z.train_step(Xb, Yb, F.cross_entropy)
        # measured: the bytes of the arrays GPU 0 keeps after a step (the ledger agrees)
        measured[f"ZeRO-{stage}" if stage else "DDP"] = z.held_memory_per_gpu(0)
        sent[stage] = int(cz.stats.bytes_sent[0])
        formula[stage] = zero_memory_per_gpu(z.num_params_padded, 8, stage)
    rows.append(("ZeRO bytes/GPU measured: stage 0/1/2/3",
                 " / ".join(f"{sum(m.values()):,}" for m in measured.values())))
    rows.append(("... the formula 2+2+12 bytes/param split by stage",
                 " / ".join(f"{sum(f.values()):,.0f}" for f in formula.values())))
    rows.append(("ZeRO-1/2/3 bytes sent per GPU per step / DDP's",
                 " / ".join(f"{sent[s] / sent[0]:.2f}" for s in (1, 2, 3))))
    budget = 16 * psi // 3
    savefig(V.zero_memory_bars(measured, budget, f"Model states per GPU, {psi:,} parameters, 8 GPUs"),
            "ch08_zero_memory", out_dir)
    try:
        ZeRO(big, VirtualCluster(8, memory_per_gpu=budget), stage=0)
        oom = "no"
    except OutOfMemoryError:
        oom = "yes"
    z3 = ZeRO(big, VirtualCluster(8, memory_per_gpu=budget), stage=3)
    z3.train_step(rng.standard_normal((16, 64)), rng.integers(0, 16, 16), F.cross_entropy)
    rows.append((f"budget {format_bytes(budget)}: DDP out of memory? / ZeRO-3 peak",
                 f"{oom} / {format_bytes(max(g.peak for g in z3.cluster.gpus))}"))

    # pipeline bubbles
    ev, _ = simulate_schedule(SCHEDULES["1f1b"](4, 8))
    savefig(V.pipeline_schedule(ev, 4, "1F1B schedule, 4 stages, 8 micro-batches (numbers: micro-batch)"),
            "ch08_pipeline_1f1b", out_dir)
    ms = [1, 2, 4, 8, 16, 32]
    meas_b, form_b = {}, {}
    for pp in (2, 4, 8):
        meas_b[pp], form_b[pp] = [], []
        for m in ms:
            events, span = simulate_schedule(SCHEDULES["gpipe"](pp, m))
            meas_b[pp].append(1 - sum(e[2] for e in events) / (pp * span))
            form_b[pp].append(bubble_fraction(pp, m))
    savefig(V.bubble_curves(ms, meas_b, form_b), "ch08_pipeline_bubble", out_dir)
    rows.append(("bubble p=4, m=8: measured / (p-1)/(m+p-1)",
                 f"{meas_b[4][3]:.4f} / {bubble_fraction(4, 8):.4f}"))

    # tensor parallelism
    savefig(V.tensor_parallel_split(4), "ch08_tensor_parallel_split", out_dir)
    fc1, fc2 = nn.Linear(16, 64, dtype=np.float64), nn.Linear(64, 16, dtype=np.float64)
    x = rng.standard_normal((2, 5, 16))
    tp = TensorParallelMLP(fc1, fc2, VirtualCluster(4))
    ys = tp([Tensor(x) for _ in range(4)])
    ref = fc2(F.gelu(fc1(Tensor(x)))).data
    rows.append(("TP MLP on 4 GPUs vs unsplit, max |diff|", f"{np.abs(ys[2].data - ref).max():.1e}"))
    rec = recommend_strategy(30 * 10**9, 80e9, 8)
    rows.append(("30B params, 8 x 80 GB: strategy", rec.strategy))

    # the same parallelisms written per rank (torch.distributed-shaped), on 4 simulated ranks:
    # the scripts `minigrad launch -n 4 --backend mpi` runs as real processes
    from ..distributed import spawn
    from ..distributed.examples.common import train, train_single
    worst = max(abs(a - b) for s in ("ddp", "zero3", "1f1b", "tp")
                for a, b in zip(spawn(lambda s=s: train(s, 2), 4)[0]["losses"],
                                train_single(s, 2)["losses"]))
    rows.append(("per-rank DDP / ZeRO-3 / 1F1B / TP on 4 ranks vs one process, max |loss diff|",
                 f"{worst:.1e}"))
    return rows
