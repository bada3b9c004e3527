"""How long, and how much: training time from FLOPs, and model FLOPs utilization.

A run of C = 6 N D FLOPs on n GPUs of peak P FLOP/s, reaching a fraction
MFU of that peak (model FLOPs utilization, Chowdhery et al. 2022: the FLOPs
the model needs, not counting recomputation, over peak x time), takes

    seconds = 6 N D / (n P MFU)

Large runs report MFU of roughly 0.3-0.6 (PaLM 46%, Llama 3 38-43%). GPU-hours,
and so dollars, do not depend on n: more GPUs finish sooner at the same cost.
MFU here is also measured: one minigrad training step of a TinyGPT, its model
FLOPs from :func:`minigrad.scale.flops_per_token`, over this machine's peak.
"""

from __future__ import annotations

import time

from .flops import _positive, training_flops

__all__ = ["SECONDS_PER_DAY", "training_seconds", "training_days", "gpu_hours",
           "training_cost", "model_flops_utilization", "measure_mfu"]

SECONDS_PER_DAY = 86400.0


def training_seconds(n_params: float, n_tokens: float, n_gpus: int, peak_flops: float,
                     mfu: float = 0.4) -> float:
    """6 N D / (n_gpus peak_flops mfu)."""
    _positive("training_seconds", n_gpus=n_gpus, peak_flops=peak_flops, mfu=mfu)
    if mfu > 1:
        raise ValueError(f"training_seconds: mfu must be in (0, 1], got {mfu}")
    return training_flops(n_params, n_tokens) / (n_gpus * peak_flops * mfu)


def training_days(n_params: float, n_tokens: float, n_gpus: int, peak_flops: float,
                  mfu: float = 0.4) -> float:
    """Wall-clock days: 6 N D / (n_gpus peak_flops mfu) / 86400."""
    return training_seconds(n_params, n_tokens, n_gpus, peak_flops, mfu) / SECONDS_PER_DAY


def gpu_hours(n_params: float, n_tokens: float, peak_flops: float, mfu: float = 0.4) -> float:
    """GPU-hours: 6 N D / (peak_flops mfu) / 3600, the same for any number of GPUs."""
    return training_seconds(n_params, n_tokens, 1, peak_flops, mfu) / 3600.0


def training_cost(n_params: float, n_tokens: float, peak_flops: float, mfu: float = 0.4,
                  dollars_per_gpu_hour: float = 2.0) -> float:
    """Dollars: GPU-hours times the price of one GPU-hour."""
    _positive("training_cost", dollars_per_gpu_hour=dollars_per_gpu_hour)
    return gpu_hours(n_params, n_tokens, peak_flops, mfu) * dollars_per_gpu_hour


def model_flops_utilization(model_flops: float, seconds: float, peak_flops: float) -> float:
    """MFU = (model FLOPs / seconds) / peak FLOP/s."""
    _positive("model_flops_utilization", model_flops=model_flops, seconds=seconds,
              peak_flops=peak_flops)
    return model_flops / seconds / peak_flops


def measure_mfu(gpt_config, batch_size: int, peak_flops: float, steps: int = 3,
                rng=None) -> dict:
    """Train a fresh TinyGPT of ``gpt_config`` for ``steps`` AdamW steps on random tokens
    (B = ``batch_size``, T = block_size) and report the fastest step:
    ``{"step_seconds", "model_flops", "achieved_flops", "mfu"}``, model FLOPs being
    ``flops_per_token(config, T) * B * T`` (6 N + 12 L T d per token)."""
    from .. import functional as F
    from ..models import TinyGPT
    from ..optim import AdamW
    from ..tensor import get_rng
    from .configs import config_of_tinygpt
    from .flops import flops_per_token

    _positive("measure_mfu", batch_size=batch_size, steps=steps, peak_flops=peak_flops)
    rng = rng or get_rng()
    c = gpt_config
    model = TinyGPT(c)
    opt = AdamW(model.parameters(), lr=1e-3)
    T = c.block_size
    idx = rng.integers(0, c.vocab_size, (batch_size, T + 1))
    x, y = idx[:, :-1], idx[:, 1:]                               # next-token targets

    def step():
        logits = model(x)                                        # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, c.vocab_size), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    step()                                                       # warm-up
    best = float("inf")
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
    flops = float(flops_per_token(config_of_tinygpt(c), T) * batch_size * T)
    return {"step_seconds": best, "model_flops": flops, "achieved_flops": flops / best,
            "mfu": model_flops_utilization(flops, best, peak_flops)}
