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
# # Chapter 9: scale -- compute, data and cost
#
# How big is a model, how much arithmetic does training it take, how much data should it
# see, how much memory does it need, and is a given step limited by arithmetic or by memory
# traffic? Everything here is a few lines of arithmetic on a model's **config**, which
# `minigrad.scale` holds for real, published architectures (GPT-2, GPT-3, Llama 2 and 3,
# Chinchilla), checked against minigrad's own modules and against this machine.
#
# By the end you can compute:
# - the **parameter count** of a transformer from its config (attention with grouped-query
#   heads, plain or gated MLP, norms, embeddings), to the parameter for released models;
# - the **training FLOPs** $C \approx 6ND$ (2 forward + 4 backward per weight per token) and
#   attention's extra $12\,L\,T\,d$ per token;
# - the **compute-optimal** split of a budget: $D \approx 20N$ (Chinchilla), so
#   $N = \sqrt{C/120}$;
# - the **memory** to hold (weights at 32/16/8/4 bits), to train (16 bytes per parameter
#   with mixed-precision Adam, split by ZeRO stage; activations; the KV cache to serve);
# - **arithmetic intensity** and the **roofline** $\min(P, I\,W)$: when a step is
#   memory-bound and when compute-bound, on an H100, on this machine and on a real H200,
#   measured;
# - **days and dollars** of a run from $6ND / (n\,P\,\mathrm{MFU})$.

# %%
import numpy as np

import minigrad
import minigrad.scale as S
from minigrad.models import GPTConfig, TinyGPT
from minigrad.viz import savefig
from minigrad.viz import scale as V

minigrad.manual_seed(0)

# %% [markdown]
# ## 1. Parameters from a config
# One block of width $d$ with $H_{kv}$ key/value heads of size $D$ and MLP width $f$ holds
# $2d^2 + 2d\,H_{kv}D$ attention weights (q and o are $d\times d$, k and v $d \times H_{kv}D$),
# $2df$ MLP weights ($3df$ with a gated SwiGLU MLP), and two norms. Add the token embedding
# $Vd$, learned positions (GPT), a final norm and an untied output head $Vd$.

# %%
print(f"{'model':<15}{'d':>6}{'L':>4}{'H':>4}{'kv':>4}{'d_ff':>7}  {'formula':>17}  "
      f"{'published':>17}  diff")
for name, c in S.CONFIGS.items():
    n = S.num_parameters(c)
    print(f"{name:<15}{c.d_model:>6}{c.n_layers:>4}{c.n_heads:>4}{c.kv_heads:>4}{c.d_ff:>7}  "
          f"{n:>17,}  {c.published_params:>17,.0f}  {n / c.published_params - 1:+.2%}")

# %% [markdown]
# Released weights (GPT-2, Llama) match to the parameter. "175B" and "70B" are rounded names:
# GPT-3 is within 0.3%; Chinchilla's paper does not give every width, and $d_{ff}=4d$ gives
# 65B (7% under the name). GPT-2 small is 124M only because its output head is **tied** to
# the embedding: untied it would be 163M.
#
# The same formula counts minigrad's own TinyGPT (GPT-2's architecture, untied head), module
# by module:

# %%
g = GPTConfig(vocab_size=50, block_size=32, n_layer=3, n_head=4, n_kv_head=2, n_embd=64)
model = TinyGPT(g)
mine = S.param_breakdown(S.config_of_tinygpt(g))
print("formula:", mine["total"], "  TinyGPT.num_parameters():", model.num_parameters())
print("attention:", mine["attention"], "=", sum(b.attn.num_parameters() for b in model.h))
print("mlp:      ", mine["mlp"], "=", sum(b.mlp.num_parameters() for b in model.h))

# %%
names = ["gpt2", "gpt2-xl", "llama2-7b", "llama3-8b", "llama2-70b", "chinchilla-70b",
         "gpt3-175b"]
fig = V.param_breakdown_bars({n: S.param_breakdown(S.get_config(n)) for n in names})
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# Embeddings are a third of GPT-2 small and vanish at scale; the MLP holds two thirds or
# more of a large model. Llama-3's 128K vocabulary makes its embedding and head 13% of 8B;
# grouped-query attention (8 KV heads for 64 query heads) halves Llama-2 70B's attention
# share against GPT-3's.
#
# ## 2. Training FLOPs: about 6 per parameter per token
# A weight multiplies each token once in the forward pass (2 FLOPs: a multiply and an add)
# and twice in the backward (the gradient of the input and of the weight): $6N$ per token,
# $C = 6ND$. Attention adds $Q K^T$ and $AV$, $2Td$ each per token per layer:
# $4LTd$ forward, $12LTd$ for training (PaLM's accounting; Kaplan et al.'s forward count has
# half of it, $2LTd$). Below, `minigrad.counting` counts a real forward pass of the TinyGPT
# above; PyTorch's FLOP counter over forward and backward agrees to the FLOP (see the tests).

# %%
B, T = 4, g.block_size
counted = S.count_forward_flops(model, (B, T))
c = S.config_of_tinygpt(g)
tokens = B * T
print(f"counted matmul FLOPs / token : {counted['products'] / tokens:>10,.0f}   "
      f"2N = {2 * S.matmul_parameters(c):,} + biases")
print(f"counted attention / token    : {counted['attention'] / tokens:>10,.0f}   "
      f"4LTd = {S.attention_flops_per_token(c, T, backward=False):,}")
print(f"norms and GELU / token       : {counted['other'] / tokens:>10,.0f}   (left out of 6N)")
print(f"3 x counted forward / token  : {3 * counted['total'] / tokens:>10,.0f}   "
      f"6N + 12LTd = {S.flops_per_token(c, T):,}")

# %% [markdown]
# For a large model the attention term is small at its training context and grows with T:

# %%
gpt3 = S.get_config("gpt3-175b")
for T_ in (2048, 8192, 32768, 131072):
    share = S.attention_flops_per_token(gpt3, T_) / (6 * S.matmul_parameters(gpt3))
    print(f"GPT-3, T = {T_:>6}: attention adds {share:6.1%} to 6N")
print(f"GPT-3 training: 6 N D = {S.training_flops(175e9, 300e9):.3g} FLOPs "
      f"(the paper: 3.14e23)")
print(f"Llama-2 7B on 2T tokens: {S.training_flops(7e9, 2e12):.3g} FLOPs")

# %% [markdown]
# ## 3. Compute-optimal data: about 20 tokens per parameter
# Hoffmann et al. (2022) found that for a budget $C$, parameters and tokens should grow
# together, $D \approx 20N$. Then $C = 6N \cdot 20N$, so $N = \sqrt{C/120}$.

# %%
print(f"{'budget C':>10}  {'N':>10}  {'D':>10}")
for C in (1e20, 1e21, 1e22, 1e23, 5.76e23, 1e24, 1e25):
    n, d = S.compute_optimal(C)
    print(f"{C:>10.2e}  {n / 1e9:>9.2f}B  {d / 1e9:>9.0f}B")
n, d = S.compute_optimal(S.training_flops(175e9, 300e9))
print(f"\nGPT-3: {S.tokens_per_param(175e9, 300e9):.1f} tokens per parameter. "
      f"Its budget spent compute-optimally: {n / 1e9:.0f}B parameters on {d / 1e12:.2f}T tokens")

# %% [markdown]
# Chinchilla's own budget (5.76e23 FLOPs) gives 69B on 1.4T tokens: the 70B model they
# trained, which beat the 280B Gopher trained on the same compute. Their fitted loss
# $L(N,D) = E + A/N^\alpha + B/D^\beta$ draws the IsoFLOP valleys (left); later models
# (right) train far past 20 tokens per parameter, spending more training compute to get a
# smaller model that is cheaper to serve.

# %%
budgets = [1e19, 1e21, 1e23]
grid = np.logspace(7, 12, 200)
fig = V.isoflop_and_tokens(budgets, grid, [S.isoflop_curve(b, grid) for b in budgets],
                           [S.loss_optimal_params(b) for b in budgets], S.TRAINED_MODELS)
for b in budgets:
    print(f"C = {b:.0e}: fit's optimum N = {S.loss_optimal_params(b) / 1e9:.2f}B, "
          f"20-tokens rule N = {S.compute_optimal(b)[0] / 1e9:.2f}B")
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# The fitted law (the paper's approach 3) and the 20-tokens rule (approaches 1 and 2) agree
# to a factor of about 2 over these budgets; 20 tokens per parameter is the rule of thumb.
#
# ## 4. Memory: to hold, to train, to serve
# Weights at $b$ bits cost $Nb/8$ bytes (`minigrad.quant.memory`). Training with
# mixed-precision Adam keeps $2 + 2 + 12 = 16$ bytes per parameter, which ZeRO shards
# over the GPUs (`minigrad.distributed.zero`, chapter 8). GPUs of 80 GB to train count model
# states only (ZeRO-3); to serve, 16-bit weights plus one sequence's KV cache at the
# model's context.

# %%
rows = S.model_memory_table([S.get_config(n) for n in
                             ["gpt2", "gpt2-xl", "llama2-7b", "llama2-13b", "llama2-70b",
                              "gpt3-175b"]])
cols = list(rows[0])[2:]
print(f"{'model':<11}{'params':>8}" + "".join(f"{k:>{len(k) + 2}}" for k in cols))
for r in rows:
    cells = [f"{r[k]:,.1f}" if isinstance(r[k], float) else str(r[k]) for k in cols]
    print(f"{r['name']:<11}{r['params'] / 1e9:>7.2f}B"
          + "".join(f"{v:>{len(k) + 2}}" for k, v in zip(cols, cells)))

# %%
fig = V.memory_by_stage(S.zero_stage_memory([S.get_config(n) for n in names], world_size=8))
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# ZeRO columns are per GPU over 8 GPUs. A 7B model needs $16 \times 7\cdot10^9$ = 112 GB just
# for its model states: more than one 80 GB GPU, unless ZeRO
# shards them. At stages 0-2 every GPU keeps the full 16-bit weights (14 GB for 7B, 140 GB
# for 70B), so a 70B model needs stage 3 however many GPUs there are.
#
# Activations come on top (Korthikanti et al. 2022): per layer $sbh(34 + 5as/h)$ bytes in 16
# bits, where the $5as/h$ part is the attention scores and grows with $s^2$ (the formula is
# for a GPT block with a $4h$ MLP; Llama's SwiGLU MLP keeps a little more). Selective
# recomputation drops it (34 $sbh$); full recomputation keeps only each layer's input
# (2 $sbh$).

# %%
ll = S.get_config("llama2-7b")
for s in (2048, 4096, 8192):
    gb = {r: S.model_activation_bytes(ll, s, 1, r) / S.GB for r in S.RECOMPUTE}
    print(f"Llama-2 7B, s = {s}, b = 1: none {gb['none']:6.1f} GB, "
          f"selective {gb['selective']:5.1f} GB, full {gb['full']:4.2f} GB")
for n in ("llama2-7b", "llama2-70b", "llama3-70b"):
    cfg = S.get_config(n)
    print(f"{n}: fp16 KV cache for 4096 tokens = {S.kv_cache_bytes_for(cfg, 4096) / S.GB:.2f} "
          f"GB per sequence ({cfg.kv_heads} KV heads)")

# %% [markdown]
# ## 5. Arithmetic intensity and the roofline
# An operation that does $F$ FLOPs and moves $B$ bytes has intensity $I = F/B$. A chip with
# peak $P$ and bandwidth $W$ runs it at most at $\min(P, IW)$: below the **machine balance**
# $P/W$ it is memory-bound, above it compute-bound.

# %%
A100, H100 = S.GPUS["A100"], S.GPUS["H100"]
print(f"machine balance: A100 {S.machine_balance(A100.peak_flops, A100.bandwidth):.0f}, "
      f"H100 {S.machine_balance(H100.peak_flops, H100.bandwidth):.0f} FLOPs/byte")
ops = {
    "matmul 4096^3 (fp16)": S.matmul_cost(4096, 4096, 4096),
    "matmul 16 x 4096 x 4096": S.matmul_cost(16, 4096, 4096),
    "decode step, 7B, batch 1": S.decode_step_cost(7e9, 1),
    "decode step, 7B, batch 256": S.decode_step_cost(7e9, 256),
    "add 1M": S.elementwise_cost(1 << 20),
    "softmax 4096 x 4096": S.softmax_cost(4096, 4096),
    "layer norm 4096 x 4096": S.layer_norm_cost(4096, 4096),
    "attention T=4096 D=128, unfused": S.attention_cost(4096, 128, fused=False),
    "attention T=4096 D=128, fused": S.attention_cost(4096, 128),
}
for name, cost in ops.items():
    i = S.arithmetic_intensity(*cost)
    print(f"{name:<32} I = {i:>8.1f}   H100: {S.bound(i, H100.peak_flops, H100.bandwidth):<14}"
          f" at most {S.roofline(i, H100.peak_flops, H100.bandwidth) / 1e12:6.1f} TFLOP/s")

# %% [markdown]
# A large matmul is compute-bound ($I \approx n/3$); elementwise ops, softmax and norms never
# are. Generating one token at batch 1 reads every weight for 2 FLOPs: $I \approx 1$, about
# 3.4 TFLOP/s of a 989 TFLOP/s chip. Batching many sequences is what makes decoding
# efficient, and FlashAttention (chapter 4) is what makes attention compute-bound.
#
# The same on this machine, measured: the peak is the best float32 `np.matmul` rate, the
# bandwidth `np.copyto` of 64 MiB; each point is one operation timed, its FLOPs and bytes from
# the cost model above (4-byte floats).

# %%
spec, points = S.measure_machine(quick=True, repeats=3)
print(f"this machine: {spec.peak_flops / 1e9:.1f} GFLOP/s, {spec.bandwidth / 1e9:.1f} GB/s, "
      f"balance {S.machine_balance(spec.peak_flops, spec.bandwidth):.1f} FLOPs/byte")
for p in points:
    roof = S.roofline(p.intensity, spec.peak_flops, spec.bandwidth)
    kind = S.bound(p.intensity, spec.peak_flops, spec.bandwidth)
    print(f"{p.name:<24} I = {p.intensity:>7.3f}  {p.achieved / 1e9:>7.2f} GFLOP/s = "
          f"{p.achieved / roof:>5.0%} of its roof ({kind})")
marks = [("decode b=1", S.arithmetic_intensity(*S.decode_step_cost(7e9))),
         ("layer norm", S.arithmetic_intensity(*S.layer_norm_cost(4096, 4096))),
         ("matmul 4096^3", S.arithmetic_intensity(*S.matmul_cost(4096, 4096, 4096)))]
fig = V.roofline_plot([A100, H100], marks, spec,
                      [(p.name, p.intensity, p.achieved) for p in points])
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# The add sits on or near the bandwidth roof: it is pure memory traffic. Softmax and layer norm are
# far below theirs: NumPy runs them as several passes (max, subtract, exp, sum, divide), each
# reading and writing the whole array, so they move several times the bytes of a fused kernel.
# Small matmuls are below the compute roof (call overheads, caches); large ones come close.
# (On a shared machine the numbers move from run to run; the shape of the picture does not.)
#
# ## 6. Time and cost
# A run of $6ND$ FLOPs on $n$ GPUs at peak $P$ reaching a fraction MFU (model FLOPs
# utilization) of it takes $6ND / (nP\,\mathrm{MFU})$ seconds; GPU-hours, and dollars, do not
# depend on $n$.

# %%
runs = [("Llama-2 7B, 2T tokens", 6.74e9, 2e12), ("Chinchilla 70B, 1.4T", 70e9, 1.4e12),
        ("GPT-3 175B, 300B", 175e9, 300e9), ("Llama-2 70B, 2T", 69e9, 2e12)]
for name, n, d in runs:
    days = S.training_days(n, d, 1024, A100.peak_flops, mfu=0.4)
    hours = S.gpu_hours(n, d, A100.peak_flops, 0.4)
    print(f"{name:<22} 1024 A100 at 40% MFU: {days:5.1f} days, {hours / 1e6:5.2f}M GPU-hours, "
          f"${S.training_cost(n, d, A100.peak_flops, 0.4, 2.0) / 1e6:5.1f}M at $2/GPU-hour")

# %% [markdown]
# Touvron et al. (2023, Table 2) report 184,320 A100-hours for Llama-2 7B; compare with the
# estimate:

# %%
est = S.gpu_hours(6.74e9, 2e12, A100.peak_flops, 0.4)
print(f"estimate at 40% MFU {est:,.0f} GPU-hours = {est / 184320:.2f} x reported; the MFU that "
      f"matches the report: {0.4 * est / 184320:.0%}")

# %% [markdown]
# And this machine's MFU on one TinyGPT training step (forward, backward, AdamW),
# model FLOPs $6N + 12LTd$ per token over the measured matmul peak:

# %%
gm = GPTConfig(vocab_size=64, block_size=64, n_layer=2, n_head=4, n_embd=128)
r = S.measure_mfu(gm, batch_size=8, peak_flops=spec.peak_flops, steps=2)
print(f"step {r['step_seconds'] * 1e3:.0f} ms, {r['model_flops'] / 1e9:.2f} GFLOPs of model "
      f"FLOPs, {r['achieved_flops'] / 1e9:.2f} GFLOP/s = MFU {r['mfu']:.1%}")

# %% [markdown]
# Small matrices, many elementwise passes and Python between the ops keep it far from 100%;
# large runs reach 35-55%.

# %% [markdown]
# ## 7. A real GPU: an H200's roofline, measured
# The same picture on an NVIDIA H200 (the H100's chip with 141 GB of faster memory; its
# published peaks are in `S.GPUS`). Square matmuls in bf16 and fp32 from 256 to 8192, and
# add, softmax and layer norm on up to 2^28 elements, were timed there with CUDA events
# (median, after warm-up; once launched from Python and once replayed from a CUDA graph,
# keeping the faster), and Nsight Compute counted the DRAM bytes of one call of each
# (`benchmarks/gpu/`, data in `minigrad/data/measured/`). FLOPs and bytes are the cost
# model's, as above.

# %%
from minigrad.data.measurements import read_measurement  # noqa: E402
from minigrad.scale import measured as SM  # noqa: E402

H200 = S.GPUS["H200"]
meta = read_measurement("h200_roofline_time").meta
print(f"{meta['device']}: driver {meta['driver']}, CUDA {meta['cuda']}, PyTorch {meta['torch']}, "
      f"measured {meta['date_utc']} UTC")
ceil = SM.measured_ceilings()
for name, peak, got in (("bf16 dense", H200.peak_flops, ceil["bf16"].peak_flops),
                        ("fp32", H200.fp32_flops, ceil["fp32"].peak_flops),
                        ("bandwidth", H200.bandwidth, ceil["bf16"].bandwidth)):
    unit = "TB/s" if name == "bandwidth" else "TFLOP/s"
    print(f"{name:<10} published {peak / 1e12:6.1f} {unit}, measured {got / 1e12:6.1f} "
          f"({got / peak:.0%})")
print(f"machine balance: H200 {S.machine_balance(H200.peak_flops, H200.bandwidth):.0f} "
      f"FLOPs/byte (H100 {S.machine_balance(H100.peak_flops, H100.bandwidth):.0f}); measured "
      f"{S.machine_balance(ceil['bf16'].peak_flops, ceil['bf16'].bandwidth):.0f}")
points = SM.roofline_points()
for _op, dtype, p in points:
    peak = H200.peak_flops if dtype == "bfloat16" else H200.fp32_flops
    roof = S.roofline(p.intensity, peak, H200.bandwidth)
    print(f"{p.name:<32} I = {p.intensity:>7.2f}  {p.achieved / 1e12:>7.2f} TFLOP/s "
          f"{p.nbytes / p.seconds / 1e12:>5.2f} TB/s = {p.achieved / roof:>5.0%} of its roof")
fig = V.measured_roofline(H200, ceil, points, H200.l2_bytes)
savefig(fig, "ch09_h200_roofline")
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# The large matmuls reach 71% of the bf16 datasheet peak and 77% of fp32 (PyTorch's cuBLAS on
# random data); the small ones sit far under the roof not because of bandwidth but because
# there is too little work to fill 132 SMs (a 256^3 product takes 3 us). The streaming add
# reaches 91% of 4.8 TB/s. Hollow points fit in the 60 MiB L2: an add of 4M bf16 elements,
# replayed from a graph, runs at 6.4 TB/s, *above* the DRAM roof, because its arrays never
# leave the L2. Softmax and layer norm move exactly the bytes the model counts (below), yet
# in bf16 they stream at only 2.7 and 1.8 TB/s: each row must be reduced (max and sum; mean
# and variance) before its output is written, which likely keeps fewer bytes in flight than
# the add does. Does the cost model's byte count hold? Nsight Compute's DRAM bytes of one call:

# %%
for r in SM.dram_vs_cost_model():
    shape = "x".join(map(str, r["shape"]))
    print(f"{r['op']:<10} {r['dtype']:<8} {shape:>15}: model {r['model_bytes'] / 1e6:9.1f} MB, "
          f"DRAM {r['measured_bytes'] / 1e6:9.1f} MB (read {r['read'] / 1e6:8.1f}, write "
          f"{r['write'] / 1e6:7.1f}) = {r['ratio']:.2f}x")

# %% [markdown]
# Streaming kernels move exactly what the model counts (0.98-0.99x; the last lines of the
# output are still in the L2 when the kernel ends). A matmul whose operands outgrow the L2
# (4096 and up) reads them from DRAM several times, 1.7-6x the model's one pass: the cost
# model's bytes are a lower bound, which the tiling of a GEMM approaches only with a cache
# large enough to hold the tiles' reuse. Small matmuls write nothing to DRAM at all during
# the call: their output stays in the L2.

# %% [markdown]
# ## Exercises
# Coding exercises (fenced in the library; the student copy has stubs):
#
# | id | where | what |
# | --- | --- | --- |
# | `ch9.block_parameters` | `minigrad/scale/params.py` | attention, MLP, norm parameters of a block |
# | `ch9.flops_per_token` | `minigrad/scale/flops.py` | $2N + 4LTd$ forward, 3x for training |
# | `ch9.compute_optimal` | `minigrad/scale/chinchilla.py` | $N$ and $D$ from $C = 6ND$, $D = 20N$ |
# | `ch9.activation_bytes` | `minigrad/scale/memory.py` | $sbh(34 + 5as/h)$ and recomputation |
# | `ch9.matmul_cost` | `minigrad/scale/roofline.py` | FLOPs and bytes of a matmul |
# | `ch9.roofline` | `minigrad/scale/roofline.py` | $\min(P, IW)$ |
#
# Exam-style questions (answer in `answers.toml`): FLOPs to train 7B on 2T tokens; the
# compute-optimal size for Chinchilla's budget; tokens for a 70B model; bytes to train 7B
# with mixed-precision Adam; Llama-2 70B's weights at 4 bits; intensity of an fp16 4096^3
# matmul; whether a batch-1 decode step on an H100 is memory- or compute-bound; 80 GB GPUs
# for 70B under ZeRO-3; the KV cache of Llama-2 70B; the activation formula; days to train
# Chinchilla; Llama-2 7B's parameters; GPT-3 against Chinchilla's rule.
#
# ```
# minigrad exercises list     # every exercise and question with its points
# minigrad grade              # grade your copy (code and answers.toml)
# ```

# %%
from minigrad.exercises import show  # noqa: E402

show(chapter=9)
