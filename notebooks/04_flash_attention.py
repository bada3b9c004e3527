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
# # Chapter 4 — FlashAttention
#
# Standard attention writes the whole N x N score matrix to memory, reads it
# back for the softmax, writes the probabilities, and reads them again to
# multiply by V. On a GPU that traffic, not the arithmetic, sets the time; and
# the N x N buffer sets the memory. FlashAttention (Dao et al. 2022) computes
# the *same* result tile by tile and never forms the matrix. This chapter shows:
#
# 1. the memory hierarchy and an IO model: HBM bytes of standard versus tiled
#    attention, Theta(N^2) against Theta(N^2 d^2 / M);
# 2. the online softmax (Milakov & Gimelshein 2018): a running max and a
#    running sum, rescaled as blocks arrive, exact to rounding;
# 3. the tiled forward, both loop orders (FlashAttention-1 and -2), and the
#    causal tiles it skips;
# 4. the backward pass, which recomputes scores from the saved log-sum-exp;
# 5. memory measured with `tracemalloc` as N grows: quadratic against linear;
# 6. speed on this CPU: what made the compiled kernel fast (and what did not);
# 7. overlapping the next tile's load with this tile's compute
#    (FlashAttention-3's idea) on a simulated timeline.
# 8. the IO model against a real GPU: PyTorch's two attention backends on an
#    NVIDIA H200, bytes measured with Nsight Compute.
#
# By the end you can compute the bytes of a score matrix and the HBM traffic of
# both algorithms for any N, d and SRAM size, carry out one step of the online
# softmax by hand, count the tiles a causal kernel skips, and explain why the
# backward needs only one number per row.

# %%
import time

import numpy as np

import minigrad
from minigrad import Tensor
from minigrad import functional as F
from minigrad.flash import (compare_with_sdpa, flash_attention_forward, io_model, kernels,
                            online_softmax, timeline)
from minigrad.flash import reference as R
from minigrad.viz import flash as vf
from minigrad.viz import savefig

minigrad.manual_seed(0)
rng = minigrad.get_rng()
# A student copy of this chapter ships no numba kernels (they would restate the
# exercises): every impl then runs the readable tiles, the student's own code.
COMPILED = hasattr(kernels, "flash_forward")

# %% [markdown]
# ## 1. Bytes, not flops
# A GPU has a large slow memory (HBM, tens of GB at a few TB/s) and a small fast
# one next to each compute unit (SRAM, a few hundred KB at ~20 TB/s). Standard
# attention (the paper's Algorithm 0) sends S = QK^T and P = softmax(S) through
# HBM. For one head in fp16 the score matrix alone is:

# %%
for n in (2048, 8192, 32768):
    print(f"N = {n:>6}: score matrix {io_model.score_matrix_bytes(n, itemsize=2) / 2**20:>8.0f} MiB per head")

# %% [markdown]
# `io_model` counts the HBM bytes of one forward pass per head. Standard
# attention moves 4N^2 + 4Nd elements. The tiled algorithm, with an SRAM of M
# elements holding one block each of Q, K, V and O (block sizes
# B_c = ceil(M / 4d), B_r = min(B_c, d)), reads K and V once and Q, O once per
# K/V block: about 12 N^2 d^2 / M elements, the paper's Theta(N^2 d^2 / M).

# %%
d, N = 64, 8192
std = io_model.standard_attention_io(N, d, itemsize=2)
for M in (16 * 1024, 64 * 1024):
    tiled = io_model.flash_attention_io(N, d, M=M, itemsize=2)
    bq, bk = io_model.paper_block_sizes(d, M)
    print(f"M = {M // 1024}K: blocks {bq} x {bk}, standard {std.total / 2**20:.0f} MiB, "
          f"tiled {tiled.total / 2**20:.0f} MiB  ({std.total / tiled.total:.1f}x fewer), "
          f"count / (N^2 d^2 / M) = {tiled.total / 2 / io_model.paper_flash_bound(N, d, M):.1f}")

io = io_model.io_curves([512, 1024, 2048, 4096, 8192, 16384], d=d, N=N)
fig = vf.io_vs_n_and_m(*io.values())
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# Both grow as N^2 (the tiled algorithm still does all N^2 dot products); the
# tiled one divides the traffic by about M / d^2, so more SRAM means fewer
# bytes, along the paper's line on the right.

# %% [markdown]
# ## 2. Online softmax
# softmax(x)_j = exp(x_j - m) / l with m = max x and l = sum exp(x - m) seems
# to need all of x before it can start. It does not: keep a running max m and a
# running sum l; when block x_blk arrives,
#
#     m_new = max(m, max(x_blk))
#     l_new = l * exp(m - m_new) + sum(exp(x_blk - m_new))
#
# The factor exp(m - m_new) re-expresses the old sum under the new max. Here a
# row of 24 scores arrives 6 at a time:

# %%
x = rng.standard_normal(24) * 3
y, history = online_softmax(x, block_size=6, return_history=True)
for b, (m, l) in enumerate(history, 1):
    print(f"after block {b}: m = {float(m):6.3f}   l = {float(l):6.3f}")
print("max |online - softmax| =", np.abs(y - F.softmax(Tensor(x)).data).max())
fig = vf.online_softmax_steps(x, history, 6)
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# The running sum falls when a block brings a larger max (old terms shrink by
# exp(m - m_new)) and rises otherwise. Because every exponent is <= 0, scores of
# size 1e4, whose exp overflows float64, are no problem:

# %%
big = np.array([1e4, -1e4, 9990.0, 3.0])
print(online_softmax(big, block_size=1))

# %% [markdown]
# ## 3. The tiled forward pass
# Cut Q into blocks of B_q rows and K, V into blocks of B_k rows. A tile is one
# (Q block, K/V block) pair: `reference.forward_tile` computes its B_q x B_k
# scores, folds them into the Q block's running (m, l) and accumulates
# P V_j into an unnormalized output. After the last K/V block,
# `finalize_rows` divides by l and keeps lse = m + log l. Nothing of size
# L x S is ever held. The result equals standard attention:

# %%
q, k, v = (rng.standard_normal((2, 4, 300, 32)) for _ in range(3))
o_ref, lse_ref = R.standard_attention(q, k, v, scale=32 ** -0.5, is_causal=True)
for loop_order in ("kv_outer", "q_outer"):
    for impl in ("numpy", "numba"):
        out = flash_attention_forward(q, k, v, is_causal=True, block_size_q=64, block_size_k=32,
                                      loop_order=loop_order, impl=impl)
        print(f"{loop_order:>8} {impl:>5}: max |O - O_standard| = {np.abs(out.o - o_ref).max():.1e}, "
              f"max |lse diff| = {np.abs(out.lse - lse_ref).max():.1e}, "
              f"tiles skipped per head = {out.tiles_skipped}")

# %% [markdown]
# **Loop orders.** FlashAttention-1 keeps a K/V block in SRAM and visits every
# Q block, so each Q block's O, m and l travel to HBM and back once per K/V
# block. FlashAttention-2 (Dao 2023) swaps the loops: a Q block stays in SRAM
# while K/V blocks stream past, and its output is normalized and written once.
# Same numbers, less traffic, and Q blocks are independent (the GPU runs them
# in parallel). The IO model counts the difference for 64 x 64 tiles:

# %%
for order in ("kv_outer", "q_outer"):
    io = io_model.flash_attention_io(4096, 64, block_q=64, block_k=64, loop_order=order, itemsize=2)
    print(f"{order:>8}: reads {io.reads / 2**20:5.0f} MiB, writes {io.writes / 2**20:5.1f} MiB")

# %% [markdown]
# Reads are about equal (each tile reads a 64-row block either way); the
# writes are where FlashAttention-2 saves: O leaves SRAM once.
#
# **Causal tiles.** With a causal mask, a tile whose first key comes after its
# last query is all masked: the kernel never computes it. Tiles that cross the
# diagonal (red) need a mask; tiles below it need none.

# %%
tiles = io_model.causal_tiles(n=100, block_q=32, block_k=16, rng=rng)
print(f"N = {tiles['n']}, blocks {tiles['block_q']} x {tiles['block_k']}: "
      f"{tiles['computed']} tiles computed, {tiles['skipped']} skipped")
fig = vf.tile_grid(tiles["n"], tiles["n"], tiles["block_q"], tiles["block_k"], True,
                   scores=tiles["weights"])
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# For square blocks and N = T B, the skipped tiles are the T(T-1)/2 above the
# diagonal: almost half the work, which is why causal flash attention runs
# about twice as fast as full.

# %% [markdown]
# ## 4. The backward pass recomputes
# Backward needs P. Standard attention saved it (N x N). FlashAttention saves
# only O and lse, one number per row, and recomputes each tile's scores from Q
# and K: P = exp(S - lse). With D = rowsum(dO * O), which equals
# rowsum(P * dP), the softmax backward of one tile needs no other tile:
#
#     dV_j += P^T dO_i,   dP = dO_i V_j^T,   dS = P * (dP - D_i),
#     dQ_i += scale dS K_j,   dK_j += scale dS^T Q_i
#
# More flops (S is computed twice), far fewer bytes. The gradients agree with
# chapter 3's `F.scaled_dot_product_attention`:

# %%
# float64, (2, 2, 77, 16), blocks of 16 x 32: sum(O) backward through both
diffs = compare_with_sdpa((2, 2, 77, 16), block_size_q=16, block_size_k=32, rng=rng)
for name in "QKV":
    print(f"max |d{name} flash - d{name} sdpa| = {diffs['d' + name.lower()]:.1e}")

# %% [markdown]
# ## 5. Memory, measured
# `io_model.measure_peak_bytes` runs a call under `tracemalloc` and reports the
# peak of what it allocated beyond its inputs. Standard attention allocates the
# score matrix (8 heads x N x N float32); the flash kernel allocates O, lse and
# a few tiles.

# %%
mem = io_model.peak_memory_vs_n([256, 512, 1024, 2048], rng=rng)
for n, sb, fb in zip(mem["ns"], mem["standard"], mem["flash"]):
    print(f"N = {n:>5}: standard {sb / 2**20:7.1f} MiB, flash {fb / 2**20:5.1f} MiB")
slope_naive = np.polyfit(np.log(mem["ns"][1:]), np.log(mem["standard"][1:]), 1)[0]
slope_flash = np.polyfit(np.log(mem["ns"][1:]), np.log(mem["flash"][1:]), 1)[0]
print(f"log-log slope: standard {slope_naive:.2f} (quadratic), flash {slope_flash:.2f} (linear)")
fig = vf.memory_vs_n(mem["ns"], mem["standard"], mem["flash"], mem["score_bytes"])
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# ## 6. Speed on this CPU, and what it teaches
# The same tiled algorithm, three ways (B*H = 8, N = 1024, d = 64, float32):
#
# - `numpy`: the readable reference, a Python loop over tiles;
# - `numba_scalar`: compiled, but every dot product and exp is a scalar loop
#   (`math.exp` is a call into libm per element);
# - `numba`: compiled, each tile's two products go through BLAS (`np.dot`
#   inside numba) and exp is a short polynomial the compiler turns into SIMD
#   instructions, 8 floats at a time.

# %%
def best_ms(fn, repeat=2):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times)


qa, ka, va = (rng.standard_normal((8, 1024, 64)).astype(np.float32) for _ in range(3))
times = {
    "standard (NumPy, N x N)": best_ms(lambda: R.standard_attention(qa, ka, va, scale=0.125, is_causal=False)),
    "flash, numpy reference": best_ms(lambda: flash_attention_forward(qa, ka, va, impl="numpy")),
}
if COMPILED:
    for impl in ("numba", "numba_scalar"):   # compile (or load from cache) before timing
        flash_attention_forward(qa[:1, :64], ka[:1, :64], va[:1, :64], impl=impl)
    times["flash, numba scalar loops"] = best_ms(
        lambda: flash_attention_forward(qa, ka, va, impl="numba_scalar"))
    times["flash, numba BLAS tiles"] = best_ms(lambda: flash_attention_forward(qa, ka, va, impl="numba"))
else:
    print("(this student copy has no compiled kernels: the instructor's copy times them)")
for name, t in times.items():
    print(f"{name:<28} {t:8.1f} ms   ({t / times['standard (NumPy, N x N)']:.2f}x standard)")
fig = vf.kernel_times(list(times), list(times.values()), "forward, B*H=8, N=1024, d=64, float32")
savefig(fig, "ch04_kernel_times")
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# **The lesson.** Compiling the loops is not what makes them fast: the scalar
# version does the same arithmetic as the BLAS version and is several times
# slower, often slower than standard attention, which does *more* work (the
# whole N x N matrix) but does it in BLAS and in NumPy's vectorized exp. Speed
# comes from arithmetic per instruction: a BLAS matrix multiply reuses each
# loaded value across a whole register block and issues one fused
# multiply-add on 8 floats at once; a scalar loop does one multiply-add per
# instruction, and a libm `exp` call per score costs more than the two dot
# products it follows. GPUs teach the same lesson at a larger scale:
# FlashAttention is fast because its tiles feed the tensor cores and its
# non-matmul work (exp, rescaling) is kept small, FlashAttention-2's main
# change. On a CPU the caches are large enough that standard attention's
# traffic hurts less than on a GPU; the memory saving (section 5) is the part
# that carries over whole. `benchmarks/bench_flash.py` measures N up to 4096,
# causal masks and torch's fused kernel.

# %% [markdown]
# ## 7. Overlapping loads with compute
# Within a Q block's inner loop, each tile must load K_j and V_j (bytes / HBM
# bandwidth) and then compute (flops / throughput). Done one after the other,
# the compute units idle during every load. With two SRAM buffers the next
# tile loads while this one computes, and the slower of the two sets the pace:
# total = t_load + (n - 1) max(t_load, t_compute) + t_compute. FlashAttention-3
# (Shah et al. 2024) does this on H100s with asynchronous copies and separate
# producer and consumer warps. Times below are for an H100-like fp16 tile of
# 128 x 64 with d = 64.

# %%
t_load, t_compute = timeline.tile_times(128, 64, 64, itemsize=2)
print(f"one tile: load {t_load * 1e9:.1f} ns, compute {t_compute * 1e9:.1f} ns")
seq, ovl = (timeline.simulate(8, t_load, t_compute, overlap) for overlap in (False, True))
print(f"8 tiles: {seq.total * 1e9:.1f} ns one after the other, {ovl.total * 1e9:.1f} ns overlapped "
      f"(closed form {timeline.total_time(8, t_load, t_compute, True) * 1e9:.1f} ns)")
fig = vf.timelines(seq, ovl, unit="ns")
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# ## 8. On a real GPU: the IO model against an H200
# Everything above counts bytes; here they are measured. PyTorch's
# `scaled_dot_product_attention` ran on an NVIDIA H200 in bf16 with its two
# backends, the math one (materialising S and P, as Algorithm 0) and the flash
# one (FlashAttention-2), at N = 512 ... 16384 and d = 64, 128, with
# B H N = 2^19 rows per call (H = 16), so Q, K, V and O are 64 MiB each at
# d = 64, beyond the 60 MiB L2. Nsight Compute read the DRAM bytes (and the L2
# bytes) of the kernels of one call per size; CUDA events timed the calls. The
# scripts are in `benchmarks/gpu/`, the CSVs in `minigrad/data/measured/`.
# The model's M is the H200's shared memory (SRAM) per SM, in bf16 elements.

# %%
from minigrad.data.measurements import read_measurement  # noqa: E402
from minigrad.flash import measured as FM  # noqa: E402
from minigrad.scale import GPUS  # noqa: E402

h200 = GPUS["H200"]
M = FM.sram_elements(h200.sram_per_sm)
meta = read_measurement("h200_attention_dram").meta
print(f"{meta['device']}: driver {meta['driver']}, CUDA {meta['cuda']}, PyTorch {meta['torch']}, "
      f"{meta['ncu']}, measured {meta['date_utc']} UTC")
print(f"M = {h200.sram_per_sm // 1024} KB per SM = {M:,} bf16 elements; the paper's blocks "
      f"(q_outer) at d = 64: {io_model.paper_block_sizes(64, M, 'q_outer')}, at d = 128: "
      f"{io_model.paper_block_sizes(128, M, 'q_outer')}")
rows = FM.attention_io_comparison(M)
print(f"{'':6}{'N':>6} {'d':>4} {'measured GB':>12} {'model GB':>9} {'measured/model':>15}"
      f"{'count GB':>11} {'L2 GB':>7}")
for r in rows:
    model = r["standard"] if r["backend"] == "math" else r["sram_model"]
    other = r["kernels"] if r["backend"] == "math" else r["compulsory"]
    print(f"{r['backend']:<6}{r['N']:>6} {r['d']:>4} {r['measured'] / 1e9:>12.3f} "
          f"{model / 1e9:>9.3f} {r['measured'] / model:>15.2f}{other / 1e9:>11.3f} "
          f"{r['measured_l2'] / 1e9:>7.2f}")
fig = vf.measured_io(rows)
savefig(fig, "ch04_h200_io")
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# ("model" is Algorithm 0 with fp32 scores for math and the tiled model with
# M = one SM's SRAM for flash; "count" is every kernel of the math call
# counted, `FM.sdpa_math_io`, and for flash the compulsory traffic: Q, K, V
# read once, O and the logsumexp written once.)
#
# Three things the model leaves out show up at once:
#
# - **The math backend moves 2.25x Algorithm 0's bytes.** For bf16 inputs it
#   upcasts to fp32 (4-byte scores), and besides writing S, reading it, writing P
#   and reading P it computes a mask of -inf scores (safe softmax: read S, write
#   a bool), reduces it per row, rewrites P through `where`, and casts the
#   attention weights back to bf16: 36 bytes per score instead of 16. Counting
#   every kernel (`sdpa_math_io`) lands within 3% of the counter.
# - **The flash backend's DRAM traffic is the compulsory one.** The model's
#   re-reads of K and V for every block of Q happen, but the 60 MiB L2 serves
#   them: DRAM sees each of Q, K, V, O about once (0.98-1.18x), while the L2
#   traffic follows the model with the kernel's own 128 x 128 (d = 64) or
#   128 x 64 (d = 128) tiles. On this chip the model's "HBM" is the L2. The
#   model with M = 228 KB predicts bigger blocks than the kernel uses, so it
#   counts fewer bytes than even the L2 serves; against DRAM it overcounts by a
#   factor that grows with N (18x at N = 16384, d = 64).
# - Either way the N^2 term is what separates the two: 300 GB against 0.3 GB
#   per call at N = 16384.
#
# The memory, the time and the out-of-memory point:

# %%
oom = FM.math_oom(64)
print(f"math backend, B H = {oom['heads']} heads, d = 64: fits at N = {oom['last_fit']}, out of "
      f"memory at N = {oom['first_oom']} ({oom['memory_bytes'] / 2**30:.1f} GiB card); counted "
      f"(9 N^2 + 16 N d bytes a head) largest N = {oom['predicted_last_fit']}")
print(f"flash at N = {oom['first_oom']}: "
      f"{FM.sdpa_flash_peak_bytes(oom['first_oom'], 64, oom['heads']) / 2**20:.0f} MiB beyond its inputs")
t = {(r["backend"], int(r["N"]), int(r["d"])): r for r in read_measurement("h200_attention_time").rows}
print(f"{'N':>6} {'d':>4} {'math ms':>8} {'flash ms':>9} {'speed-up':>9} {'flash TFLOP/s':>14} "
      f"{'math peak GB':>13} {'flash peak GB':>14}")
for (backend, n, dd), r in t.items():
    if backend != "flash":
        continue
    m = t[("math", n, dd)]
    flops = 4 * r["B"] * r["H"] * n * n * dd
    print(f"{n:>6} {dd:>4} {m['seconds'] * 1e3:>8.2f} {r['seconds'] * 1e3:>9.3f} "
          f"{m['seconds'] / r['seconds']:>8.1f}x {flops / r['seconds'] / 1e12:>14.0f} "
          f"{m['peak_extra_bytes'] / 1e9:>13.2f} {r['peak_extra_bytes'] / 1e9:>14.3f}")

# %% [markdown]
# The math backend's peak grows as N^2 (S and P in fp32 plus the one-byte mask
# live together) until the 139.8 GiB card runs out between N = 22528 and 24576
# at 32 heads; the count predicts the step. The flash backend's peak is its
# output and one float per row, the same at every N. It is also 12-20x faster: the
# arithmetic is the same (4 N^2 d per head), but the math backend spends its
# time moving 36 bytes per score through DRAM, and in fp32.

# %% [markdown]
# ## Exercises
# Coding exercises, fenced in `minigrad/flash/reference.py` (the readable
# version; the student copy has stubs):
#
# | id | function | what |
# | --- | --- | --- |
# | `ch4.online_softmax` | `online_softmax_update` | fold one block into the running max and sum |
# | `ch4.forward_tile` | `forward_tile` | one tile of the forward: rescale, exp, accumulate P V |
# | `ch4.logsumexp` | `finalize_rows` | normalize the output and keep lse = m + log l |
# | `ch4.backward_tile` | `backward_tile` | one tile's dQ, dK, dV from the recomputed P |
#
# Exam-style questions (answer in `answers.toml`): bytes of an fp16 score
# matrix, standard attention's HBM bytes as a formula in N and d, the traffic
# ratio for a given SRAM size, causal tiles skipped, the overlapped timeline,
# and which loop order writes O once.
#
# ```
# minigrad exercises list     # every exercise and question with its points
# minigrad grade              # grade your copy (code and answers.toml)
# ```

# %%
from minigrad.exercises import show  # noqa: E402

show(chapter=4)
