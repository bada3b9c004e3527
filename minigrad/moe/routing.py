"""The router of a mixture of experts: top-k choice, capacity, and its two losses.

A linear router scores every token against E experts; a softmax turns the
scores into probabilities p (T, E). Each token goes to its k most probable
experts: k = 1 is the Switch Transformer (Fedus et al. 2021), k = 2 Mixtral
(Jiang et al. 2024) and GShard (Lepikhin et al. 2020).

Capacity (GShard, Switch): an expert processes at most

    C = ceil(capacity_factor * T * k / E)

token slots per batch, so its buffer has a fixed size however the router
chooses. Slots are handed out first to every token's first choice, then to
the second choices (so a token loses its second expert before anyone loses a
first), each in token order; assignments past C are *dropped*: that expert
adds nothing for that token (the residual connection carries it on).

Two auxiliary losses keep the router healthy:

    load balancing (Switch, eq. 4):  L_aux = E * sum_i f_i * P_i
        f_i = fraction of the T * k assignments that chose expert i (counted, no gradient)
        P_i = mean over tokens of p_i (differentiable)
    minimised (= 1) by a uniform router; a collapsed router (every token to
    one expert) scores E.

    router z-loss (ST-MoE, Zoph et al. 2022, eq. 5):
        L_z = mean_t (log sum_i exp(x_ti))^2
    keeps the router's logits small, so its softmax stays well conditioned.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from ..tensor import Tensor

__all__ = ["Routing", "expert_capacity", "top_k_routing", "load_balancing_loss",
           "router_z_loss", "check_k"]


class Routing(NamedTuple):
    """Where each of T tokens' k choices goes (what :func:`top_k_routing` returns)."""

    expert_index: np.ndarray      # (T, k) int64: chosen experts, most probable first
    position: np.ndarray          # (T, k) int64: slot in that expert's buffer (counted even if dropped)
    kept: np.ndarray              # (T, k) bool: position < capacity
    capacity: int | None          # slots per expert; None: no limit
    tokens_per_expert: np.ndarray  # (E,) int64: assignments kept by each expert
    dropped: int                  # assignments over capacity


def check_k(fn: str, k, num_experts) -> None:
    """``k`` must be an integer in [1, num_experts]."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= num_experts:
        raise ValueError(f"{fn}: k must be an integer in [1, num_experts={num_experts}], got {k!r}")


def expert_capacity(num_tokens: int, num_experts: int, k: int, capacity_factor) -> int | None:
    """C = ceil(capacity_factor * num_tokens * k / num_experts); None for no limit.

    capacity_factor 1.0 gives each expert exactly its fair share; Switch
    trains with 1.25 and evaluates with 2.0.
    """
    if capacity_factor is None:
        return None
    if isinstance(capacity_factor, bool) or not isinstance(capacity_factor, numbers.Real) \
            or not math.isfinite(capacity_factor) or capacity_factor <= 0:
        raise ValueError(f"expert_capacity: capacity_factor must be a finite number > 0 or None, "
                         f"got {capacity_factor!r}")
    return math.ceil(capacity_factor * num_tokens * k / num_experts)


def top_k_routing(probs, k: int, capacity: int | None = None) -> Routing:
    """Each token's k most probable experts, and which of them fit within ``capacity``.

    Ties go to the lower expert index (a stable sort of -p). Slot order: all
    first choices (token 0, 1, ...), then all second choices, and so on.

    Args:
        probs: (T, E) router probabilities (or logits: only the order matters).
        k: experts per token, 1 <= k <= E.
        capacity: slots per expert (>= 0), or None for no limit.
    Returns:
        a :class:`Routing`.
    """
    p = np.asarray(probs.data if isinstance(probs, Tensor) else probs)
    if p.ndim != 2 or p.shape[1] < 1:
        raise ValueError(f"top_k_routing: probs must be (tokens, num_experts), got shape {p.shape}")
    T, E = p.shape
    check_k("top_k_routing", k, E)
    if capacity is not None and (not isinstance(capacity, numbers.Integral) or capacity < 0):
        raise ValueError(f"top_k_routing: capacity must be an integer >= 0 or None, got {capacity!r}")
    # BEGIN SOLUTION ch11.top_k_routing
    expert_index = np.argsort(-p, axis=1, kind="stable")[:, :k]          # (T, k), best first
    order = expert_index.T.reshape(-1)                                   # (k*T,): choice-major
    onehot = np.zeros((k * T, E), dtype=np.int64)
    onehot[np.arange(k * T), order] = 1
    slot = np.cumsum(onehot, axis=0)[np.arange(k * T), order] - 1        # earlier claims on that expert
    position = slot.reshape(k, T).T                                      # (T, k)
    kept = np.ones((T, k), bool) if capacity is None else position < capacity
    # END SOLUTION
    tokens_per_expert = np.bincount(expert_index[kept], minlength=E).astype(np.int64)
    return Routing(expert_index.astype(np.int64), position.astype(np.int64), kept, capacity,
                   tokens_per_expert, int((~kept).sum()))


def load_balancing_loss(probs: Tensor, expert_index, num_experts: int | None = None) -> Tensor:
    """Switch's auxiliary loss E * sum_i f_i * P_i (a scalar Tensor, differentiable in probs).

    f_i counts the T * k choices in ``expert_index`` before any capacity drop
    (Switch counts top-1; for top-k every choice counts once), so a balanced
    router gives 1 for any k. (Hugging Face's Mixtral loss sums f over the k
    choice ranks separately, which is k times this.)

    Args:
        probs: (T, E) router probabilities, a Tensor (or array).
        expert_index: (T, k) chosen experts.
    """
    probs = probs if isinstance(probs, Tensor) else Tensor(np.asarray(probs))
    E = probs.shape[-1] if num_experts is None else num_experts
    idx = np.asarray(expert_index)
    if probs.ndim != 2 or idx.ndim != 2 or idx.shape[0] != probs.shape[0]:
        raise ValueError(f"load_balancing_loss: probs must be (T, E) and expert_index (T, k), "
                         f"got {probs.shape} and {idx.shape}")
    # BEGIN SOLUTION ch11.load_balancing_loss
    f = np.bincount(idx.reshape(-1), minlength=E) / idx.size            # (E,), sums to 1
    P = probs.mean(dim=0)                                                # (E,)
    return (P * f.astype(probs.dtype)).sum() * E
    # END SOLUTION


def router_z_loss(logits: Tensor) -> Tensor:
    """ST-MoE's z-loss, mean over tokens of logsumexp(router logits)^2 (scalar Tensor)."""
    logits = logits if isinstance(logits, Tensor) else Tensor(np.asarray(logits))
    m = logits.data.max(axis=-1, keepdims=True)                # a constant shift: exp never overflows
    lse = (logits - m).exp().sum(dim=-1).log() + m[..., 0]     # (T,)
    return (lse * lse).mean()

