"""Chapter 11 (mixture of experts and long context): coding exercises and exam-style questions.

The coding exercises are fenced in ``minigrad/moe/routing.py``,
``minigrad/moe/expert_parallel.py``, ``minigrad/nn/rope.py`` and
``minigrad/flash/ring_attention.py``. Answers to the questions are computed
by calling the library, never typed in.
"""

from __future__ import annotations

from .registry import Exercise, Question

EXERCISES = [
    Exercise(
        "ch11.top_k_routing", title="Top-k routing with a capacity per expert", points=3,
        statement=(
            "minigrad/moe/routing.py, top_k_routing(probs, k, capacity). Compute expert_index "
            "(T, k): each token's k most probable experts, best first, ties to the lower index "
            "(a stable argsort of -probs). Then hand out slots: every token's first choice in "
            "token order, then every second choice, and so on; position (T, k) is how many "
            "earlier claims that expert already had, and kept = position < capacity (all True "
            "when capacity is None).")),
    Exercise(
        "ch11.load_balancing_loss", title="The Switch load-balancing loss", points=2,
        statement=(
            "minigrad/moe/routing.py, load_balancing_loss(probs, expert_index). Return "
            "E * sum_i f_i * P_i as a Tensor: f_i is the fraction of the T*k entries of "
            "expert_index equal to i (a constant, no gradient), P_i = probs.mean(dim=0)[i] "
            "(differentiable). A uniform router gives 1, a collapsed one E.")),
    Exercise(
        "ch11.rope_rotation", title="RoPE's rotate-half", points=2,
        statement=(
            "minigrad/nn/rope.py, rotate_half(x). Split the last axis into halves x1, x2 and "
            "return concat(-x2, x1), for a Tensor (minigrad.cat, so gradients flow) and for an "
            "ndarray. apply_rotary_pos_emb then rotates by x * cos + rotate_half(x) * sin: pair "
            "(x_i, x_{i+D/2}) turns by the angle m * 10000^(-2i/D).")),
    Exercise(
        "ch11.lse_merge", title="Ring attention's log-sum-exp merge", points=2,
        statement=(
            "minigrad/flash/ring_attention.py, merge_attention(o_a, lse_a, o_b, lse_b). Two "
            "attentions of the same queries over disjoint keys: return lse = log(exp(lse_a) + "
            "exp(lse_b)) and O = exp(lse_a - lse) O_a + exp(lse_b - lse) O_b, computed stably "
            "(np.logaddexp), and with safe_max(lse) subtracted so that rows with lse_a = lse_b "
            "= -inf give O = 0, not NaN.")),
    Exercise(
        "ch11.all_to_all_dispatch", title="Expert parallelism: the rows each GPU sends", points=3,
        statement=(
            "minigrad/moe/expert_parallel.py, dispatch_buffers. token (n,) and counts (E,) from "
            "dispatch_order list the kept (token, choice) pairs sorted by expert. Build send: a "
            "list of world_size arrays, send[j] holding x[token] rows of the experts GPU j owns "
            "(experts j*experts_per_rank ... (j+1)*experts_per_rank - 1), in the sorted order.")),
]


def _active_params():
    from ..moe import moe_param_counts
    return moe_param_counts(4096, 14336, 8, 2, bias=False)["active"]


def _capacity():
    from ..moe import expert_capacity
    return expert_capacity(4096, 64, 2, 1.25)


def _collapsed_loss():
    import numpy as np

    from ..moe import load_balancing_loss
    probs = np.zeros((32, 16))
    probs[:, 3] = 1.0
    return load_balancing_loss(probs, np.full((32, 1), 3)).item()


def _dispatch_bytes():
    from ..moe import all_to_all_bytes
    return all_to_all_bytes(4096, 2, 4096, 8, itemsize=2)


def _ring_bytes_formula(N, p, d):
    from ..flash.ring_attention import ring_bytes
    return ring_bytes(N, p, d, batch_heads=1, itemsize=2)


def _contiguous_imbalance():
    from ..flash.ring_attention import scores_per_gpu
    s = scores_per_gpu(8192, 4, "contiguous", is_causal=True)
    return s[-1] / s[0]


QUESTIONS = [
    Question(
        "ch11.q.active_params", kind="numeric", points=1,
        prompt=("An MoE layer has E = 8 experts, each Linear(4096, 14336) then Linear(14336, 4096) "
                "without biases, and a router Linear(4096, 8) without bias; k = 2. How many of its "
                "parameters does one token use (the active parameters)?"),
        answer=_active_params, rtol=0.001),
    Question(
        "ch11.q.capacity", kind="numeric", points=1,
        prompt=("A batch of 4096 tokens is routed top-2 over 64 experts with capacity factor 1.25. "
                "How many token slots does each expert have (rounded up)?"),
        answer=_capacity, rtol=0.0),
    Question(
        "ch11.q.collapsed_balance_loss", kind="numeric", points=1,
        prompt=("The router of a 16-expert layer sends every token to expert 3 with probability "
                "1. What is the Switch load-balancing loss E * sum_i f_i P_i?"),
        answer=_collapsed_loss, rtol=0.001),
    Question(
        "ch11.q.dispatch_bytes", kind="numeric", points=2,
        prompt=("Expert parallelism over 8 GPUs: each GPU holds 4096 tokens of width 4096 in "
                "bf16, routed top-2 and perfectly balanced, no drops. How many bytes does one GPU "
                "send in the dispatch all-to-all (rows for its own experts stay home)?"),
        answer=_dispatch_bytes, rtol=0.01),
    Question(
        "ch11.q.ring_bytes", kind="expression", points=2, variables=("N", "p", "d"),
        prompt=("Ring attention, one head of dimension d, fp16, a sequence of N positions split "
                "evenly over p GPUs. Write the bytes each GPU sends in the forward pass (its K "
                "and V blocks passed on at every step but the last) as a formula in N, p, d."),
        answer=_ring_bytes_formula, rtol=0.01),
    Question(
        "ch11.q.contiguous_imbalance", kind="numeric", points=2,
        prompt=("Causal ring attention with N = 8192 over 4 GPUs in contiguous shards: GPU r holds "
                "positions [2048 r, 2048 (r+1)). How many times more unmasked scores does GPU 3 "
                "compute than GPU 0 (count a diagonal block as n(n+1)/2)?"),
        answer=_contiguous_imbalance, rtol=0.01),
    Question(
        "ch11.q.rope_cache", kind="choice", points=1,
        prompt="A decoder with rotary position embeddings generates with a KV cache. Which is true?",
        choices={"a": "every cached key must be rotated again at each step, by the new position",
                 "b": "keys are cached already rotated by their own positions; only the new query "
                      "and key are rotated, by the cache's length plus their offset",
                 "c": "RoPE rotates the values too, so the cache must hold unrotated values"},
        answer=lambda: "b"),
]
