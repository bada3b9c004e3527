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
# # Chapter 7 — Memory-efficient training and fine-tuning
#
# Training needs far more memory than the weights: gradients, optimizer state,
# the activations the forward pass keeps for backward, and scratch space. This
# chapter measures each with `tracemalloc` (NumPy reports every buffer it
# allocates to it), predicts each from shapes with `minigrad.memory`, and then
# shrinks them one by one:
#
# 1. **where the memory goes**: a calculator checked against what minigrad allocates;
# 2. **activation checkpointing**: `checkpoint`, `checkpoint_sequential`, memory
#    and compute against the number of segments, and **selective recomputation**;
# 3. **gradient accumulation**, a **chunked** loss head, **offloading** the
#    optimizer state to host memory;
# 4. **LoRA**, **adapters** and **QLoRA** (`minigrad.peft`): training a few
#    parameters on a frozen (even 4-bit) base, and a fine-tuning comparison;
# 5. **GaLore**: Adam's state kept in a low-rank projection of the gradient.
#
# By the end you can compute the bytes of Adam's state, the activations a
# model keeps, the peak with k checkpoint segments, LoRA's trainable
# parameters, the bytes of a QLoRA base and of GaLore's state.

# %%
import numpy as np

import minigrad
import minigrad.functional as F
import minigrad.memory as M
from minigrad import Tensor, nn, optim
from minigrad.models import TinyGPT
from minigrad.peft import (LoraConfig, adapter_parameters, base_bytes, finetune_comparison,
                           get_peft_model, get_qlora_model, kaiming_uniform_bound,
                           lora_parameters)
from minigrad.viz import memory as V

minigrad.manual_seed(0)
rng = minigrad.get_rng()

# %% [markdown]
# ## 1. Where the memory goes
# For $N$ parameters in fp32, the weights take $4N$ bytes, the gradients $4N$,
# Adam's two moments $8N$: **16 bytes per parameter before a single activation**.
# Activations scale with the batch instead. In minigrad every node of the graph
# keeps its output until its backward has run (then, as in PyTorch, backward
# frees it), plus whatever its backward closure holds (LayerNorm keeps $\hat x$, GELU keeps $\Phi(x)$, attention the weights
# $P$). Counting op by op gives, per token of a TinyGPT block,
# $25C + HT$ floats ($C$ = width, $H$ heads, $T$ tokens). The calculator
# predicts; `measure_training_step` measures one step with `tracemalloc`.

# %%
ex = M.breakdown_examples(rng)
(pred_mlp, meas_mlp), (pred_gpt, meas_gpt) = ex["pairs"].values()
mlp, gpt, idx, config = ex["mlp"], ex["gpt"], ex["idx"], ex["config"]
lm_loss = M.lm_loss                        # next-token cross-entropy on ids (B, T + 1)
print(f"{'bytes':<12}{'MLP pred':>12}{'MLP meas':>12}{'GPT pred':>12}{'GPT meas':>12}")
for part in ("weights", "gradients", "optimizer", "activations", "scratch", "peak"):
    row = [b.as_dict()[part] for b in (pred_mlp, meas_mlp, pred_gpt, meas_gpt)]
    print(f"{part:<12}" + "".join(f"{v:>12,d}" for v in row))
print(f"Adam state = 8 bytes x {mlp.num_parameters():,d} params = {M.adam_state_bytes(mlp.num_parameters()):,d}")

# %% [markdown]
# Weights, gradients and optimizer state agree to the byte; activations to
# within Python's object overhead (under 1%). Scratch (backward's
# temporaries) is a rule of thumb: two arrays the size of the widest activation.

# %%
fig = V.memory_breakdown_bars(ex["pairs"])
fig  # noqa: B018

# %% [markdown]
# ## 2. Activation checkpointing
# `checkpoint(function, *args)` runs `function` under `no_grad` (nothing is
# saved but its inputs) and, in backward, runs it again with grad on and
# backpropagates through the rerun. The random generator is rewound for the
# rerun, so even dropout gives the same mask: the gradients are **bit for bit**
# the plain ones.

# %%
block = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Dropout(0.2), nn.Linear(64, 32))
xin = minigrad.randn(16, 32, requires_grad=True)


def grads(fn):
    block.zero_grad()
    xin.grad = None
    minigrad.manual_seed(1)
    (fn(xin) ** 2).sum().backward()
    return [p.grad.copy() for p in block.parameters()] + [xin.grad.copy()]


plain, ckpt = grads(block), grads(lambda a: M.checkpoint(block, a))
print("largest |plain - checkpointed| gradient difference:",
      max(float(np.abs(a - b).max()) for a, b in zip(plain, ckpt)))

# %% [markdown]
# `checkpoint_sequential(functions, segments, input)` cuts a chain of $n$
# layers into $k$ segments and keeps only each segment's input. Because
# backward frees each node's activations once it has run (minigrad does, as
# PyTorch does), the peak is the $k-1$ saved inputs plus one segment,
# $(k-1) + n/k$ layers, smallest at $k \approx \sqrt n$: $2\sqrt n$ instead
# of $n$, for one extra forward of the checkpointed layers. An engine that kept
# the whole graph until backward ended would still hold the last segment
# (never checkpointed) while recomputing each earlier one,
# $(k-1) + \text{last} + n/k$: the grey line, often no better than no
# checkpointing. The sweep measures the peak with tracemalloc and counts the
# forward FLOPs actually run.

# %%
n = 16
print("segments k:             ", list(range(1, 9)))
print("peak units (k-1)+n/k:   ", [M.checkpointed_activation_units(n, k) for k in range(1, 9)])
print("best k for n = 16, 64, 100:", [M.sqrt_segments(m) for m in (16, 64, 100)])
sweep = M.checkpoint_sweep(n_layers=n, width=64, batch=1024, segments=[0, 2, 4, 8, 16])
a, b = sweep["layer_bytes"], sweep["boundary_bytes"]
keep = [M.checkpoint_activation_bytes(n, k, a, b, frees_during_backward=False) for k in sweep["segments"]]
free = [M.checkpoint_activation_bytes(n, k, a, b, frees_during_backward=True) for k in sweep["segments"]]
for k, peak, mk, fl, s in zip(sweep["segments"], sweep["peak_bytes"], free, sweep["forward_flops"],
                              sweep["seconds"]):
    print(f"k={k:>2}: peak {peak / 1e6:5.2f} MB (model {mk / 1e6:5.2f} MB of activations), "
          f"forward FLOPs x{fl / sweep['forward_flops'][0]:.2f}, {s * 1e3:.0f} ms")
fig = V.checkpoint_tradeoff(sweep, free, keep)
fig  # noqa: B018

# %% [markdown]
# The measured peak sits a roughly constant amount above the model (the
# gradients and backward's temporaries, a little more while a segment is
# recomputed), so the model predicts which segment count wins. The compute price: the layers of the first $k-1$
# segments run twice, $(k-1)\lfloor n/k\rfloor/n$ of a forward more.
#
# **Selective recomputation** (Korthikanti et al. 2022) checkpoints only what is
# big to keep and cheap to redo: the attention core (the $B H T^2$ weights)
# and GELU's $\Phi(x)$; the matmul outputs stay. Same gradients, fewer bytes:

# %%
kept = M.measure_activation_bytes(lm_loss, gpt, idx)
M.apply_selective_recomputation(gpt)
selective = M.measure_activation_bytes(lm_loss, gpt, idx)
print(f"activations kept: {kept / 1e6:.3f} MB -> {selective / 1e6:.3f} MB with selective "
      f"recomputation; measured saving {(kept - selective) / 1e6:.3f} MB, predicted "
      f"4 L B T (H T + 4 C) = {M.selective_recompute_savings(config, 8, 32) / 1e6:.3f} MB")

# %% [markdown]
# ## 3. Gradient accumulation, chunking, offloading
# **Accumulation**: $k$ micro-batches, one backward each, gradients adding up in
# `.grad`, each loss weighted by its share $n_i/N$ (1/k) so the sum is the
# full batch's mean-loss gradient. Only one micro-batch's activations are alive.

# %%
acc_model = nn.MLP([32, 512, 512, 10])
xa = rng.standard_normal((512, 32)).astype(np.float32)
ya = rng.integers(0, 10, 512)
F.cross_entropy(acc_model(Tensor(xa)), ya).backward()
full = [p.grad.copy() for p in acc_model.parameters()]
for k in (1, 2, 4, 8):
    acc_model.zero_grad()
    _, peak = M.measure_peak_bytes(M.accumulate_gradients, acc_model, F.cross_entropy, xa, ya, k)
    diff = max(float(np.abs(p.grad - g).max()) for p, g in zip(acc_model.parameters(), full))
    print(f"k={k}: peak {peak / 1e6:5.2f} MB, max |grad - full-batch grad| = {diff:.1e}")

# %% [markdown]
# **Chunking**: the language-model head's logits $(N, V)$ are the biggest
# transient of a small model's step (GPT-2's vocabulary of 50,257 over 8 x 1024
# tokens: 1.6 GB in fp32). `chunked_linear_cross_entropy` finishes each chunk's
# loss *and* gradient before the next, keeping $2 \times \text{chunk} \times V$ floats.

# %%
ch = M.chunking_sweep(1024, 32, 8000, chunks=[32, 64, 128, 256, 512], rng=rng)
print(f"loss unchunked {ch['loss']:.6f}, chunked {ch['chunked_loss']:.6f}")
print(f"peak MB: unchunked {ch['unchunked'] / 1e6:.1f} (predicted logit buffers "
      f"{M.linear_cross_entropy_scratch_bytes(1024, 8000) / 1e6:.1f}); "
      f"chunks of 128: {ch['peaks'][2] / 1e6:.1f}")
fig = V.chunking_peak(ch["chunks"], ch["peaks"], ch["unchunked"], ch["n_tokens"], ch["vocab_size"],
                      ch["predicted"])
fig  # noqa: B018

# %% [markdown]
# **Offloading** (ZeRO-Offload): Adam's moments and the fp32 master weights
# live in host memory; each step sends the gradients down PCIe and the new
# weights back. The device keeps 8 of the 16 bytes per parameter; the price is
# $8N$ bytes over the link per step (hidden only if it overlaps compute).

# %%
off_model = nn.MLP([32, 128, 10])
opt = M.OffloadedAdamW(off_model.parameters(), lr=1e-2)
xo, yo = minigrad.randn(64, 32), rng.integers(0, 10, 64)
for _ in range(5):
    opt.zero_grad()
    F.cross_entropy(off_model(xo), yo).backward()
    opt.step()
P = off_model.num_parameters()
print(f"{P:,d} params: device state {opt.state_bytes()} B, host {opt.host.nbytes():,d} B (= 12 x {P:,d}), "
      f"moved {opt.host.bytes_moved:,d} B in 5 steps (= 4P + 5 x 8P)")
for name in ("pcie3", "pcie4", "pcie5"):
    print(f"7B fp32 model, one step's traffic over {name}: {M.transfer_time(8 * 7e9, name):.2f} s")

# %% [markdown]
# ## 4. LoRA, adapters, QLoRA
# LoRA freezes $W$ and trains $h = xW^\top + \frac{\alpha}{r} x A^\top B^\top$
# with $A$ $(r, \text{in})$ Kaiming-uniform and $B$ $(\text{out}, r)$ zero, so
# training starts exactly at the pretrained model. The names are PEFT's.

# %%
base = TinyGPT(config)
before = base(idx[:, :8]).data.copy()
peft = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
peft.print_trainable_parameters()
q0 = peft.lora_layers()[0]
print(f"scaling alpha / r = {q0.lora_alpha} / {q0.r} = {q0.scaling}; lora_A {q0.lora_A.weight.shape} "
      f"within +-1/sqrt(in) = {kaiming_uniform_bound(q0.in_features):.3f}, lora_B "
      f"{q0.lora_B.weight.shape} all zero: {not q0.lora_B.weight.data.any()}")
print("output unchanged at init:", np.array_equal(peft(idx[:, :8]).data, before))
for layer in peft.lora_layers():      # pretend training moved B
    layer.lora_B.weight.data[...] = 0.1 * rng.standard_normal(layer.lora_B.weight.shape)
adapted = peft(idx[:, :8]).data
peft.merge_adapter()
print("merged == adapted, max |diff|:", float(np.abs(peft(idx[:, :8]).data - adapted).max()))
peft.unmerge_adapter()
print(f"LoRA r=8 on a 4096 x 4096 layer: {lora_parameters(4096, 4096, 8):,d} trainable "
      f"of {4096 * 4096:,d} ({lora_parameters(4096, 4096, 8) / 4096**2:.2%})")
print(f"a Houlsby adapter (bottleneck 64) after a 4096-wide layer: {adapter_parameters(4096, 64):,d} "
      f"params, in series: two extra matmuls at every inference (LoRA merges away)")

# %% [markdown]
# **QLoRA**: the frozen base never gets a gradient, so it can be stored in 4-bit
# NF4 (chapter 6) and dequantized just before each matmul, with LoRA in float.

# %%
qbase = TinyGPT(config)
fp32_bytes = sum(m.weight.data.nbytes for n_, m in qbase.named_modules()
                 if isinstance(m, nn.Linear) and n_ != "lm_head")
qpeft = get_qlora_model(qbase, LoraConfig(r=4, lora_alpha=8, target_modules=[
    "q_proj", "k_proj", "v_proj", "o_proj", "mlp.0", "mlp.2"]))
nf4_bytes = sum(layer.base_layer.weight_nbytes() for layer in qpeft.lora_layers())
print(f"targeted base weights: {fp32_bytes:,d} B in fp32 -> {nf4_bytes:,d} B in NF4 "
      f"({fp32_bytes / nf4_bytes:.1f}x smaller)")
qpeft.print_trainable_parameters()
for bits in (32, 16, 4):
    print(f"7B base at {bits:>2} bits: {base_bytes(7e9, bits) / 1e9:.3g} GB")

# %% [markdown]
# **A fine-tuning comparison.** An MLP is trained on three spiral arms, then
# adapted to their mirror image (the arms wind the other way), starting from
# the same weights each time: train nothing, the head only, adapters, LoRA
# (r = 2 on every layer), everything. Mirroring the input is a rank-1 change of
# the first layer, which a low-rank update can make.

# %%
ft = finetune_comparison()
for m in ("pretrained", "head only", "adapters", "lora", "full"):
    print(f"{m:<11} accuracy {ft[m]['accuracy']:.1%}, trains {ft[m]['trainable']:>5,d} of "
          f"{ft['total']:,d} params ({ft[m]['trainable'] / ft['total']:.1%})")
fig = V.finetune_bars(ft)
fig  # noqa: B018

# %% [markdown]
# ## 5. GaLore
# GaLore keeps Adam's moments for the projected gradient $R = P^\top G$ (or
# $G Q^\top$) with $P$ the top-$r$ left singular vectors of $G$, refreshed every
# `update_proj_gap` steps, and projects the step back. State: $2r\max(m,n) +
# r\min(m,n)$ numbers instead of $2mn$. With full rank and a projection Adam
# cannot see (a signed permutation), it *is* AdamW:

# %%
W0 = rng.standard_normal((6, 6)).astype(np.float32)
gs = [np.diag([6, -5, 4, -3, 2, 1]).astype(np.float32)] + [rng.standard_normal((6, 6)).astype(np.float32)
                                                           for _ in range(4)]
p1, p2 = nn.Parameter(W0.copy()), nn.Parameter(W0.copy())
o1 = optim.AdamW([p1], lr=0.1)
o2 = M.GaLoreAdamW([{"params": [p2], "rank": 6, "update_proj_gap": 100, "scale": 1.0}], lr=0.1,
                   weight_decay=0.01)
for g in gs:
    p1.grad, p2.grad = g.copy(), g.copy()
    o1.step()
    o2.step()
print("full-rank GaLore vs AdamW, max |W diff|:", float(np.abs(p1.data - p2.data).max()))
for r in (8, 32, 128):
    print(f"4096 x 4096, rank {r:>3}: GaLore state {M.galore_state_bytes(4096, 4096, r) / 1e6:6.1f} MB "
          f"(8-bit: {M.galore_state_bytes(4096, 4096, r, quantized=True) / 1e6:5.1f} MB) "
          f"vs AdamW {M.adamw_state_bytes(4096, 4096) / 1e6:.1f} MB")

# %%
runs = M.galore_vs_adamw(epochs=8)
for name, r in runs.items():
    print(f"{name:<18} state {r['state_bytes']:>7,d} B, final loss {np.mean(r['loss'][-10:]):.3f}, "
          f"train accuracy {r['accuracy']:.1%}")
fig = V.galore_curves(runs)
fig  # noqa: B018

# %% [markdown]
# GaLore pays for its smaller state with a slower start here (a rank-8 view of
# a 128-wide layer); the 8-bit variant stores the projection and first moment as
# blockwise int8 codes and follows almost the same curve.
#
# ## Exercises
# Coding exercises (fenced in the library; the student copy has stubs):
#
# | id | where | what |
# | --- | --- | --- |
# | `ch7.mlp_activation_bytes` | `minigrad/memory/calculator.py` | activation bytes of an MLP step |
# | `ch7.checkpoint_backward` | `minigrad/memory/checkpoint.py` | recompute and backpropagate in `checkpoint` |
# | `ch7.checkpoint_units` | `minigrad/memory/checkpoint.py` | peak activations with k segments |
# | `ch7.accumulate_gradients` | `minigrad/memory/accumulation.py` | micro-batches weighted by n_i / N |
# | `ch7.lora_forward` | `minigrad/peft/lora.py` | base + (alpha / r) B A x |
# | `ch7.lora_merge` | `minigrad/peft/lora.py` | fold B A into W |
# | `ch7.galore_projection` | `minigrad/memory/galore.py` | top-r singular vectors of the gradient |
#
# Exam-style questions (answer in `answers.toml`): LoRA's parameters on a 4096 x
# 4096 layer; Adam's state as a formula in N; peak activations with 8 segments of
# 64 layers; the best segment count for 100 layers; what selective recomputation
# saves on a 24-layer GPT; the logit buffers of an unchunked LM head; the GB of a
# 7B QLoRA base; GaLore's state as a fraction of AdamW's and in 8 bits; offload
# seconds per step; the 1/k of accumulation; why LoRA merges and adapters do not;
# why B starts at zero.
#
# ```
# minigrad exercises list     # every exercise and question with its points
# minigrad grade              # grade your copy (code and answers.toml)
# ```

# %%
from minigrad.exercises import show  # noqa: E402

show(chapter=7)
