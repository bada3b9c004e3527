"""TinyGPT with MoE MLPs on chapter 3's addition task; active vs total size.

The loop is chapter 3's (``minigrad.models.addition``) with one change: the
MoE layers' auxiliary losses join the next-token loss,

    loss = cross_entropy + sum over layers (aux_coef * L_balance + z_coef * L_z),

and every step records how many token choices each expert kept, which is
what each GPU would process under expert parallelism.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from .. import functional as F
from ..data.addition import AdditionTask
from ..models.addition import addition_accuracy
from ..models.tinygpt import GPTConfig, TinyGPT
from ..optim import AdamW, WarmupCosineLR, clip_grad_norm_
from ..tensor import get_rng
from .layer import MoEConfig, moe_param_counts

__all__ = ["MoERun", "train_moe_addition", "model_sizes", "mlp_flops_per_token"]


@dataclass
class MoERun:
    """What :func:`train_moe_addition` returns."""

    model: TinyGPT
    task: AdditionTask
    losses: list = field(default_factory=list)          # next-token loss per step
    balance_losses: list = field(default_factory=list)  # load-balancing loss (mean over layers)
    tokens_per_expert: np.ndarray | None = None         # (steps, layers, E) kept choices per expert
    dropped: list = field(default_factory=list)         # dropped choices per step (all layers)
    accuracy: float = 0.0                               # held-out exact match at the end
    seconds: float = 0.0


def mlp_flops_per_token(embed_dim: int, hidden_dim: int, num_experts: int = 1, k: int = 1) -> int:
    """Forward FLOPs of one token through one MLP layer: k experts of 2 matmuls, plus the router.

    2 * 2 * C * H per expert (Linear(C, H) and Linear(H, C), a multiply-add is 2
    FLOPs) times k, plus 2 * C * E for the router when E > 1; activations and
    biases are not counted.
    """
    router = 2 * embed_dim * num_experts if num_experts > 1 else 0
    return k * 4 * embed_dim * hidden_dim + router


def model_sizes(model: TinyGPT) -> dict:
    """{"total": parameters held, "active": parameters one token uses} of a TinyGPT."""
    total = sum(p.numel() for p in model.parameters())
    m = model.config.moe
    if m is None:
        return {"total": total, "active": total}
    c = model.config
    per = moe_param_counts(c.n_embd, m.mlp_ratio * c.n_embd, m.num_experts, m.k, c.bias)
    return {"total": total, "active": total - c.n_layer * (m.num_experts - m.k) * per["expert"]}


def train_moe_addition(n_digits: int = 2, steps: int = 300, batch_size: int = 64,
                       lr: float = 3e-3, moe: MoEConfig | None = None,
                       config: GPTConfig | None = None, n_test: int = 500, warmup: int = 50,
                       progress: bool = True, rng=None) -> MoERun:
    """Train a TinyGPT whose MLPs are ``moe`` (default 4 experts, k = 2) on n-digit addition.

    ``moe.aux_loss_coef = 0`` trains without the balancing loss (to watch the
    router collapse onto a few experts). ``config`` without ``moe`` set gets it.
    """
    rng = get_rng() if rng is None else rng
    task = AdditionTask(n_digits, n_test=n_test, rng=rng)
    moe = MoEConfig() if moe is None else moe
    config = config or GPTConfig(vocab_size=task.tokenizer.vocab_size, block_size=task.seq_len,
                                 n_layer=1, n_head=4, n_embd=48)
    config = replace(config, moe=moe) if config.moe is None else config
    model = TinyGPT(config)
    opt = AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    sched = WarmupCosineLR(opt, warmup_steps=min(warmup, steps), total_steps=steps, min_lr=lr / 10)
    run = MoERun(model, task)
    counts = np.zeros((steps, config.n_layer, moe.num_experts), np.int64)

    from tqdm import tqdm
    t0 = time.perf_counter()
    for step in tqdm(range(steps), desc="MoE addition", disable=not progress, leave=False):
        x, y = task.train_batch(batch_size, rng)                  # (B, T), (B, T)
        logits = model(x)                                         # (B, T, V)
        lm = F.cross_entropy(logits.reshape(-1, config.vocab_size), y.reshape(-1))
        loss = lm + model.moe_loss()
        model.zero_grad()
        loss.backward()
        clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        run.losses.append(float(lm.item()))
        run.balance_losses.append(float(np.mean([b.mlp.aux_loss.item() for b in model.h])))
        counts[step] = [b.mlp.last_routing.tokens_per_expert for b in model.h]
        run.dropped.append(sum(b.mlp.last_routing.dropped for b in model.h))
    run.seconds = time.perf_counter() - t0
    run.tokens_per_expert = counts
    run.accuracy = addition_accuracy(model, task)
    return run
