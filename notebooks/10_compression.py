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
# # Chapter 10 — Compressing a model for deployment
#
# A trained model can be made smaller and cheaper to serve in four ways, each built
# in `minigrad.compress` (and `minigrad.peft` for the last):
#
# 1. **pruning**: zero the least useful weights, unstructured (magnitude, per layer or
#    global), **2:4** semi-structured, or whole neurons and heads; and what each
#    sparse format costs in bytes;
# 2. **SparseGPT**: one-shot pruning that moves the remaining weights to make up for
#    the removed ones (the optimal brain surgeon, with H = 2XᵀX);
# 3. **GPTQ**: quantization with the same error compensation, against
#    round-to-nearest (chapter 6), and **LLM.int8()**'s outlier features in 16 bits;
# 4. **distillation**: a small student learning from a teacher's soft labels;
#    and **prompt tuning**: adapting a frozen model with a few trainable virtual tokens.
#
# By the end you can compute the bytes of a 2:4 or CSR matrix, one OBS/GPTQ update by
# hand, the bits per weight of a grouped GPTQ format, and a distillation loss.

# %%
import numpy as np

import minigrad
import minigrad.compress as C
from minigrad.compress import experiments as E
from minigrad.viz import compress as V
from minigrad.viz import savefig

minigrad.manual_seed(0)

# %% [markdown]
# ## 1. The model we compress
# One small TinyGPT (one layer, four heads, width 64) trained on chapter 3's 2-digit
# addition task. `small_addition_model` trains it once (seeded) and hands out a fresh
# copy each call, since every method below changes weights in place. Quality is
# held-out exact match: the whole answer right, on 500 sums never trained on.

# %%
model, task, seconds = E.small_addition_model()
print(f"trained in {seconds:.1f} s; held-out exact match {E.exact_match(model, task):.1%}")
print(f"{model.num_parameters():,} parameters; the block's Linear weights: "
      f"{E.model_weight_bytes(model, 32):,} bytes in fp32")

# %% [markdown]
# ## 2. Masks and what they cost to store
# A mask is True where a weight is kept. Magnitude pruning removes the smallest |w|;
# 2:4 keeps the two largest of every four consecutive weights along the input
# dimension, a pattern sparse tensor cores run at twice the dense rate.

# %%
w = model.h[0].mlp[0].weight.data                     # (256, 64)
masks = {"magnitude 50%": C.magnitude_mask(w, 0.5), "2:4": C.semi_structured_mask(w)}
fig = V.mask_pictures(masks)
print("nonzeros per group of 4 under 2:4:", np.unique(masks["2:4"].reshape(-1, 4).sum(1)))
fig  # noqa: B018  (shows the figure in the notebook)

# %% [markdown]
# Storage, in bytes, of a 4096 x 4096 fp16 weight: dense; CSR (fp16 values, int32
# column indices, row pointers) at several sparsities; and 2:4 (half the values and
# 2 bits of position per kept value). CSR only wins above 2/3 sparsity.

# %%
n = 4096
print(f"{'format':<22}{'MiB':>8}")
print(f"{'dense fp16':<22}{C.dense_nbytes(n, n) / 2**20:>8.2f}")
for s in (0.5, 0.7, 0.9):
    print(f"{f'CSR at {s:.0%} sparsity':<22}{C.csr_nbytes(n, int((1 - s) * n * n)) / 2**20:>8.2f}")
print(f"{'2:4 + metadata':<22}{C.semi_structured_nbytes(n, n) / 2**20:>8.2f}")
print("CSR break-even sparsity:", f"{C.csr_break_even_sparsity():.3f}")
print("measured on this model's layer (magnitude 70%):", C.storage_bytes(w * C.magnitude_mask(w, 0.7)))

# %% [markdown]
# ## 3. Structured pruning: whole neurons and heads
# Removing a neuron deletes a row of the first MLP matrix and a column of the second:
# the matrices get smaller, no sparse format needed. Removing a head zeroes its slices
# of the four attention projections.

# %%
for frac in (0.25, 0.5, 0.75):
    m, t, _ = E.small_addition_model()
    keep = C.prune_neurons_(m.h[0].mlp[0], m.h[0].mlp[2], frac)
    print(f"MLP neurons removed {frac:.0%} ({256 - keep.size} of 256): exact match {E.exact_match(m, t):.1%}")
m, t, _ = E.small_addition_model()
imp = C.head_importance(m.h[0].attn)
C.prune_heads_(m.h[0].attn, [int(np.argmin(imp))])
print("head importance:", np.round(imp, 2), f"-> least important removed: {E.exact_match(m, t):.1%}")

# %% [markdown]
# ## 4. One-shot pruning: magnitude vs SparseGPT
# SparseGPT visits the columns of each weight in order. With H = 2XᵀX/N from 128
# calibration sequences, pruning weight q and moving the free weights by the optimal
# brain surgeon's δ = -(w_q / [H⁻¹]_qq) H⁻¹[:, q] keeps the layer's output close; the
# rows of the Cholesky factor of H⁻¹ give the inverse restricted to the free columns
# at every step. Magnitude pruning does nothing to compensate.

# %%
sweep = E.pruning_sweep(sparsities=(0.5, 0.7, 0.9))
fig = V.sparsity_vs_accuracy(sweep)
for i, s in enumerate(sweep["sparsities"]):
    print(f"{s:.0%}: magnitude {sweep['magnitude'][i]:.1%}, SparseGPT {sweep['sparsegpt'][i]:.1%}")
fig  # noqa: B018

# %% [markdown]
# Prune, then fine-tune: a short AdamW run with the pruned weights set back to zero
# after every step, so the sparsity stays exactly where it was.

# %%
m, t, _ = E.small_addition_model()
pmasks = C.prune_model_(m, 0.7, method="magnitude")
before = E.exact_match(m, t)
E.finetune_masked_(m, t, pmasks, steps=60)
print(f"magnitude 70%: {before:.1%} one-shot -> {E.exact_match(m, t):.1%} after 60 fine-tuning steps "
      f"(sparsity still {C.mask_sparsity(pmasks):.0%})")

# %% [markdown]
# ## 5. GPTQ vs round-to-nearest
# The same column walk, rounding each column to the grid (AutoGPTQ's: `bits`,
# `group_size`, `damp_percent`, `desc_act`, `sym`) and spreading its error over the
# columns not yet rounded. One grid per output row here (`group_size=-1`),
# act-order on. The per-layer error is ||XWᵀ − XŴᵀ|| / ||XWᵀ|| on the calibration inputs.

# %%
g = E.gptq_vs_rtn(bits=(4, 3, 2))
fig = V.gptq_vs_rtn_bars(g)
for b in g["bits"]:
    print(f"{b} bits: exact match RTN {g[b]['rtn']['accuracy']:.1%}, GPTQ {g[b]['gptq']['accuracy']:.1%}")
fig  # noqa: B018

# %%
fig = V.layer_error_bars({m: g[3][m]["layer_errors"] for m in ("rtn", "gptq")},
                         "3-bit: relative output error per layer")
savefig(fig, "ch10_gptq_layers")
fig  # noqa: B018

# %% [markdown]
# ## 6. LLM.int8(): outliers in 16 bits
# Vector-wise int8 gives each row of X its own absmax scale. A few feature
# dimensions with |x| around 60 (planted here, as large transformers grow them) set
# every row's scale, and the ordinary values round to a handful of codes. LLM.int8()
# multiplies the columns with any |x| ≥ `threshold` (6.0) in fp16 and the rest in int8.

# %%
X, W, cols = E.planted_outliers()
err = E.int8_outlier_errors(X, W, threshold=6.0)
fig = V.outlier_picture(X, err)
print(f"outlier dims {err['outliers'].tolist()} (planted {cols.tolist()}); relative error: "
      f"int8 {err['int8']:.2%}, LLM.int8() {err['LLM.int8()']:.2%}")
fig  # noqa: B018

# %% [markdown]
# On the small TinyGPT, which has no large outliers, both keep the answers:

# %%
r = E.int8_on_model()
print(f"exact match: fp32 {r['fp32']:.1%}, int8 {r['int8']:.1%}, LLM.int8() {r['LLM.int8()']:.1%}; "
      f"outlier dims per layer: {r['LLM.int8() outlier dims']}")

# %% [markdown]
# ## 7. Distillation
# The loss is α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − α)·CE(z_s, y): the
# teacher's **soft labels** against the student's **soft predictions** (the
# distillation loss), plus the **hard predictions** against the true labels (the
# student loss). A teacher MLP (2-128-128-3) learns three spirals from 1000 points; a
# student (2-16-16-3) sees only 100 of them, once with hard labels alone and once
# distilled (T = 4, α = 0.9), from the same initial weights.

# %%
d = E.distillation_experiment(seed=0)
fig = V.distillation_curves(d)
print(f"held-out accuracy: teacher {d['teacher']:.1%}, student on hard labels {d['hard']:.1%}, "
      f"distilled student {d['distilled']:.1%}")
fig  # noqa: B018

# %% [markdown]
# ## 8. Prompt tuning
# `get_peft_model(model, PromptTuningConfig(num_virtual_tokens=4))` freezes the model
# and prepends four trainable vectors. The new task: the same strings, but the answer
# is a + b + 1. Each method gets 150 AdamW steps, at learning rate 1e-2 for the soft
# prompt and LoRA and 1e-3 for full fine-tuning (`experiments.PEFT_LR`).

# %%
pc = E.peft_comparison(steps=150)
print(f"before adapting: {pc['before']:.1%} of the +1 sums right; the model has {pc['total']:,} parameters")
for name in ("prompt tuning", "lora", "full"):
    print(f"{name:<14} trains {pc[name]['trainable']:>6,} parameters -> exact match {pc[name]['accuracy']:.1%}")

# %% [markdown]
# ## 9. Size and quality after each method
# Bytes of the block's Linear weights (what these methods shrink) and held-out exact match.
# Note CSR at 50%: larger than dense fp16, since every kept value carries a 4-byte index;
# 2:4 at the same sparsity costs 1.125 bytes per weight. GPTQ's rows count the codes plus
# an fp16 scale and a zero per output row; LLM.int8()'s the int8 codes plus fp32 scales.

# %%
table = E.compression_table()
print(f"{'method':<28}{'bytes':>9}{'of fp32':>9}{'exact match':>13}")
for row in table:
    print(f"{row['method']:<28}{row['bytes']:>9,}{row['ratio']:>9.1%}{row['accuracy']:>13.1%}")

# %% [markdown]
# ## Exercises
# Coding exercises (fenced in the library; the student copy has stubs):
#
# | id | where | what |
# | --- | --- | --- |
# | `ch10.magnitude_mask` | `minigrad/compress/pruning.py` | remove exactly the k smallest |w| |
# | `ch10.semi_structured_mask` | `minigrad/compress/pruning.py` | keep n of every m (2:4) |
# | `ch10.gptq_step` | `minigrad/compress/obs.py` | one GPTQ / SparseGPT column step |
# | `ch10.distillation_loss` | `minigrad/compress/distillation.py` | distillation loss + student loss |
# | `ch10.soft_prompt_forward` | `minigrad/peft/prompt_tuning.py` | the forward pass with a soft prompt |
#
# Exam-style questions (answer in `answers.toml`): MiB of a 2:4 matrix; CSR's
# break-even sparsity; GPTQ's bits per weight with groups; one OBS update by hand; a
# distillation loss by hand; prompt tuning's parameters; 2:4 bytes as a formula; why
# T²; why outliers ruin vector-wise int8.
#
# ```
# minigrad exercises list     # every exercise and question with its points
# minigrad grade              # grade your copy (code and answers.toml)
# ```

# %%
from minigrad.exercises import show  # noqa: E402

show(chapter=10)
