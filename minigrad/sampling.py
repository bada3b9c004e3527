"""Choosing the next token: greedy, temperature, top-k, top-p; and ``generate``.

A language model gives logits z over the vocabulary; the next token is drawn
from p = softmax(z / T) after optionally keeping only

    top-k: the k most probable tokens (Fan et al. 2018),
    top-p: the smallest set of most probable tokens whose probability adds up
           to at least p, "nucleus sampling" (Holtzman et al. 2020),

and renormalising. T -> 0 is greedy (argmax); T > 1 flattens the distribution.
Filters are applied in the order temperature, top-k, top-p (as Hugging Face).
Every random draw comes from ``rng`` (default ``minigrad.get_rng()``), so a
seeded run samples the same text.
"""

from __future__ import annotations

import numbers

import numpy as np

from .tensor import Tensor, get_rng, no_grad

__all__ = ["greedy", "top_k_filter", "top_p_filter", "next_token_probs", "sample_next_token",
           "compare_sampling",
           "generate"]


def _logits(logits, fn: str) -> np.ndarray:
    z = np.asarray(logits.data if isinstance(logits, Tensor) else logits)
    if z.dtype.kind != "f" or z.ndim not in (1, 2) or z.shape[-1] < 1:
        raise ValueError(f"{fn}: logits must be a float array (V,) or (B, V), got "
                         f"{z.dtype} {z.shape}")
    return z


def greedy(logits) -> np.ndarray:
    """The most probable token, argmax over the last axis: (B, V) -> (B,)."""
    return np.argmax(_logits(logits, "greedy"), axis=-1)


def top_k_filter(logits, k: int) -> np.ndarray:
    """Logits with all but the ``k`` largest of each row set to -inf (ties at the k-th kept)."""
    z = _logits(logits, "top_k_filter")
    if not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"top_k_filter: k must be a positive integer, got {k!r}")
    if k >= z.shape[-1]:
        return z.copy()
    kth = np.sort(z, axis=-1)[..., -k][..., None]          # the k-th largest, (..., 1)
    return np.where(z >= kth, z, -np.inf)


def top_p_filter(logits, p: float) -> np.ndarray:
    """Nucleus filter (Holtzman et al. 2020): keep the smallest set of most probable
    tokens whose probabilities sum to at least ``p``; the rest become -inf.

    Sort the probabilities in decreasing order; a token is kept when the mass
    of the tokens *before* it is still below p, so the token that crosses p
    is kept and the top token always is.

    Args:
        logits: (V,) or (B, V).
        p: in (0, 1]; 1 keeps everything.
    """
    z = _logits(logits, "top_p_filter")
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top_p_filter: p must be in (0, 1], got {p}")
    # BEGIN SOLUTION ch3.top_p
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    probs = e / e.sum(axis=-1, keepdims=True)
    order = np.argsort(-probs, axis=-1, kind="stable")              # most probable first
    sorted_p = np.take_along_axis(probs, order, axis=-1)
    mass_before = np.cumsum(sorted_p, axis=-1) - sorted_p           # mass of the tokens ahead
    keep_sorted = mass_before < p
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)            # back to vocabulary order
    return np.where(keep, z, -np.inf)
    # END SOLUTION


def next_token_probs(logits, temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None) -> np.ndarray:
    """The distribution the next token is drawn from: softmax(filter(z / T)).

    ``temperature=0`` gives the one-hot of the argmax (greedy).
    """
    z = _logits(logits, "next_token_probs").astype(np.float64)
    if temperature < 0:
        raise ValueError(f"next_token_probs: temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return np.eye(z.shape[-1])[np.argmax(z, axis=-1)]
    z = z / temperature
    if top_k is not None:
        z = top_k_filter(z, top_k)
    if top_p is not None:
        z = top_p_filter(z, top_p)
    e = np.exp(z - z.max(axis=-1, keepdims=True))          # -inf -> 0
    return e / e.sum(axis=-1, keepdims=True)


def compare_sampling(logits) -> dict:
    """Chapter 3's picture as data: the next-token distribution of one set of logits under
    temperature 1, 0.5 and 2, top-k=3 and top-p=0.8, each from :func:`next_token_probs`."""
    return {"T=1": next_token_probs(logits), "T=0.5": next_token_probs(logits, temperature=0.5),
            "T=2": next_token_probs(logits, temperature=2.0),
            "top-k=3": next_token_probs(logits, top_k=3),
            "top-p=0.8": next_token_probs(logits, top_p=0.8)}


def sample_next_token(logits, temperature: float = 1.0, top_k: int | None = None,
                      top_p: float | None = None, rng=None) -> np.ndarray:
    """One token per row drawn from :func:`next_token_probs`: (B, V) -> (B,), (V,) -> ().

    Inverse-CDF sampling: u ~ U(0, 1), token = first index whose cumulative
    probability exceeds u.
    """
    probs = next_token_probs(logits, temperature, top_k, top_p)
    if temperature == 0:
        return np.argmax(probs, axis=-1)
    rng = get_rng() if rng is None else rng
    cdf = np.cumsum(probs, axis=-1)
    u = rng.random(probs.shape[:-1] + (1,)) * cdf[..., -1:]
    return np.minimum((cdf <= u).sum(axis=-1), probs.shape[-1] - 1)


def generate(model, idx, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, rng=None,
             use_cache: bool = True) -> np.ndarray:
    """Extend each row of ``idx`` by ``max_new_tokens`` sampled tokens.

    With ``use_cache`` the prompt is run once (prefill), then each new token
    is a length-1 forward pass that attends to the cached keys and values:
    O(T) work per token instead of recomputing the whole O(T^2) prefix.

    Args:
        model: called as ``model(idx, kv_cache=...)`` -> logits (B, T, V), with
            ``model.config.block_size`` and ``model.new_kv_cache(batch_size)``
            (e.g. :class:`minigrad.models.TinyGPT`).
        idx: (B, T) or (T,) int token ids, the prompt.
        max_new_tokens: tokens to append (prompt + new must fit block_size).
        temperature, top_k, top_p: see :func:`next_token_probs`; temperature 0 is greedy.
        rng: generator for the draws; None means ``minigrad.get_rng()``.
    Returns:
        (B, T + max_new_tokens) int64 array (1-D if ``idx`` was).
    """
    idx = np.asarray(idx.data if isinstance(idx, Tensor) else idx)
    squeeze = idx.ndim == 1
    idx = idx[None] if squeeze else idx
    if idx.dtype.kind not in "iu" or idx.ndim != 2 or idx.shape[1] < 1:
        raise ValueError(f"generate: idx must be integer token ids (B, T) with T >= 1, got "
                         f"{idx.dtype} {idx.shape}")
    if not isinstance(max_new_tokens, numbers.Integral) or max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be a non-negative integer, "
                         f"got {max_new_tokens!r}")
    block = model.config.block_size
    if use_cache and idx.shape[1] + max_new_tokens - 1 > block:  # the last token is never fed
        raise ValueError(f"generate: prompt length {idx.shape[1]} + max_new_tokens "
                         f"{max_new_tokens} - 1 exceeds the model's block_size {block} "
                         f"(use_cache=False crops the context instead)")
    rng = get_rng() if rng is None else rng
    out = idx.astype(np.int64)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            cache = model.new_kv_cache(out.shape[0]) if use_cache else None
            step_in = out
            for _ in range(max_new_tokens):
                if not use_cache:
                    step_in = out[:, -block:]       # recompute the whole (cropped) context
                logits = model(step_in, kv_cache=cache).data[:, -1, :]   # (B, T, V) -> (B, V)
                nxt = sample_next_token(logits, temperature, top_k, top_p, rng)
                out = np.concatenate([out, nxt[:, None]], axis=1)
                step_in = nxt[:, None]              # with the cache: only the new token
    finally:
        model.train(was_training)
    return out[0] if squeeze else out
