"""Training FLOPs: about 6 per parameter per token, plus attention.

A weight matrix W (d_in x d_out) costs, per token:

    forward   y = x W                     2 d_in d_out   (a multiply-add is 2 FLOPs)
    backward  dx = dy W^T, dW = x^T dy    4 d_in d_out   (two products of the same size)

so training costs 6 FLOPs per weight per token, and a model of N weights
trained on D tokens costs C ~ 6 N D (Kaplan et al. 2020; Hoffmann et al. 2022).

Attention adds work that has no weights: the scores Q K^T and the weighted sum
A V, each 2 T d FLOPs per token per layer for a context of T tokens, so
4 L T d forward and 12 L T d for training (PaLM, Chowdhery et al. 2022,
Appendix B: 6 N + 12 L H Q T, with H Q = d). Kaplan et al.'s forward count
(their eq. 2.2) has 2 L T d, half of this. Neither halves it for the causal mask,
and neither counts biases, norms, softmax or activations (a few per element
against thousands per token for the products).
"""

from __future__ import annotations

import numbers

from .configs import ModelConfig
from .params import block_parameters

__all__ = ["training_flops", "matmul_parameters", "flops_per_token",
           "attention_flops_per_token", "count_forward_flops"]


def _positive(fn, **values):
    for name, v in values.items():
        if not isinstance(v, numbers.Real) or isinstance(v, bool) or not v > 0:
            raise ValueError(f"{fn}: {name} must be a positive number, got {v!r}")


def training_flops(n_params: float, n_tokens: float) -> float:
    """C = 6 N D: FLOPs to train ``n_params`` weights on ``n_tokens`` tokens."""
    _positive("training_flops", n_params=n_params, n_tokens=n_tokens)
    return 6.0 * n_params * n_tokens


def matmul_parameters(config: ModelConfig) -> int:
    """Weights a token's vector is multiplied by: every Linear of the L blocks and the
    output head (V d, whether or not it is tied; an embedding lookup is no product).
    Biases and norm weights are left out: they cost 1 FLOP per token, not 2."""
    if not isinstance(config, ModelConfig):
        raise TypeError(f"matmul_parameters: config must be a ModelConfig, "
                        f"got {type(config).__name__}")
    nobias = config.scaled(bias=False)
    block = block_parameters(nobias)
    head = config.vocab_size * config.d_model
    return config.n_layers * (block["attention"] + block["mlp"]) + head


def attention_flops_per_token(config: ModelConfig, seq_len: int, backward: bool = True) -> int:
    """Q K^T and A V for one token attending ``seq_len`` positions, all layers:
    4 L T d forward, 12 L T d with the backward (no causal halving)."""
    _positive("attention_flops_per_token", seq_len=seq_len)
    per = 4 * config.n_layers * seq_len * config.d_model
    return 3 * per if backward else per


def flops_per_token(config: ModelConfig, seq_len: int, backward: bool = True,
                    attention: bool = True) -> int:
    """FLOPs per token of a forward pass (2 N + 4 L T d), or of a training step
    (forward + backward = 3x: 6 N + 12 L T d, PaLM's accounting).

    N is :func:`matmul_parameters`; T = ``seq_len``; ``attention=False`` drops the
    L T d term (the plain 6 N rule).
    """
    if not isinstance(config, ModelConfig):
        raise TypeError(f"flops_per_token: config must be a ModelConfig, "
                        f"got {type(config).__name__}")
    _positive("flops_per_token", seq_len=seq_len)
    n, L, d = matmul_parameters(config), config.n_layers, config.d_model
    # BEGIN SOLUTION ch9.flops_per_token
    forward = 2 * n + (4 * L * seq_len * d if attention else 0)
    return 3 * forward if backward else forward
    # END SOLUTION


def count_forward_flops(model, input_shape) -> dict:
    """Forward FLOPs of ``model`` on one input, counted by ``minigrad.counting``:
    ``{"products", "attention", "other", "total"}``.

    products: every Linear (weights and biases); attention: Q K^T and A V of every
    ``MultiHeadAttention`` call, from the shapes it saw; other: norms and activations.
    The attention rule is :mod:`minigrad.counting`'s own (its projections are
    separate Linear rows).
    """
    from .. import counting

    rows = counting.count(model, input_shape)
    products = sum(r.flops for r in rows if r.kind == "linear")
    attention = sum(r.flops for r in rows if r.type == "MultiHeadAttention")
    total = sum(r.flops for r in rows)
    return {"products": products, "attention": attention,
            "other": total - products - attention, "total": total}
