"""Length extrapolation: RoPE against learned position embeddings, on a task about offsets.

The task, "lag copy": a sequence of random tokens, and at every position t
the model must output the token at t - lag. Solving it means attending by
*relative* position. A TinyGPT is trained on sequences of ``train_len``
tokens and tested on longer ones:

- learned absolute embeddings (GPT-2): positions >= train_len were never
  trained (their rows of ``wpe`` are still the random init), so the model
  has no idea where it is there;
- RoPE: scores depend on q, k and the offset n - m only, so the rule learned
  at offsets seen in training applies at any absolute position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import functional as F
from ..data.addition import IGNORE_INDEX
from ..optim import AdamW
from ..tensor import get_rng, no_grad
from .tinygpt import GPTConfig, TinyGPT

__all__ = ["lag_copy_batch", "ExtrapolationResult", "length_extrapolation"]


def lag_copy_batch(batch_size: int, length: int, vocab_size: int, lag: int, rng=None):
    """(x, y), each (B, T): random tokens, and y[:, t] = x[:, t - lag] (IGNORE_INDEX for t < lag)."""
    if lag < 1 or length <= lag:
        raise ValueError(f"lag_copy_batch: need 1 <= lag < length, got lag={lag}, length={length}")
    rng = get_rng() if rng is None else rng
    x = rng.integers(0, vocab_size, (batch_size, length))
    y = np.full_like(x, IGNORE_INDEX)
    y[:, lag:] = x[:, :-lag]
    return x, y


@dataclass
class ExtrapolationResult:
    """Per-position accuracy (positions 0 .. eval_len - 1) of each position embedding."""

    train_len: int
    eval_len: int
    accuracy: dict            # pos_emb -> (eval_len,) accuracy per position (nan for t < lag)
    seconds: dict             # pos_emb -> training seconds


def length_extrapolation(train_len: int = 16, eval_len: int = 64, lag: int = 3,
                         vocab_size: int = 16, steps: int = 250, batch_size: int = 32,
                         n_embd: int = 32, n_head: int = 2, lr: float = 1e-2, n_eval: int = 200,
                         rng=None) -> ExtrapolationResult:
    """Train a 1-layer TinyGPT with each position embedding on length ``train_len``; test to ``eval_len``."""
    import time
    rng = get_rng() if rng is None else rng
    acc, secs = {}, {}
    x_ev, y_ev = lag_copy_batch(n_eval, eval_len, vocab_size, lag, rng)
    for pos_emb in ("learned", "rope"):
        cfg = GPTConfig(vocab_size=vocab_size, block_size=eval_len, n_layer=1, n_head=n_head,
                        n_embd=n_embd, pos_emb=pos_emb)
        model = TinyGPT(cfg)
        opt = AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        t0 = time.perf_counter()
        for _ in range(steps):
            x, y = lag_copy_batch(batch_size, train_len, vocab_size, lag, rng)
            loss = F.cross_entropy(model(x).reshape(-1, vocab_size), y.reshape(-1))
            model.zero_grad()
            loss.backward()
            opt.step()
        secs[pos_emb] = time.perf_counter() - t0
        with no_grad():
            pred = model(x_ev).data.argmax(-1)                       # (n, eval_len)
        a = (pred == y_ev).mean(axis=0)
        a[:lag] = np.nan
        acc[pos_emb] = a
    return ExtrapolationResult(train_len, eval_len, acc, secs)
