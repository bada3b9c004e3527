"""Mixed-precision training of a small MLP, and where its gradients fall.

:func:`underflow_stats` counts how a set of gradients fares when stored in a
format (flushed to zero, subnormal, overflowed), with and without a loss
scale. :func:`train_toy` trains ``nn.MLP`` on the spirals of
:mod:`minigrad.data` with the same seed, data and Adam settings in each
precision:

    "fp32"          everything in fp32
    "fp16"          autocast fp16, fp32 master weights, no loss scaling
    "fp16+scaling"  the same with a dynamic GradScaler
    "bf16"          autocast bf16, fp32 master weights, no loss scaling
    "bf16-pure"     autocast bf16 and the weights themselves stored in bf16 (no master;
                    Adam's moments stay fp32, so only the weights' rounding differs)
    "fp16+static"   (not in PRECISIONS) fp16 with a StaticGradScaler fixed at init_scale

``loss_weight`` multiplies the loss (and Adam's eps, so fp32 training is the
same problem at any weight: Adam's update is invariant to the gradient's
scale). At 2^-24 the gradients of this toy sit where those of a large model's
activations do (Micikevicius et al. 2018, Fig. 3: mostly below 2^-24).
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .. import nn, optim
from ..data import make_spirals
from ..tensor import Tensor, manual_seed
from .autocast import autocast
from .format import get_format
from .master import round_parameters_
from .rounding import as_float_array, round_to
from .scaler import GradScaler, StaticGradScaler

__all__ = ["PRECISIONS", "underflow_stats", "model_gradients", "train_toy"]

PRECISIONS = ("fp32", "fp16", "fp16+scaling", "bf16", "bf16-pure")


def underflow_stats(grads, fmt="float16", scale: float = 1.0) -> dict:
    """What happens to ``scale * grads`` stored in ``fmt``, as fractions of the nonzero values.

    Returns:
        dict: "zero" (became 0: below half the smallest subnormal), "subnormal"
        (kept with fewer significant bits), "overflow" (became inf), "normal".
    """
    f = get_format(fmt, "underflow_stats")
    g = np.concatenate([as_float_array(a, "underflow_stats", "grads").ravel().astype(np.float64)
                        for a in grads])
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"underflow_stats: scale must be a finite number > 0, got {scale!r}")
    g = g[g != 0] * scale
    if g.size == 0:
        raise ValueError("underflow_stats: grads hold no nonzero value")
    with np.errstate(over="ignore"):
        r = np.abs(round_to(g, f).astype(np.float64))
    zero = float(np.mean(r == 0))
    overflow = float(np.mean(~np.isfinite(r)))
    sub = float(np.mean((r > 0) & (r < f.smallest_normal)))
    return {"zero": zero, "subnormal": sub, "overflow": overflow,
            "normal": 1.0 - zero - sub - overflow}


def _toy(sizes, n_samples, seed):
    manual_seed(seed)
    X, y = make_spirals(n_samples, noise=0.1, n_classes=sizes[-1])
    return Tensor(X), y, nn.MLP(sizes)


def model_gradients(loss_weight: float = 2.0 ** -16, sizes=(2, 64, 64, 3), n_samples: int = 256,
                    seed: int = 0) -> list:
    """fp32 gradients of ``loss_weight * cross_entropy`` of a freshly initialized toy MLP
    (one array per parameter): the values :func:`underflow_stats` is asked about."""
    X, y, model = _toy(sizes, n_samples, seed)
    (F.cross_entropy(model(X), y) * loss_weight).backward()
    return [p.grad.copy() for p in model.parameters()]


def train_toy(precision: str = "fp32", steps: int = 300, lr: float = 1e-3,
              loss_weight: float = 2.0 ** -16, sizes=(2, 64, 64, 3), n_samples: int = 256,
              init_scale: float = 2.0 ** 16, growth_interval: int = 50, seed: int = 0) -> dict:
    """Train the toy MLP (full batch, Adam) in one of :data:`PRECISIONS`.

    Returns:
        dict of (steps,) arrays: "loss" (the unweighted cross-entropy, fp32),
        "scale" (the loss scale used at each step; 1 without a scaler),
        "skipped" (bool: the scaler skipped the step for inf/NaN gradients),
        "zero_grads" (fraction of gradient entries exactly 0); and "accuracy"
        (float, on the training set at the end).
    """
    if precision not in PRECISIONS + ("fp16+static",):
        raise ValueError(f"train_toy: precision must be one of {PRECISIONS + ('fp16+static',)}, "
                         f"got {precision!r}")
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"train_toy: steps must be an integer >= 1, got {steps!r}")
    fmt = {"fp32": None, "bf16": "bfloat16", "bf16-pure": "bfloat16"}.get(precision, "float16")
    X, y, model = _toy(sizes, n_samples, seed)
    if precision == "bf16-pure":
        round_parameters_(model.parameters(), fmt)
    opt = optim.Adam(model.parameters(), lr=lr, eps=1e-8 * loss_weight)
    if precision == "fp16+static":
        scaler = StaticGradScaler(init_scale)
    else:
        scaler = GradScaler(init_scale=init_scale, growth_interval=growth_interval,
                            enabled=precision == "fp16+scaling")
    out = {k: np.zeros(steps) for k in ("loss", "scale", "zero_grads")}
    out["skipped"] = np.zeros(steps, bool)
    for t in range(steps):
        opt.zero_grad()
        out["scale"][t] = scaler.get_scale()
        with np.errstate(over="ignore", invalid="ignore"), \
                autocast("cpu", dtype=fmt or "bfloat16", enabled=fmt is not None):
            loss = F.cross_entropy(model(X), y)
            scaler.scale(loss * loss_weight).backward()
        grads = np.concatenate([p.grad.ravel() for p in model.parameters()])
        out["loss"][t] = float(loss.data)
        out["zero_grads"][t] = float(np.mean(grads == 0))
        out["skipped"][t] = scaler.is_enabled() and not np.isfinite(grads).all()
        scaler.step(opt)
        scaler.update()
        if precision == "bf16-pure":
            round_parameters_(model.parameters(), fmt)
    with autocast("cpu", dtype=fmt or "bfloat16", enabled=fmt is not None):
        pred = model(X).data.argmax(axis=1)
    out["accuracy"] = float(np.mean(pred == y))
    return out
