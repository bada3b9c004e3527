"""Chapter 3 (attention and transformers): coding exercises and exam-style questions.

The answers are computed by calling the library, never typed in.
"""

from __future__ import annotations

import numpy as np

from .registry import Exercise, Question

EXERCISES = [
    Exercise(
        "ch3.causal_mask", title="The causal mask", points=2,
        statement=(
            "minigrad/functional.py, causal_mask(L, S). Return a boolean (L, S) array, True "
            "where query i may attend key j, i.e. j <= i: the top-left aligned lower triangle "
            "that PyTorch's is_causal=True uses (torch.ones(L, S).tril()), for any L and S. "
            "scaled_dot_product_attention(is_causal=True) uses it.")),
    Exercise(
        "ch3.repeat_kv", title="Grouped-query attention: repeat the key/value heads", points=2,
        statement=(
            "minigrad/functional.py, _repeat_heads(x, n_rep). x is an ndarray (..., H_kv, S, E); "
            "return (..., H_kv * n_rep, S, E) in which output head h is input head h // n_rep "
            "(each key/value head copied n_rep times in a row, as torch.repeat_interleave on "
            "dim -3). F.repeat_kv and SDPA's enable_gqa use it.")),
    Exercise(
        "ch3.sdpa_backward", title="Backward of scaled dot-product attention", points=4,
        statement=(
            "minigrad/functional.py, the backward closure of scaled_dot_product_attention. The "
            "forward kept P (the softmax weights, (..., L, N)), Pd (P after dropout), keep "
            "(dropout's mask times 1/(1-p), or None), the output O, the arrays Q, K, V "
            "(K and V with their heads already repeated for GQA) and scale. Given dO "
            "(..., L, Ev) compute dV = Pd^T dO; dP = dO V^T (times keep under dropout); "
            "dS = P * (dP - rowsum(dO * O)); "
            "dQ = scale * dS K; dK = scale * dS^T Q. Leave dQ, dK, dV and dS (the gradient of "
            "the masked scores, used for a float mask) in those names.")),
    Exercise(
        "ch3.top_p", title="Nucleus (top-p) filtering", points=3,
        statement=(
            "minigrad/sampling.py, top_p_filter(logits, p). For each row of logits (V,) or "
            "(B, V): softmax, sort the probabilities in decreasing order, keep a token when the "
            "probability mass of the tokens ranked before it is below p (so the token that "
            "crosses p is kept, and the most probable token always is), and return the logits "
            "with every other entry set to -inf, in the original vocabulary order.")),
]


def _kv_bytes(layers, kv_heads, head_dim, seq_len, batch=1, itemsize=2) -> int:
    from ..nn.kv_cache import kv_cache_bytes
    return kv_cache_bytes(int(layers), int(kv_heads), int(head_dim), int(seq_len), int(batch),
                          int(itemsize))


def _gqa_params() -> int:
    from ..nn.attention import attention_param_count
    return attention_param_count(4096, 32, num_kv_heads=8, bias=False)


def _causal_pairs(N) -> int:
    from ..functional import causal_mask
    return int(causal_mask(int(N), int(N)).sum())


def _top_p_kept() -> int:
    from ..sampling import top_p_filter
    return int(np.isfinite(top_p_filter(np.log([0.5, 0.3, 0.15, 0.05]), 0.9)).sum())


QUESTIONS = [
    Question(
        "ch3.q.kv_cache_mha", kind="numeric", points=2,
        prompt=("Bytes of the KV cache of one 4096-token sequence for a model with 32 layers and "
                "32 attention heads of dimension 128 (multi-head attention: 32 key/value heads), "
                "stored in fp16."),
        answer=lambda: _kv_bytes(32, 32, 128, 4096)),
    Question(
        "ch3.q.kv_cache_gqa_batch", kind="numeric", points=2,
        prompt=("The same model with grouped-query attention, 8 key/value heads: bytes of the "
                "fp16 KV cache for a batch of 16 sequences of 4096 tokens."),
        answer=lambda: _kv_bytes(32, 8, 128, 4096, batch=16)),
    Question(
        "ch3.q.kv_bytes_per_token", kind="expression", formula="4*L*H*D",
        points=1, variables=("L", "H", "D"),
        prompt=("Bytes the fp16 KV cache grows by per generated token, for L layers with H "
                "key/value heads of dimension D, as a formula in L, H, D."),
        answer=lambda L, H, D: _kv_bytes(L, H, D, 1)),
    Question(
        "ch3.q.gqa_params", kind="numeric", points=1,
        prompt=("Parameters of one attention layer (q, k, v and output projections, no biases) "
                "with model width 4096, 32 query heads and 8 key/value heads."),
        answer=_gqa_params),
    Question(
        "ch3.q.causal_pairs", kind="expression", formula="N*(N + 1)/2",
        points=1, variables=("N",),
        prompt=("How many (query, key) pairs does a causal mask allow for a sequence of N "
                "tokens (L = S = N)? A formula in N."),
        answer=_causal_pairs),
    Question(
        "ch3.q.top_p_kept", kind="numeric", points=1, rtol=0.0,
        prompt=("The next-token probabilities are 0.5, 0.3, 0.15 and 0.05. How many tokens can "
                "nucleus sampling with p = 0.9 choose from?"),
        answer=_top_p_kept),
    Question(
        "ch3.q.why_scale", kind="choice", points=1,
        prompt="Why are the scores q . k divided by sqrt(d) before the softmax?",
        choices={"a": ("for q, k with independent unit-variance entries, q . k has variance d; "
                       "dividing by sqrt(d) keeps it near 1 so the softmax does not saturate "
                       "into a near one-hot with vanishing gradients"),
                 "b": "so that each row of attention weights sums to one",
                 "c": "to halve the memory of the score matrix"},
        answer=lambda: "a"),
]
