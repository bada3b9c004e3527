"""The mixture-of-experts layer: a router and E expert MLPs, k of them per token.

    p = softmax(x W_r^T)                                   (T, E) router probabilities
    e_1..e_k = top-k of p                                  (k experts per token)
    g_j = p_{e_j}, renormalised over the k when k > 1       (Mixtral; Switch keeps p for k = 1)
    y = sum_j g_j * Expert_{e_j}(x)                        (dropped choices add 0)

Every expert is the dense block's MLP, Linear(C, H), GELU, Linear(H, C), so
a token costs k expert MLPs of compute while the layer holds E of them in
parameters: *active* parameters k * 2CH (+ the router's CE), *total* E * 2CH.
With E = 1, k = 1 the router's softmax is 1 and the layer is the dense MLP.

The forward is written as dispatch -> expert -> combine, the three steps that
expert parallelism (``expert_parallel.py``) spreads over GPUs: the kept
assignments are sorted by expert, each expert runs on its contiguous rows,
and each token sums its (weighted) rows back.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from .. import functional as F
from ..autograd import Function
from ..nn import GELU, Linear, Module, ModuleList, Sequential
from ..tensor import Tensor, cat
from .routing import check_k, expert_capacity, load_balancing_loss, router_z_loss, top_k_routing

__all__ = ["MoEConfig", "MoE", "moe_param_counts", "dispatch_order"]


@dataclass
class MoEConfig:
    """The MoE option of a transformer's MLPs (``GPTConfig(moe=MoEConfig(...))``).

    num_experts E, k experts per token, capacity_factor (None: no token is
    dropped), hidden width of each expert in units of the model width
    (``mlp_ratio``), and the weights of the two auxiliary losses in the total
    loss (Switch uses 0.01 for balancing, ST-MoE 0.001 for the z-loss).
    """

    num_experts: int = 4
    k: int = 2
    capacity_factor: float | None = None
    mlp_ratio: int = 4
    aux_loss_coef: float = 0.01
    z_loss_coef: float = 0.001
    renormalize: bool | None = None

    def __post_init__(self):
        if isinstance(self.num_experts, bool) or not isinstance(self.num_experts, numbers.Integral) \
                or self.num_experts < 1:
            raise ValueError(f"MoEConfig: num_experts must be an integer >= 1, got {self.num_experts!r}")
        check_k("MoEConfig", self.k, self.num_experts)
        expert_capacity(1, 1, 1, self.capacity_factor)          # raises on capacity_factor <= 0
        if not isinstance(self.mlp_ratio, numbers.Integral) or self.mlp_ratio < 1:
            raise ValueError(f"MoEConfig: mlp_ratio must be an integer >= 1, got {self.mlp_ratio!r}")


def moe_param_counts(embed_dim: int, hidden_dim: int, num_experts: int, k: int,
                     bias: bool = True) -> dict:
    """{"total": ..., "active": ...} parameters of one :class:`MoE` layer.

    An expert has 2 C H weights (+ H + C biases); the router C E (no bias).
    Total holds all E experts; active is what one token uses: k experts and the router.
    """
    expert = 2 * embed_dim * hidden_dim + ((hidden_dim + embed_dim) if bias else 0)
    router = embed_dim * num_experts
    return {"total": num_experts * expert + router, "active": k * expert + router,
            "expert": expert, "router": router}


def dispatch_order(expert_index: np.ndarray, kept: np.ndarray, num_experts: int):
    """The kept (token, choice) pairs sorted by expert: what each expert's buffer holds.

    Returns (token (n,), choice (n,), counts (E,)): rows [sum(counts[:e]),
    sum(counts[:e+1])) belong to expert e, in slot order (choice-major, then token).
    """
    T, k = expert_index.shape
    choice, token = np.nonzero(kept.T)                      # choice-major: the slot order
    experts = expert_index[token, choice]
    order = np.argsort(experts, kind="stable")
    counts = np.bincount(experts, minlength=num_experts)
    return token[order], choice[order], counts


class _GatherRows(Function):
    """x[index] for distinct row indices (one expert's tokens: a token picks an expert once).

    Backward writes each row's gradient back in place of ``np.add.at``, which
    a general gather with repeats needs and which is several times slower.
    """

    @staticmethod
    def forward(ctx, x, *, index):
        ctx.meta = (x.shape, x.dtype, index)
        return x[index]                                           # (n, C)

    @staticmethod
    def backward(ctx, grad):
        shape, dtype, index = ctx.meta
        gx = np.zeros(shape, dtype)
        gx[index] = grad
        return (gx,)


class _Combine(Function):
    """out[t] = sum of the rows y[i] with token[i] == t; (n, C) -> (T, C).

    Within one choice rank j a token appears at most once, so the scatter is k
    plain indexed adds; the backward is the gather g[token].
    """

    @staticmethod
    def forward(ctx, y, *, token, choice, num_tokens, k):
        ctx.meta = token
        out = np.zeros((num_tokens, y.shape[1]), y.dtype)
        for j in range(k):                                        # choice by choice: no repeats
            sel = choice == j
            out[token[sel]] += y[sel]
        return out

    @staticmethod
    def backward(ctx, grad):
        return (grad[ctx.meta],)


class MoE(Module):
    """A sparse MLP: ``moe(x)`` (..., C) -> (..., C), k of E experts per token.

    After each forward, ``last_routing`` holds the :class:`~minigrad.moe.routing.Routing`,
    ``aux_loss`` the load-balancing loss and ``z_loss`` the router z-loss
    (scalar Tensors in the graph: add ``coef * loss`` to the training loss).

    Args:
        embed_dim: C. hidden_dim: H, each expert's hidden width.
        num_experts: E >= 1. k: experts per token, 1 <= k <= E.
        capacity_factor: None (no drops) or > 0, see :func:`expert_capacity`.
        renormalize: divide the k gate weights by their sum; default k > 1.
        bias: biases in the experts' Linears (the router has none).
    """

    def __init__(self, embed_dim: int, hidden_dim: int, num_experts: int, k: int = 2,
                 capacity_factor=None, renormalize: bool | None = None, bias: bool = True,
                 dtype=np.float32):
        super().__init__()
        if isinstance(num_experts, bool) or not isinstance(num_experts, numbers.Integral) \
                or num_experts < 1:
            raise ValueError(f"MoE: num_experts must be an integer >= 1, got {num_experts!r}")
        check_k("MoE", k, num_experts)
        expert_capacity(1, 1, 1, capacity_factor)
        self.embed_dim, self.hidden_dim, self.num_experts, self.k = embed_dim, hidden_dim, num_experts, k
        self.capacity_factor = capacity_factor
        self.renormalize = k > 1 if renormalize is None else bool(renormalize)
        self.router = Linear(embed_dim, num_experts, bias=False, dtype=dtype)
        self.experts = ModuleList(
            Sequential(Linear(embed_dim, hidden_dim, bias=bias, dtype=dtype), GELU(),
                       Linear(hidden_dim, embed_dim, bias=bias, dtype=dtype))
            for _ in range(num_experts))
        self.last_routing = None
        self.aux_loss = self.z_loss = None

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, hidden_dim={self.hidden_dim}, "
                f"num_experts={self.num_experts}, k={self.k}, "
                f"capacity_factor={self.capacity_factor}, renormalize={self.renormalize}")

    def route(self, x: Tensor):
        """(logits (T, E), probs (T, E), Routing, gate weights (T, k)) for tokens x (T, C)."""
        logits = self.router(x)                                   # (T, C) -> (T, E)
        probs = F.softmax(logits, dim=-1)
        cap = expert_capacity(x.shape[0], self.num_experts, self.k, self.capacity_factor)
        routing = top_k_routing(probs.data, self.k, cap)
        gate = probs[np.arange(x.shape[0])[:, None], routing.expert_index]   # (T, k)
        if self.renormalize:
            gate = gate / gate.sum(dim=-1, keepdim=True)
        return logits, probs, routing, gate

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.embed_dim:
            raise ValueError(f"MoE: x must be (..., {self.embed_dim}), got shape {x.shape}")
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.embed_dim)                      # (..., C) -> (T, C)
        T = flat.shape[0]
        logits, probs, routing, gate = self.route(flat)
        self.last_routing = routing
        self.aux_loss = load_balancing_loss(probs, routing.expert_index, self.num_experts)
        self.z_loss = router_z_loss(logits)

        token, choice, counts = dispatch_order(routing.expert_index, routing.kept, self.num_experts)
        outs, lo = [], 0
        for e, n in enumerate(counts):                            # dispatch -> expert
            if n:
                rows = _GatherRows.apply(flat, index=token[lo:lo + n])     # (n_e, C)
                outs.append(self.experts[e](rows))                          # (n_e, C) -> (n_e, C)
            lo += n
        if not outs:                                              # every choice dropped: nothing added
            return Tensor(np.zeros(lead + (self.embed_dim,), x.dtype))
        y = cat(outs, dim=0) * gate[token, choice].reshape(-1, 1)  # (n, C) weighted rows
        out = _Combine.apply(y, token=token, choice=choice, num_tokens=T, k=self.k)   # -> (T, C)
        return out.reshape(*lead, self.embed_dim)
