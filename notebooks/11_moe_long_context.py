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
# # Chapter 11: mixture of experts and long context
#
# Two ways a model grows past what one dense GPU computation allows. A **mixture of experts**
# (MoE) holds many expert MLPs but runs only k of them per token, so parameters grow while
# the FLOPs per token stay put; spread over GPUs (**expert parallelism**), tokens travel to
# their expert's GPU with an all-to-all. **Long context** needs positions that generalise
# (rotary position embeddings, **RoPE**) and attention over sequences too long for one GPU
# (**ring attention**: the sequence split over GPUs, K/V blocks passed around a ring, partial
# results merged with chapter 4's log-sum-exp).
#
# You will be able to compute, and check against minigrad:
# - top-k routing with a capacity $C = \lceil \text{cf} \cdot T k / E \rceil$ and the tokens it drops;
# - the load-balancing loss $E \sum_i f_i P_i$ (1 when balanced, $E$ when collapsed) and the router z-loss;
# - active versus total parameters and FLOPs per token of an MoE model;
# - the bytes of expert parallelism's two all-to-alls, $T k \frac{p-1}{p} C$ per GPU each;
# - RoPE's rotation and why $q \cdot k$ depends only on the position difference;
# - ring attention's merge, its bytes $(p-1)\,2 \frac{N}{p} d$ per GPU, its memory per GPU, and
#   the load balance of the zig-zag layout.

# %%
import numpy as np

import minigrad
from minigrad import Tensor
from minigrad import functional as F
from minigrad.distributed import VirtualCluster
from minigrad.flash import ring_attention as R
from minigrad.models import GPTConfig, TinyGPT, train_addition
from minigrad.models.extrapolation import length_extrapolation
from minigrad.moe import (MoE, MoEConfig, all_to_all_bytes, expert_capacity,
                          expert_parallel_forward, load_balancing_loss, moe_param_counts,
                          top_k_routing)
from minigrad.moe.train import mlp_flops_per_token, model_sizes, train_moe_addition
from minigrad.nn.rope import RotaryEmbedding, apply_rotary_pos_emb
from minigrad.viz import moe as V
from IPython.display import display  # the figures the tour saves are shown here, not saved

minigrad.manual_seed(0)
rng = minigrad.get_rng()

# %% [markdown]
# ## 1. Routing: top-k, capacity, dropped tokens
#
# The router is one Linear layer $C \to E$ and a softmax. Each token picks its $k$ most
# probable experts. An expert has a fixed buffer of $C$ slots; first choices claim slots
# before second choices, each in token order, and claims past the capacity are **dropped**
# (the residual connection carries the token on unchanged). Here 12 tokens go to 4 experts
# with $k = 2$ and capacity factor 1.0, so $C = \lceil 12 \cdot 2 / 4 \rceil = 6$.

# %%
logits = rng.standard_normal((12, 4))
logits[:, 0] += 1.0                                  # a router that likes expert 0
probs = F.softmax(Tensor(logits)).data
cap = expert_capacity(12, 4, 2, 1.0)
r = top_k_routing(probs, 2, cap)
print("capacity per expert:", cap)
print("choices (token: first, second):", r.expert_index.tolist())
print("kept:", r.kept.astype(int).tolist())
print("tokens per expert:", r.tokens_per_expert.tolist(), " dropped:", r.dropped)
print(f"balancing loss of this router: {load_balancing_loss(Tensor(probs), r.expert_index).item():.3f} "
      f"(1 = balanced, 4 = collapsed)")

# %% [markdown]
# ## 2. The MoE layer, and active vs total size
#
# With one expert and $k = 1$ the softmax is 1 and the layer *is* the dense MLP (a test
# holds them equal). With $E$ experts each of width $H$, a token uses $k$ of them. Take $E = 4$
# experts of width $2C$ and $k = 2$: a token runs two MLPs of width $2C$, the same FLOPs as
# the dense model's one MLP of width $4C$, while the layer holds twice the parameters.

# %%
C = 48
dense_cfg = GPTConfig(vocab_size=12, block_size=9, n_layer=1, n_head=4, n_embd=C)
switch_cfg = GPTConfig(vocab_size=12, block_size=9, n_layer=1, n_head=4, n_embd=C,
                       moe=MoEConfig(num_experts=4, k=1, mlp_ratio=4))
moe_cfg = GPTConfig(vocab_size=12, block_size=9, n_layer=1, n_head=4, n_embd=C,
                    moe=MoEConfig(num_experts=4, k=2, mlp_ratio=2))
for name, cfg in (("dense, MLP width 4C", dense_cfg), ("MoE, 4 experts of 4C, k=1", switch_cfg),
                  ("MoE, 4 experts of 2C, k=2", moe_cfg)):
    s = model_sizes(TinyGPT(cfg))
    m = cfg.moe
    flops = mlp_flops_per_token(C, 4 * C) if m is None else \
        mlp_flops_per_token(C, m.mlp_ratio * C, m.num_experts, m.k)
    print(f"{name:<28} total {s['total']:>7,}  active {s['active']:>7,}  "
          f"MLP FLOPs/token {flops:>7,}")
c = moe_param_counts(4096, 14336, 8, 2, bias=False)
print(f"a Mixtral-sized layer (E=8, k=2, C=4096, H=14336): {c['total'] / 1e6:.0f}M parameters, "
      f"{c['active'] / 1e6:.0f}M active")

# %% [markdown]
# ## 3. Training on the addition task, with and without the balancing loss
#
# Chapter 3's task (2-digit sums), a one-layer TinyGPT whose MLP is 4 experts of width $4C$
# with $k = 1$ (Switch: the second row of the table above, the dense model's active size
# with 2.9 times its parameters). Without the auxiliary loss nothing stops the router from favouring the experts
# that happened to learn first; with it, the choices spread out. The figure shows the token
# choices each expert (one per GPU under expert parallelism) receives at every step. (300
# steps is a short run: accuracy still varies a lot from seed to seed.)

# %%
runs, accs = {}, {}
for label, coef in (("no balancing loss", 0.0), ("balancing loss 0.05", 0.05)):
    minigrad.manual_seed(0)                          # the same initial model and batches for both
    run = train_moe_addition(steps=300, moe=MoEConfig(num_experts=4, k=1, aux_loss_coef=coef),
                             progress=False)
    runs[label], accs[label] = run.tokens_per_expert[:, 0], run.accuracy
    tail = runs[label][-20:].mean(0)
    print(f"{label:<22} tokens per expert (last 20 steps): {np.round(tail).astype(int).tolist()}, "
          f"held-out accuracy {run.accuracy:.0%} ({run.seconds:.1f} s)")
ideal = runs["no balancing loss"].sum(1).mean() / 4
display(V.tokens_per_gpu(runs, 1, ideal))
minigrad.manual_seed(0)                              # the dense model of the same active size
dense = train_addition(n_digits=2, steps=300, batch_size=64, lr=3e-3, warmup=50, n_test=500,
                       eval_every=300, n_eval=100, config=dense_cfg, progress=False)
print(f"dense, same active size: held-out accuracy {dense.accuracy:.0%} ({dense.seconds:.1f} s)")

# %% [markdown]
# On a task this small and a run this short, the MoE's extra parameters buy no accuracy over
# the dense model of its active size (accuracy after 300 steps also varies from seed to
# seed); what the balancing loss changes, plainly, is how evenly the experts, and so the
# GPUs holding them, are loaded.

# %% [markdown]
# ## 4. Expert parallelism on virtual GPUs
#
# Four GPUs, each holding its own 64 tokens and 2 of 8 experts. The router runs where the
# tokens are; an all-to-all sends each kept choice to its expert's GPU; the experts run; a
# second all-to-all brings the results home. The result equals the one-device layer, and
# the bytes are what left each GPU. With balanced routing each all-to-all sends
# $T k \frac{p-1}{p} C \cdot$ itemsize per GPU.

# %%
moe = MoE(16, 32, num_experts=8, k=2, dtype=np.float64)
shards = [rng.standard_normal((64, 16)) for _ in range(4)]
res = expert_parallel_forward(VirtualCluster(4), moe, shards)
err = max(np.abs(o - moe(Tensor(x)).data).max() for o, x in zip(res.outputs, shards))
print(f"expert parallel vs one device: max |diff| = {err:.1e}")
print("rows sent GPU i -> GPU j:\n", res.send_counts)
print("token choices each GPU's experts processed:", res.tokens_per_gpu.tolist())
print(f"dispatch bytes per GPU {res.dispatch_bytes.tolist()}, combine {res.combine_bytes.tolist()}; "
      f"balanced closed form {all_to_all_bytes(64, 2, 16, 4, itemsize=8):.0f}")

# %% [markdown]
# ## 5. Rotary position embeddings
#
# RoPE turns pair $(x_i, x_{i+D/2})$ of a query or key at position $m$ by the angle
# $m\,\theta_i$, $\theta_i = 10000^{-2i/D}$ (the rotate-half convention of Llama and Hugging
# Face: `x * cos + rotate_half(x) * sin`). Rotations compose, so the score of a query at $m$
# and a key at $n$ depends only on $n - m$:

# %%
rope = RotaryEmbedding(16, dtype=np.float64)
q, k = rng.standard_normal(16), rng.standard_normal(16)


def score(m, n):
    cq, sq = rope(np.array([m]))
    ck, sk = rope(np.array([n]))
    return apply_rotary_pos_emb(q[None], q[None], cq, sq)[0][0] @ apply_rotary_pos_emb(k[None], k[None], ck, sk)[1][0]


for m in (0, 10, 1000):
    print(f"query at {m:>4}, key at {m + 3:>4}: score {score(m, m + 3):.10f}")

# %% [markdown]
# That is why a KV cache can store keys already rotated: a cached key never changes as
# decoding goes on; the new token is rotated by its position, the cache's length. A TinyGPT
# with `pos_emb="rope"` decodes with the cache exactly as it computes the whole sequence:

# %%
model = TinyGPT(GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=4, n_embd=32,
                          pos_emb="rope"), dtype=np.float64)
idx = rng.integers(0, 11, (1, 12))
cache = model.new_kv_cache(1)
cached = [model(idx[:, :4], kv_cache=cache).data] + \
    [model(idx[:, t:t + 1], kv_cache=cache).data for t in range(4, 12)]
print(f"cached decoding vs full recomputation: max |diff| = "
      f"{np.abs(np.concatenate(cached, 1) - model(idx).data).max():.1e}")

# %% [markdown]
# **Length extrapolation.** Train on sequences of 16 tokens a task that needs relative
# positions (output the token 2 places back), then test on 48. Learned position embeddings
# have never trained rows 16..47; RoPE's rule depends on offsets only.

# %%
ext = length_extrapolation(train_len=16, eval_len=48, lag=2, n_head=4, steps=150, rng=rng)
for label, acc in ext.accuracy.items():
    print(f"{label:<8} accuracy: positions 2-15 {np.nanmean(acc[:16]):.0%}, "
          f"16-31 {np.nanmean(acc[16:32]):.0%}, 32-47 {np.nanmean(acc[32:]):.0%}")
display(V.extrapolation(ext))

# %% [markdown]
# RoPE carries the rule far past the trained length, but not forever. Its scores depend on
# the offset n - m only, and training showed it offsets up to 15. Past about position 40 the
# queries meet keys 40 or more places back, an offset the model never saw, and for this
# model those scores happen to beat the key 2 back: the attention maps of such a run put
# every head's weight on a key near the start of the sequence there (read them with
# `model.attention_maps`). Extrapolation in RoPE means *seen offsets at unseen positions*;
# unseen offsets need training at length or a rescaled theta (position interpolation, YaRN).
#
# ## 6. Ring attention
#
# The sequence is split over $p$ GPUs. GPU $r$ keeps its queries; K/V blocks travel around
# the ring; after each block GPU $r$ merges the partial attention with the log-sum-exp rule
#
# $$\ell = \log(e^{\ell_a} + e^{\ell_b}),\qquad O = e^{\ell_a - \ell} O_a + e^{\ell_b - \ell} O_b .$$
#
# Values and gradients equal SDPA's (here 37 positions over 4 GPUs, causal):

# %%
q, k, v = (Tensor(rng.standard_normal((2, 37, 8)), requires_grad=True) for _ in range(3))
o = R.ring_attention(q, k, v, VirtualCluster(4), is_causal=True, impl="numpy", block_size=8)
o.sum().backward()
grads = [t.grad for t in (q, k, v)]
for t in (q, k, v):
    t.grad = None
F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()
print(f"max |diff| of dQ, dK, dV vs SDPA: {max(np.abs(g - t.grad).max() for g, t in zip(grads, (q, k, v))):.1e}")

# %% [markdown]
# **Load balance.** Causal and contiguous, GPU 0's queries see one triangle while GPU 3's see
# three full blocks and a triangle. The zig-zag layout gives GPU $r$ chunks $r$ and $2p-1-r$
# of $2p$, so every GPU does the same work:

# %%
work = {lay: R.scores_per_gpu(8192, 4, lay) for lay in ("contiguous", "zigzag")}
for lay, w in work.items():
    print(f"{lay:<10} unmasked scores per GPU (N=8192, p=4): {w.tolist()}  "
          f"busiest/idlest {w.max() / w.min():.1f}x")
display(V.ring_work(work))

# %% [markdown]
# **Overlap.** While a GPU computes on one block, the next is already on the wire, so a step
# costs $\max(t_\text{compute}, t_\text{transfer})$ instead of their sum:

# %%
x = rng.standard_normal((1, 512, 32))
traces = {}
for label, overlap in (("sequential", False), ("overlapped", True)):
    cl = VirtualCluster(4, latency=1e-6, bandwidth=1e11, flops_per_second=1e12)
    out = R.ring_attention_forward(x, x, x, cl, overlap=overlap, impl="numpy")
    traces[label] = cl.trace
    print(f"{label:<10} simulated time {out.simulated_time * 1e6:.2f} us, bytes sent per GPU "
          f"{cl.stats.bytes_sent.tolist()} (closed form {R.ring_bytes(512, 4, 32, 1, 8):.0f})")
display(V.ring_timelines(traces))

# %% [markdown]
# **Memory per GPU** is linear in $N/p$: queries, output, own K/V, and two K/V buffers, never
# an $N \times N$ matrix. Measured on the virtual GPUs' ledgers against the closed form
# $\frac{N}{p}(8d + 1)\cdot$ itemsize:

# %%
ns = [256, 512, 1024, 2048]
measured = R.measure_ring_memory(ns, 4, head_dim=64)
for n, m in zip(ns, measured):
    print(f"N={n:>5}: measured {m:>9,} B, closed form {R.ring_memory_bytes(n, 4, 64):>9,.0f} B")
big = [2**i for i in range(10, 18)]
fig = V.ring_memory(big, {
    "standard attention, 1 GPU (N x N scores)": [4 * n * n + 4 * n * 4 * 64 for n in big],
    "flash attention, 1 GPU": [R.ring_memory_bytes(n, 1, 64) for n in big],
    "ring attention, 4 GPUs": [R.ring_memory_bytes(n, 4, 64) for n in big],
    "ring attention, 16 GPUs": [R.ring_memory_bytes(n, 16, 64) for n in big]})
display(fig)

# %% [markdown]
# ## Exercises
# Coding: `ch11.top_k_routing` (routing with capacity), `ch11.load_balancing_loss`,
# `ch11.rope_rotation`, `ch11.lse_merge` (ring attention's merge) and
# `ch11.all_to_all_dispatch` (the rows each GPU sends). Exam-style questions (in
# `answers.toml`): active parameters, expert capacity, the collapsed balancing loss, dispatch
# bytes, ring attention's bytes as a formula, the contiguous layout's imbalance, RoPE and the
# KV cache.
#
# List them with `minigrad exercises list`, and grade your copy with:
#
# ```
# minigrad grade
# ```

# %%
from minigrad.exercises import show  # noqa: E402

show(chapter=11)
