# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 8: distributed training on virtual GPUs
#
# One GPU is not enough when the model, its gradients and its optimizer state do not fit in
# its memory, or when one GPU would take months. This chapter trains on a **cluster of virtual
# GPUs** that lives in one process (`minigrad.distributed.VirtualCluster`): each GPU has its own
# arrays and a memory budget, links have a latency and a bandwidth, and every byte that moves
# is counted and timed.
#
# You will be able to compute, and check against the simulator:
# - the bytes and the time of broadcast, reduce, all-reduce, reduce-scatter, all-gather and
#   all-to-all with naive, tree and ring algorithms (ring all-reduce: $2\frac{p-1}{p} n$ bytes
#   per GPU, time $2(p-1)\alpha + 2\frac{p-1}{p}\frac{n}{\beta}$);
# - why data-parallel training on $p$ GPUs equals training on the whole batch, and what DDP's
#   gradient buckets and overlap buy;
# - memory per GPU under ZeRO stages 1, 2, 3 / FSDP: $(2+2+K)\Psi$ split by stage;
# - the pipeline bubble $(p-1)/(m+p-1)$ of GPipe and 1F1B;
# - which collectives tensor parallelism needs, and what sequence parallelism saves;
# - which strategy to pick for a given model and cluster.

# %%
import copy

import numpy as np

import minigrad
from minigrad import Tensor, nn, optim
from minigrad import functional as F
from minigrad.distributed import (ChecksumError, OutOfMemoryError, VirtualCluster,
                           format_bytes, ring_all_reduce_bytes)
from minigrad.distributed.collectives import measure_all_reduce
from minigrad.distributed.ddp import DistributedDataParallel, ddp_vs_one_gpu, max_divergence
from minigrad.distributed.parameter_server import ParameterServer
from minigrad.distributed.pipeline import (SCHEDULES, PipelineParallel, bubble_fraction,
                                    simulate_schedule)
from minigrad.distributed.strategy import STRATEGY_TABLE, recommend_strategy
from minigrad.distributed.tensor_parallel import SequenceParallelMLPBlock, TensorParallelMLP
from minigrad.distributed.zero import ZeRO, zero_comm_bytes_per_gpu, zero_memory_per_gpu
from minigrad.viz import dist as V
from minigrad.viz import savefig
from IPython.display import display  # the figures the tour saves are shown here, not saved

minigrad.manual_seed(0)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. A cluster of virtual GPUs
# Every allocation is booked by kind. Crossing the budget raises an out-of-memory error that
# names the GPU, what it holds and what was asked for.

# %%
cluster = VirtualCluster(4, memory_per_gpu=1000, latency=1e-5, bandwidth=1e11)
gpu = cluster.gpus[2]
gpu.alloc("weights", 600, "parameters")
gpu.alloc("adam m", 300, "optimizer states")
try:
    gpu.alloc("activations of layer 1", 200, "activations")
except OutOfMemoryError as e:
    print(e)

# %% [markdown]
# ## 2. Collectives, and the ring all-reduce step by step
# `cluster.all_reduce(arrays)` takes one array per GPU and leaves the sum on every GPU (in
# place, as `torch.distributed`). The ring does it in two phases: a **reduce-scatter** ($p-1$
# steps, each GPU passes one chunk to its neighbour, which adds it in) and an **all-gather**
# ($p-1$ steps passing the finished chunks around). Each cell below counts how many GPUs'
# values a chunk already holds.

# %%
display(V.ring_allreduce_steps(4))

# %%
xs = [rng.standard_normal(10) for _ in range(4)]
out = VirtualCluster(4).all_reduce([x.copy() for x in xs])
print("equals np.sum:", all(np.allclose(o, np.sum(xs, axis=0)) for o in out))

print(f"{'p':>3} {'n':>7} {'measured bytes/GPU':>20} {'2(p-1)/p n 4':>14}")
for p in (2, 4, 8):
    for n in (1024, 4096):
        c = VirtualCluster(p)
        c.all_reduce([np.ones(n, np.float32) for _ in range(p)])
        print(f"{p:>3} {n:>7} {c.stats.bytes_sent[0]:>20,} {ring_all_reduce_bytes(n, p, 4):>14,.0f}")

# %% [markdown]
# Naive (everyone to GPU 0 and back), tree (binomial, $2\log_2 p$ rounds) and ring, against
# the alpha-beta formulas (links of 10 us and 10 GB/s): the tree wins for small messages (few latencies), the ring for large
# ones (it is bandwidth-optimal: no algorithm sends less per GPU).

# %%
sizes = [2**k for k in range(8, 22, 2)]
algs = ("naive", "tree", "ring")
meas = {a: [measure_all_reduce(8, s, a, bandwidth=1e10) for s in sizes] for a in algs}
worlds = [2, 4, 8, 16]
meas_p = {a: [measure_all_reduce(w, 2**20, a, bandwidth=1e10) for w in worlds] for a in algs}
fig = V.collective_costs(sizes, {a: [m["time"] for m in meas[a]] for a in algs},
                         {a: [m["formula"] for m in meas[a]] for a in algs}, worlds,
                         {a: [m["time"] for m in meas_p[a]] for a in algs},
                         {a: [m["formula"] for m in meas_p[a]] for a in algs}, 2**20)
display(fig)
for a in algs:
    m = meas_p[a][worlds.index(8)]
    print(f"{a:>5}: 1 MiB on 8 GPUs, simulated {m['time'] * 1e3:.3f} ms, formula "
          f"{m['formula'] * 1e3:.3f} ms, busiest GPU sent {format_bytes(m['bytes_max'])}")

# %% [markdown]
# Bytes sent by the busiest GPU for a 1 MiB all-reduce, measured against the closed forms:
# naive $(p-1)n$ (GPU 0 sends the sum to everyone), tree $\lceil\log_2 p\rceil n$ (the root
# sends once per round), ring $2\frac{p-1}{p}n$ (falls towards $2n$ as $p$ grows).

# %%
closed = {"naive": lambda p, n: (p - 1) * n, "tree": lambda p, n: np.ceil(np.log2(p)) * n,
          "ring": lambda p, n: 2 * (p - 1) / p * n}
print(f"{'p':>3} " + " ".join(f"{a + ' measured':>15} {a + ' formula':>14}" for a in algs))
for i, w in enumerate(worlds):
    print(f"{w:>3} " + " ".join(f"{meas_p[a][i]['bytes_max']:>15,} {closed[a](w, 2**20):>14,.0f}"
                                for a in algs))

# %% [markdown]
# ### Faults and stragglers
# Every message travels in packets with a checksum. A bit flipped on the wire is detected and
# the collective aborts instead of returning a wrong sum. A slow GPU (a straggler) delays
# everyone at the next collective.

# %%
c = VirtualCluster(4)
c.faults.corrupt(src=1, word=3, bit=20)
try:
    c.all_reduce([np.ones(100) for _ in range(4)])
except ChecksumError as e:
    print(type(e).__name__, ":", e)

c = VirtualCluster(4, flops_per_second=1e12, bandwidth=1e10)
c.set_slowdown(2, 2.5)
for r in range(4):
    c.compute(r, 1e8, "backward")
c.all_reduce([np.ones(2**16, np.float32) for _ in range(4)])
savefig(V.timeline(c.trace, "GPU 2 is a straggler: the all-reduce waits for it"), "ch08_straggler")

# %% [markdown]
# ## 3. Data parallelism
# Each GPU holds a full replica, takes a quarter of the batch, and the gradients are averaged.
# Since the loss is a mean over examples, the average of the four quarter-batch gradients is
# the whole-batch gradient: 4 GPUs train exactly like one GPU on the whole batch.

# %%
model = nn.MLP([32, 64, 64, 64, 8], dtype=np.float64)
X, Y = rng.standard_normal((64, 32)), rng.integers(0, 8, 64)


def make_adam(params):
    return optim.Adam(params, lr=1e-2)


ddp_cluster = VirtualCluster(4, latency=2e-7, bandwidth=4e9, flops_per_second=1e10)
# `ddp_vs_one_gpu` runs `ddp.train_step` and a one-GPU copy of the model side by side:
ddp, diff = ddp_vs_one_gpu(model, ddp_cluster, make_adam, X, Y, F.cross_entropy, steps=3,
                           bucket_cap_bytes=64 * 65 * 8)
print("max |DDP replica - one GPU| =", diff)
display(V.timeline(ddp_cluster.trace, "DDP: each bucket is all-reduced while backward goes on"))

# %% [markdown]
# Overlap: the same step with the all-reduce issued only after the whole backward.

# %%
for overlap in (True, False):
    c = VirtualCluster(4, latency=2e-7, bandwidth=4e9, flops_per_second=1e10)
    d = DistributedDataParallel(nn.MLP([32, 64, 64, 64, 8], dtype=np.float64), c, make_adam,
                                bucket_cap_bytes=64 * 65 * 8, overlap=overlap)
    d.train_step(X, Y, F.cross_entropy)
    print(f"overlap={overlap!s:5}: step takes {c.time * 1e6:.1f} us (simulated)")

# %% [markdown]
# A parameter server sends the same result through one GPU: it receives and sends
# $(p-1) n$ bytes per step, against $2\frac{p-1}{p} n$ for each GPU of a ring.

# %%
c = VirtualCluster(4)
ps = ParameterServer(nn.MLP([32, 64, 8], dtype=np.float64), c, make_adam)
c.stats.reset()
ps.train_step(X, Y, F.cross_entropy)
print("parameter server, bytes sent per GPU:", c.stats.bytes_sent.tolist())
c = VirtualCluster(4)
d = DistributedDataParallel(nn.MLP([32, 64, 8], dtype=np.float64), c, make_adam)
c.stats.reset()
d.train_step(X, Y, F.cross_entropy)
print("DDP (ring),       bytes sent per GPU:", c.stats.bytes_sent.tolist())

# %% [markdown]
# What happens if one replica skips a synchronization: it steps on its own gradient, and the
# replicas are no longer the same model.

# %%
d = DistributedDataParallel(nn.MLP([32, 64, 8], dtype=np.float64), VirtualCluster(4), make_adam)
for step in range(4):
    d.train_step(X, Y, F.cross_entropy, skip_sync=(3,) if step == 1 else ())
    print(f"step {step}: max |replica - replica 0| = {max_divergence(d.replicas):.2e}")

# %% [markdown]
# ## 4. ZeRO and FSDP: shard the model states
# Mixed-precision Adam keeps $2 + 2 + K$ bytes per parameter ($K = 12$: fp32 master weights,
# $m$ and $v$). ZeRO-1 shards the optimizer states over the $N$ GPUs, ZeRO-2 also the
# gradients, ZeRO-3 (FSDP) also the weights, which are gathered layer by layer just before use.
# The bars are measured after a training step: the bytes of the arrays GPU 0 really keeps
# (`held_memory_per_gpu`), beside what the engine booked in its ledger and the paper's formula.

# %%
big = nn.MLP([64, 128, 128, 16])
psi = big.num_parameters()
Xb, Yb = rng.standard_normal((16, 64)), rng.integers(0, 16, 16)
measured = {}
for stage in range(4):
    z = ZeRO(big, VirtualCluster(8), stage=stage)
    z.train_step(Xb, Yb, F.cross_entropy)
    formula = zero_memory_per_gpu(z.num_params_padded, 8, stage)
    measured["DDP" if stage == 0 else f"ZeRO-{stage}"] = z.held_memory_per_gpu(0)
    print(f"stage {stage}: measured {sum(z.held_memory_per_gpu(0).values()):>8,} B   "
          f"booked {sum(z.memory_per_gpu(0).values()):>8,} B   "
          f"formula {sum(formula.values()):>10,.0f} B")
budget = 16 * psi // 3
display(V.zero_memory_bars(measured, budget, f"Model states per GPU, {psi:,} parameters, 8 GPUs"))

# %% [markdown]
# With the red budget, DDP runs out of memory and ZeRO-3 trains; ZeRO-3 sends 1.5x DDP's bytes
# (the weights are gathered for forward and again for backward). ZeRO-3 in fp64 trains exactly
# like DDP.

# %%
try:
    ZeRO(big, VirtualCluster(8, memory_per_gpu=budget), stage=0)
except OutOfMemoryError as e:
    print("DDP:", str(e)[:120], "...")
c = VirtualCluster(8, memory_per_gpu=budget)
z3 = ZeRO(big, c, stage=3)
c.stats.reset()
z3.train_step(rng.standard_normal((16, 64)), rng.integers(0, 16, 16), F.cross_entropy)
print(f"ZeRO-3 peak {format_bytes(max(g.peak for g in c.gpus))} of {format_bytes(budget)}; "
      f"sent {c.stats.bytes_sent[0]:,} B/GPU, formula "
      f"{zero_comm_bytes_per_gpu(z3.num_params_padded, 8, 3):,.0f}")

small = nn.MLP([8, 16, 16, 4], dtype=np.float64)
Xs, Ys = rng.standard_normal((16, 8)), rng.integers(0, 4, 16)
z = ZeRO(copy.deepcopy(small), VirtualCluster(4), stage=3, lr=1e-2, param_dtype=np.float64,
         master_dtype=np.float64)
d = DistributedDataParallel(copy.deepcopy(small), VirtualCluster(4), make_adam)
for _ in range(3):
    z.train_step(Xs, Ys, F.cross_entropy)
    d.train_step(Xs, Ys, F.cross_entropy)
print("max |ZeRO-3 - DDP| =", max(float(np.abs(a - b.data).max())
                                  for a, b in zip(z.full_parameters(0), d.replicas[0].parameters())))

# %% [markdown]
# Hybrid sharding: shard inside a node (fast links), replicate across nodes. Only gradient
# shards cross the slow links.

# %%
for g in (None, 2):
    c = VirtualCluster(4, gpus_per_node=2, inter_node_latency=1e-4, inter_node_bandwidth=1e9)
    z = ZeRO(big, c, stage=3, shard_group_size=g)
    c.reset()
    z.train_step(rng.standard_normal((16, 64)), rng.integers(0, 16, 16), F.cross_entropy)
    name = "full sharding over 4" if g is None else "hybrid: shard in node"
    print(f"{name:>22}: {sum(z.memory_per_gpu(0).values()):>7,} B/GPU, step {c.time * 1e3:.2f} ms")

# %% [markdown]
# ## 5. Pipeline parallelism
# The layers are split into $p$ stages on $p$ GPUs, the batch into $m$ micro-batches. GPipe
# runs all forwards, then all backwards; 1F1B alternates once the pipeline is full. Both idle
# a fraction $(p-1)/(m+p-1)$ of the time; 1F1B holds far fewer activations.

# %%
for name in ("gpipe", "1f1b"):
    events, span = simulate_schedule(SCHEDULES[name](4, 8), t_forward=1.0, t_backward=2.0)
    display(V.pipeline_schedule(events, 4, f"{name}: 4 stages, 8 micro-batches "
                                f"(bubble {1 - sum(e[2] for e in events) / (4 * span):.3f})"))
ms = [1, 2, 4, 8, 16, 32]
meas_b, form_b = {}, {}
for p in (2, 4, 8):
    meas_b[p], form_b[p] = [], []
    for m in ms:
        events, span = simulate_schedule(SCHEDULES["1f1b"](p, m))
        meas_b[p].append(1 - sum(e[2] for e in events) / (p * span))
        form_b[p].append(bubble_fraction(p, m))
display(V.bubble_curves(ms, meas_b, form_b))

# %% [markdown]
# On real layers: the pipeline's gradients equal the unsplit model's, and the measured bubble
# (from the GPUs' compute timelines) is the formula.

# %%
for name in ("gpipe", "1f1b"):
    pmodel = nn.Sequential(*[nn.Linear(16, 16, dtype=np.float64) for _ in range(4)])
    ref = copy.deepcopy(pmodel)
    Xp, Yp = rng.standard_normal((32, 16)), rng.standard_normal((32, 16))
    c = VirtualCluster(4, latency=0.0, bandwidth=1e300)
    pp = PipelineParallel(pmodel, c, num_microbatches=8, schedule=name)
    pp.train_step(Xp, Yp, F.mse_loss)
    F.mse_loss(ref(Tensor(Xp)), Tensor(Yp)).backward()
    gdiff = max(float(np.abs(a.grad - b.grad).max())
                for a, b in zip(pmodel.parameters(), ref.parameters()))
    print(f"{name:>5}: max |grad - unsplit grad| {gdiff:.1e}, bubble {pp.bubble():.4f} "
          f"(formula {bubble_fraction(4, 8):.4f}), peak memory per stage "
          f"{[format_bytes(g.peak) for g in c.gpus]}")

# %% [markdown]
# ## 6. Tensor and sequence parallelism
# A column-parallel Linear gives each GPU a slice of the outputs (no communication); a
# row-parallel Linear gives each GPU a slice of the inputs and needs an all-reduce of the
# partial sums. The MLP pairs them: one all-reduce forward, one backward.

# %%
display(V.tensor_parallel_split(4))
fc1, fc2 = nn.Linear(16, 64, dtype=np.float64), nn.Linear(64, 16, dtype=np.float64)
x = rng.standard_normal((2, 5, 16))
c = VirtualCluster(4)
tp = TensorParallelMLP(fc1, fc2, c)
ys = tp([Tensor(x) for _ in range(4)])
print("max |TP MLP - MLP| =", float(np.abs(ys[1].data - fc2(F.gelu(fc1(Tensor(x)))).data).max()))
print("forward bytes/GPU:", c.stats.bytes_sent[0], "= one all-reduce of the output:",
      ring_all_reduce_bytes(x.size, 4, 8))

# %% [markdown]
# Sequence parallelism: LayerNorm and dropout run on $T/p$ tokens per GPU; the all-reduce
# becomes a reduce-scatter plus an all-gather (the same bytes), and those regions' activations
# shrink by $p$.

# %%
ln = nn.LayerNorm(16, dtype=np.float64)
x = rng.standard_normal((2, 8, 16))
for sp in (False, True):
    c = VirtualCluster(4)
    blk = SequenceParallelMLPBlock(ln, fc1, fc2, c, sequence_parallel=sp)
    inputs = [np.ascontiguousarray(a) for a in np.array_split(x, 4, axis=1)] if sp else [x] * 4
    blk([Tensor(a) for a in inputs])
    print(f"sequence_parallel={sp!s:5}: norm/dropout activations {blk.activation_bytes(0):>5} B "
          f"per GPU, bytes sent {c.stats.bytes_sent[0]}")

# %% [markdown]
# ## 7. Which strategy?

# %%
for row in STRATEGY_TABLE:
    print(f"{row['situation']:<34} -> {row['strategy']:<44} {row['communication per step']}")
print()
GB = 1e9
for params, gpus, layer, slow in ((1e8, 8, 0, False), (7e9, 8, 0, False), (3e10, 8, 0, False),
                                  (2e10, 64, 0, True), (1e9, 8, 3e10, False)):
    rec = recommend_strategy(int(params), 80 * GB, gpus, int(layer), slow_inter_node=slow)
    print(f"{params / 1e9:>5.1f}B params, {gpus} x 80 GB: {rec.strategy} ({rec.reason})")

# %% [markdown]
# ## The same per-rank code on real processes
# Everything above ran whole-cluster classes on virtual GPUs. `minigrad.distributed` is also
# shaped like `torch.distributed`: a script is written once *per rank*
# (`dist.init_process_group()`, `dist.get_rank()`, `dist.all_reduce(x)` ...), and runs either on
# the simulator (every rank a thread, meeting in the cluster's collectives: bytes, clocks,
# faults kept) or as real processes under MPI (`minigrad launch -n 4 --backend mpi script.py`).
# `compare_backends` trains chapter 2's MLP with the per-rank DDP
# (`minigrad.distributed.spmd`) on 2 and 4 ranks both ways: the losses agree to the last bit,
# the bytes rank 0 sent agree exactly (the MPI run uses the chapter's ring over `Sendrecv`),
# and the wall time is what real processes cost on this machine (start-up and imports included).

# %%
from minigrad.distributed.examples.common import compare_backends  # noqa: E402

try:
    import mpi4py  # noqa: F401
    have_mpi = True
except ImportError:
    have_mpi = False
if have_mpi:
    for row in compare_backends("ddp", world_sizes=(2, 4), steps=2):
        print(f"{row['ranks']} ranks {row['backend']:>3}: final loss {row['final loss']:.15f}, "
              f"rank 0 sent {row['bytes sent by rank 0']:>8,} B, training {row['train ms']:6.0f} ms, "
              f"whole run {row['launch s']:.1f} s")
else:
    print('MPI is not installed: pip install "minigrad[mpi]" to run this cell')

# %% [markdown]
# ## Exercises
# Coding (fenced in `minigrad/distributed`): `ch8.ring_reduce_scatter`, `ch8.ring_all_gather`,
# `ch8.bubble_fraction`, `ch8.zero_memory`, `ch8.split_linear`, `ch8.ddp_bucket_allreduce`.
# Exam-style questions (in `answers.toml`): ring bytes and time, the bubble and ZeRO formulas,
# ZeRO-2 memory of a 7.5B model, ZeRO-3's communication, which strategy, which collective
# follows a row-parallel Linear.
#
# List them with `minigrad exercises list`, and grade your copy with:
#
# ```
# minigrad grade
# ```

# %%
from minigrad.exercises import show  # noqa: E402

show(chapter=8)
