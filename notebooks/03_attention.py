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
# # Chapter 3 — Attention and transformers
#
# Attention lets every token look at the others and take a weighted average of
# what it finds. This chapter shows:
#
# 1. the softmax, and why subtracting the max keeps it finite;
# 2. scaled dot-product attention with padding and causal masks, as one
#    differentiable function checked against finite differences;
# 3. multi-head attention, and grouped-query / multi-query attention where
#    several query heads share one key/value head;
# 4. the KV cache that makes generation fast, its memory for MHA, GQA and MQA
#    at a realistic model shape, and decoding with it;
# 5. a tiny decoder-only transformer (TinyGPT) that learns digit addition from
#    strings minigrad generates, with its attention maps (causal versus
#    bidirectional);
# 6. greedy, temperature, top-k and top-p sampling.
#
# By the end you can compute the memory of a KV cache for any model, say how
# much grouped-query attention saves, and read a causal attention map.

# %%
import time

import numpy as np

import minigrad
from minigrad import Tensor, gradcheck, nn  # noqa: E402
from minigrad import functional as F  # noqa: E402
from minigrad.models import GPTConfig, TinyGPT, complete_sums, train_addition  # noqa: E402
from minigrad.nn.attention import naive_attention  # noqa: E402
from minigrad.sampling import compare_sampling, generate  # noqa: E402
from minigrad.viz import savefig  # noqa: E402
from minigrad.viz.attention import (attention_heatmaps, kv_cache_bars,  # noqa: E402
                                    sampling_distributions, training_curve)

minigrad.manual_seed(0)

# %% [markdown]
# ## 1. Softmax without overflow
# softmax(x)_i = exp(x_i) / sum_j exp(x_j). In float32, exp overflows past
# x ≈ 88. Subtracting the row max changes nothing mathematically (it cancels
# between numerator and denominator) but makes every exponent <= 0.

# %%
x = np.array([1000.0, 1001.0, 1002.0], dtype=np.float32)
with np.errstate(over="ignore", invalid="ignore"):
    print("exp(x) / sum(exp(x))      :", np.exp(x) / np.exp(x).sum())
print("F.softmax (max subtracted):", F.softmax(Tensor(x)).data)

# %% [markdown]
# ## 2. Scaled dot-product attention
# Attention(Q, K, V) = softmax(Q K^T / sqrt(E) + mask) V (Vaswani et al. 2017),
# for queries (..., L, E), keys (..., S, E) and values (..., S, Ev).
# `F.scaled_dot_product_attention` has PyTorch's arguments: a boolean mask is
# True where a query *may* attend, a float mask is added to the scores, and
# `is_causal=True` uses the lower triangle below.

# %%
print(F.causal_mask(4, 6).astype(int))   # query i sees keys j <= i (top-left aligned)

# %% [markdown]
# The fused function is one graph node with a hand-written backward; the
# op-by-op version (`naive_attention`) lets autograd derive it. They agree,
# and both agree with finite differences in float64:

# %%
q, k, v = (Tensor(minigrad.get_rng().standard_normal(s), requires_grad=True)
           for s in [(2, 4, 5, 8), (2, 4, 7, 8), (2, 4, 7, 3)])
pad = np.ones((2, 1, 1, 7), dtype=bool)
pad[1, ..., 5:] = False                  # sequence 1: the last two keys are padding
fused = F.scaled_dot_product_attention(q, k, v, attn_mask=pad)
op_by_op, weights = naive_attention(q, k, v, attn_mask=pad)
print("max |fused - op by op| =", np.abs(fused.data - op_by_op.data).max())
print("weights on padding     =", weights.data[1, :, :, 5:].max())
print("gradcheck:", gradcheck(lambda q, k, v: F.scaled_dot_product_attention(
    q, k, v, is_causal=True), (q, k, v)))

# %% [markdown]
# A query with *no* key to attend (every entry of its mask row False) gets an
# output of zeros in minigrad, never NaN:

# %%
empty = np.ones((5, 7), dtype=bool)
empty[2] = False
out = F.scaled_dot_product_attention(q, k, v, attn_mask=empty)
print("row 2:", out.data[0, 0, 2], " any NaN:", np.isnan(out.data).any())

# %% [markdown]
# ## 3. Multi-head, grouped-query and multi-query attention
# `nn.MultiHeadAttention(C, H, num_kv_heads)` projects x (B, T, C) into H query
# heads of size D = C / H and H_kv key/value heads. H_kv = H is classic
# multi-head attention; 1 < H_kv < H is grouped-query attention (GQA, Ainslie
# et al. 2023), each group of H / H_kv query heads sharing a key/value head;
# H_kv = 1 is multi-query attention (MQA, Shazeer 2019). The k and v
# projections shrink, and so does the KV cache.

# %%
C, H = 4096, 32
for kv in (32, 8, 1):
    n = nn.attention_param_count(C, H, kv, bias=False)
    print(f"width {C}, {H} query heads, {kv:>2} kv heads: {n / 1e6:6.1f} M parameters per layer")

# %% [markdown]
# ## 4. The KV cache
# Generating token t + 1 attends to the keys and values of all earlier tokens.
# They never change, so a decoder keeps them:
# bytes = 2 (K and V) x layers x batch x kv_heads x seq_len x head_dim x bytes per number.
# For a 7B-class shape (32 layers, 32 heads of 128, 4096 tokens, fp16):

# %%
table = nn.kv_cache_table(num_layers=32, num_heads=32, head_dim=128, seq_len=4096)
for label, b in table.items():
    print(f"{label:<22} {b / 2 ** 30:6.3f} GiB per sequence")
fig = kv_cache_bars(table, "KV cache per sequence: 32 layers, 32 heads x 128, 4096 tokens, fp16")
fig

# %% [markdown]
# The formula is what minigrad's `KVCache` really allocates:

# %%
cache = nn.KVCache(num_layers=4, batch_size=2, num_kv_heads=2, max_seq_len=64, head_dim=16,
                   dtype=np.float16)
print(cache.nbytes, "bytes allocated;",
      nn.kv_cache_bytes(4, 2, 16, 64, batch_size=2, itemsize=2), "by the formula")

# %% [markdown]
# Decoding with the cache computes exactly what recomputing the whole prefix
# would, but each new token runs one position through the model instead of
# the whole prefix again: N new tokens after a prompt of P cost P + N
# positions instead of about (P + N)^2 / 2. An untrained model is enough to
# measure it (at toy sizes Python's per-call overhead hides part of the gain):

# %%
big = TinyGPT(GPTConfig(vocab_size=12, block_size=192, n_layer=2, n_head=4, n_kv_head=2,
                        n_embd=128))
P, N = 8, 160
prompt = minigrad.get_rng().integers(0, 12, size=(1, P))
t0 = time.perf_counter()
with_cache = generate(big, prompt, N, temperature=0)
t1 = time.perf_counter()
without = generate(big, prompt, N, temperature=0, use_cache=False)
t2 = time.perf_counter()
print("same tokens:", np.array_equal(with_cache, without))
print(f"positions run through the model: {P + N - 1} with the cache, "
      f"{sum(range(P, P + N))} recomputing")
print(f"{N} new tokens: {t1 - t0:.2f} s with the cache, {t2 - t1:.2f} s recomputing")

# %% [markdown]
# ## 5. A tiny GPT learns to add
# `minigrad.data.AdditionTask` writes sums such as "47+38=580": the answer is
# zero-padded and reversed (least significant digit first), the order in
# which carries happen. A held-out set of operand pairs is never trained on.
# TinyGPT is token + position embeddings, pre-norm causal blocks
# (x + attn(LN(x)), then x + MLP(LN(x))) and a linear head; the loss is
# next-token cross-entropy on the answer digits.
#
# A short run (2-digit sums, one layer; about 10 s on a laptop):

# %%
minigrad.manual_seed(0)
run = train_addition(n_digits=2, steps=400, batch_size=64, lr=3e-3, n_test=500, eval_every=100,
                     config=GPTConfig(vocab_size=12, block_size=9, n_layer=1, n_head=4,
                                      n_embd=48))
task, model = run.task, run.model
print(f"held-out exact-match accuracy: {run.accuracy:.1%} of {task.test_a.size} sums "
      f"after {len(run.losses)} steps ({run.seconds:.1f} s)")
fig = training_curve(run.steps, run.losses, run.eval_steps, run.eval_accuracy,
                     "TinyGPT learning 2-digit addition")
fig

# %% [markdown]
# The full run, `train_addition()` (3-digit sums, 2 layers of width 64, 1500
# steps), reaches 100% exact match on 1000 held-out sums in a few minutes on
# a laptop CPU; try it.
#
# Completions of held-out sums, greedy:

# %%
pick = np.linspace(0, task.test_a.size - 1, 6).astype(int)
a, b = task.test_a[pick], task.test_b[pick]
for x_, y_, s in zip(a, b, complete_sums(model, task, a, b)):
    print(f"{x_:>2} + {y_:>2} = {s:>3}   {'right' if s == x_ + y_ else 'WRONG'}")

# %% [markdown]
# ## 6. What the heads look at
# Rows are queries, columns keys. Under the causal mask everything above the
# diagonal is zero. After "=", the model must write the units digit of the
# sum: watch which positions the "=" row attends to. On the right, the same
# weights with the mask removed (bidirectional, as in an encoder): the
# earlier queries now also look ahead.

# %%
ex = task.encode_pairs(a[:1], b[:1])[:, :-1]
tokens = task.tokenizer.decode(ex[0])
causal_maps = model.attention_maps(ex)[0][0]           # layer 0, (H, T, T)
bidirectional = model.attention_maps(ex, is_causal=False)[0][0]
maps = {f"head {h}": causal_maps[h] for h in range(4)}
fig = attention_heatmaps(maps, tokens, f"the {len(maps)} heads of layer 0 on {tokens!r}")
savefig(fig, "ch03_heads")
fig

# %%
fig = attention_heatmaps({"head 0, causal": causal_maps[0],
                          "head 0, mask removed": bidirectional[0]}, tokens)
savefig(fig, "ch03_causal_vs_bidirectional")
fig

# %% [markdown]
# The contrast in one number: a decoder's output at position i ignores later
# tokens; an encoder's (`nn.TransformerEncoder`) does not.

# %%
enc = nn.TransformerEncoder(num_layers=2, embed_dim=48, num_heads=4)
xs = minigrad.get_rng().standard_normal((1, 8, 48)).astype(np.float32)
xs2 = xs.copy()
xs2[0, 6:] = minigrad.get_rng().standard_normal((2, 48))
ex2 = ex.copy()
ex2[0, 6:] = (ex2[0, 6:] + 1) % 10
print("decoder, change in outputs 0..5 when tokens 6.. change:",
      np.abs(model(ex).data[0, :6] - model(ex2).data[0, :6]).max())
print("encoder, change in outputs 0..5 when tokens 6.. change:",
      np.abs(enc(Tensor(xs)).data[0, :6] - enc(Tensor(xs2)).data[0, :6]).max())

# %% [markdown]
# ## 7. Choosing the next token
# The model gives logits z; the next token is drawn from softmax(z / T).
# T → 0 is greedy, T > 1 flattens. Top-k keeps the k most probable tokens;
# top-p (nucleus sampling, Holtzman et al. 2020) keeps the smallest set whose
# probability reaches p. Both renormalise what is left. One set of logits:

# %%
z = minigrad.get_rng().standard_normal(12) * 1.5
dists = compare_sampling(z)               # next_token_probs under five settings
fig = sampling_distributions(dists, list(task.tokenizer.vocab),
                             "sampling the next token from one set of logits")
fig

# %% [markdown]
# Sampling the adder at temperature 1.5 makes it err; every draw comes from a
# seeded generator, so the same seed writes the same sums:

# %%
for seed in (1, 1, 2):
    s = complete_sums(model, task, a, b, temperature=1.5, rng=np.random.default_rng(seed))
    print(f"seed {seed}:", s, f"({np.mean(s == a + b):.0%} right)")

# %% [markdown]
# ## 8. Where a training step's time goes
# Every hot loop in minigrad exists twice: a readable NumPy reference and a
# fused numba kernel tested equal to it, chosen by one switch
# (`minigrad.kernels.use("reference")` or `"numba"`). `minigrad.profiler`
# times one training step op by op: `compare_kernels` runs the same seeded
# TinyGPT step (nanoGPT's CPU shape: 4 layers of 128, context 64, batch 12,
# AdamW) on each side, and checks that both give the same first loss.
#
# NumPy's exact GELU takes about ten passes over its (12, 64, 512) input,
# and layer norm about as many; each kernel makes one, with GELU's erfc
# and chapter 4's exp written as polynomials, eight values at once in SIMD lanes.
# The matrix multiplies are BLAS calls on both sides, and set the floor.

# %%
from minigrad.profiler import compare_kernels, tinygpt_step
from minigrad.viz.training import step_profile_bars

runs = compare_kernels(lambda: tinygpt_step(batch_size=12), steps=3)
print(f"first loss: kernels {runs['numba']['first loss']:.6f}, "
      f"references {runs['reference']['first loss']:.6f}")
fig = step_profile_bars({"numba kernels": runs["numba"], "NumPy references": runs["reference"]},
                        "one TinyGPT training step, AdamW")
fig

# %% [markdown]
# `python -m benchmarks.bench_gpt` times the same step against the same
# model in PyTorch, in one process, in interleaved rounds.

# %% [markdown]
# ## Exercises
# Coding exercises (fenced in the library; the student copy has stubs):
#
# | id | where | what |
# | --- | --- | --- |
# | `ch3.causal_mask` | `minigrad/functional.py`, `causal_mask` | the top-left aligned lower triangle |
# | `ch3.repeat_kv` | `minigrad/functional.py`, `_repeat_heads` | GQA: each key/value head copied n_rep times |
# | `ch3.sdpa_backward` | `minigrad/functional.py`, `scaled_dot_product_attention` | dQ, dK, dV through the softmax |
# | `ch3.top_p` | `minigrad/sampling.py`, `top_p_filter` | the nucleus of the next-token distribution |
#
# Exam-style questions (answer in `answers.toml`): KV-cache bytes of a 7B-class
# model with MHA and with GQA for a batch, cache growth per token as a formula,
# parameters of a GQA layer, pairs allowed by a causal mask, the tokens top-p
# keeps, and why scores are divided by sqrt(d).
#
# ```
# minigrad exercises list     # every exercise and question with its points
# minigrad grade              # grade your copy (code and answers.toml)
# ```

# %%
from minigrad.exercises import show  # noqa: E402

show(chapter=3)
