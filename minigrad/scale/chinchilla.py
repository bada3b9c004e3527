"""Compute-optimal training: how to split a FLOP budget between parameters and tokens.

Hoffmann et al. 2022 ("Chinchilla") trained over 400 models and found that,
for a budget C = 6 N D, parameters N and tokens D should grow together,
about 20 tokens per parameter:

    D = 20 N,  C = 6 N D = 120 N^2   =>   N = sqrt(C / 120),  D = 20 N.

Chinchilla itself: 70B parameters on 1.4T tokens. GPT-3 (175B on 300B tokens,
1.7 tokens per parameter) was, by this rule, far too large for its data.

Their fitted loss (approach 3, Section 3.3) L(N, D) = E + A / N^alpha + B / D^beta
draws the IsoFLOP curves: for a fixed C, the loss against N (with D = C / 6N)
is a valley whose bottom is the compute-optimal size. That fit puts the
optimum at N ~ C^(beta / (alpha + beta)); its constants are the paper's.
"""

from __future__ import annotations

import numpy as np

from .flops import _positive

__all__ = ["TOKENS_PER_PARAM", "compute_optimal", "tokens_per_param", "CHINCHILLA_FIT",
           "chinchilla_loss", "isoflop_curve", "loss_optimal_params", "TRAINED_MODELS"]

# (parameters, training tokens) as published: GPT-3 (Brown et al. 2020), Chinchilla
# (Hoffmann et al. 2022), Llama 2 (Touvron et al. 2023), Llama 3 (Meta 2024)
TRAINED_MODELS = {"GPT-3": (175e9, 300e9), "Chinchilla": (70e9, 1.4e12),
                  "Llama-2 7B": (6.74e9, 2e12), "Llama-3 8B": (8.03e9, 15e12)}

TOKENS_PER_PARAM = 20

# Hoffmann et al. 2022, eq. (10): E, A, B, alpha, beta
CHINCHILLA_FIT = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def compute_optimal(flops: float, tokens_per_param: float = TOKENS_PER_PARAM) -> tuple:
    """(N, D) that spend ``flops`` = 6 N D with D = ``tokens_per_param`` * N.

    N = sqrt(C / (6 r)), D = r N.
    """
    _positive("compute_optimal", flops=flops, tokens_per_param=tokens_per_param)
    # BEGIN SOLUTION ch9.compute_optimal
    n = np.sqrt(flops / (6.0 * tokens_per_param))
    return float(n), float(tokens_per_param * n)
    # END SOLUTION


def tokens_per_param(n_params: float, n_tokens: float) -> float:
    """D / N: 20 is Chinchilla-optimal, GPT-3 trained at 300e9 / 175e9 = 1.7."""
    _positive("tokens_per_param", n_params=n_params, n_tokens=n_tokens)
    return n_tokens / n_params


def chinchilla_loss(n_params, n_tokens, fit: dict = CHINCHILLA_FIT):
    """The fitted loss E + A / N^alpha + B / D^beta (nats per token); arrays broadcast."""
    n, d = np.asarray(n_params, float), np.asarray(n_tokens, float)
    if np.any(n <= 0) or np.any(d <= 0):
        raise ValueError("chinchilla_loss: n_params and n_tokens must be > 0")
    return fit["E"] + fit["A"] / n ** fit["alpha"] + fit["B"] / d ** fit["beta"]


def isoflop_curve(flops: float, n_params, fit: dict = CHINCHILLA_FIT):
    """Loss of each model size in ``n_params`` trained on D = C / (6 N) tokens."""
    _positive("isoflop_curve", flops=flops)
    n = np.asarray(n_params, float)
    return chinchilla_loss(n, flops / (6.0 * n), fit)


def loss_optimal_params(flops: float, fit: dict = CHINCHILLA_FIT) -> float:
    """The N at the bottom of the IsoFLOP curve, in closed form (Hoffmann et al. eq. 4):
    N_opt = G (C / 6)^(beta / (alpha + beta)), G = (alpha A / (beta B))^(1 / (alpha + beta))."""
    _positive("loss_optimal_params", flops=flops)
    a, b = fit["alpha"], fit["beta"]
    g = (a * fit["A"] / (b * fit["B"])) ** (1.0 / (a + b))
    return float(g * (flops / 6.0) ** (b / (a + b)))
