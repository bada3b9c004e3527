"""Optimizers with PyTorch's update rules and defaults, a warmup-cosine schedule,
and gradient-norm clipping.

Memory per parameter is part of the lesson: SGD keeps no state, momentum one
buffer (the velocity), Adam and AdamW two (first and second moments). In fp32
that is 0, 4 and 8 bytes per parameter; :meth:`Optimizer.state_bytes`
measures it from the arrays actually held.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from . import kernels
from .tensor import Tensor

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "WarmupCosineLR", "clip_grad_norm_"]


class Optimizer:
    """Holds ``param_groups`` (dicts with ``params`` and hyper-parameters) and
    per-parameter ``state``; subclasses implement ``step``."""

    def __init__(self, params, defaults: dict):
        if isinstance(params, Tensor):  # list(t) would iterate over its rows: torch refuses too
            raise TypeError(f"{type(self).__name__}: params must be an iterable of Tensors or "
                            f"dicts, got a single Tensor (pass [tensor])")
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = defaults
        self.param_groups = []
        seen = set()  # ids of the parameters of earlier groups
        for g in groups:
            g = {**defaults, **g, "params": list(g["params"])}
            for i, p in enumerate(g["params"]):
                if not isinstance(p, Tensor):
                    raise TypeError(f"{type(self).__name__}: params[{i}] is a {type(p).__name__}, "
                                    f"expected a Tensor/Parameter")
                if not p.is_leaf:  # its .grad is never filled, so the step would do nothing
                    raise ValueError(f"{type(self).__name__}: params[{i}] is not a leaf tensor "
                                     f"(can't optimize a non-leaf Tensor, as in torch)")
            ids = [id(p) for p in g["params"]]
            if len(set(ids)) != len(ids):
                # torch's words; a parameter listed twice is stepped twice per step()
                warnings.warn("optimizer contains a parameter group with duplicate parameters; "
                              "in future, this will cause an error; see "
                              "github.com/pytorch/pytorch/issues/40967 for more information",
                              UserWarning, stacklevel=3)
            if seen & set(ids):
                raise ValueError("some parameters appear in more than one parameter group")
            seen |= set(ids)
            self.param_groups.append(g)
        self.state: dict[int, dict] = {}

    def zero_grad(self, set_to_none: bool = True):
        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad[...] = 0

    def _params_with_grad(self, group):
        for p in group["params"]:
            if p.grad is not None:
                yield p, self.state.setdefault(id(p), {})

    def state_bytes(self) -> int:
        """Bytes of optimizer state held right now (all arrays in ``state``)."""
        return sum(v.nbytes for s in self.state.values() for v in s.values()
                   if isinstance(v, np.ndarray))

    def step(self):
        raise NotImplementedError


def _check(name, value, low=0.0):
    if not value >= low:
        raise ValueError(f"invalid {name}: {value} (must be >= {low})")


class SGD(Optimizer):
    """SGD with optional momentum, as PyTorch:

    g = grad + weight_decay * p
    v = momentum * v + (1 - dampening) * g     (v = g on the first step)
    p = p - lr * (g + momentum * v if nesterov else v)
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        _check("lr", lr)
        _check("momentum", momentum)
        _check("weight_decay", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def step(self):
        for group in self.param_groups:
            lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p, state in self._params_with_grad(group):
                g = p.grad
                if wd:
                    g = g + wd * p.data
                if mu:
                    # BEGIN SOLUTION ch2.sgd_momentum
                    v = state.get("momentum_buffer")
                    if v is None:
                        v = state["momentum_buffer"] = np.array(g, copy=True)
                    else:
                        v *= mu
                        v += (1 - group["dampening"]) * g
                    g = g + mu * v if group["nesterov"] else v
                    # END SOLUTION
                p.data -= lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), as PyTorch computes it:

    g = grad + weight_decay * p                 (L2 penalty folded into the gradient)
    m = b1 m + (1 - b1) g ;  v = b2 v + (1 - b2) g^2
    p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    """

    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        _check("lr", lr)
        _check("eps", eps)
        _check("weight_decay", weight_decay)
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid betas: {betas} (each must be in [0, 1))")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def step(self):
        for group in self.param_groups:
            hyper = (group["lr"], *group["betas"], group["eps"], group["weight_decay"], self.decoupled)
            for p, state in self._params_with_grad(group):
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = np.zeros_like(p.data)
                    state["exp_avg_sq"] = np.zeros_like(p.data)
                state["step"] += 1
                adam_step(p.data, p.grad, state["exp_avg"], state["exp_avg_sq"], state["step"], *hyper)


def adam_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay,
              decoupled):
    """Adam's step on one parameter, in place: the weight decay, decoupled (AdamW,
    ``param *= 1 - lr * weight_decay``) or folded into the gradient (Adam,
    ``grad + weight_decay * param``), then :func:`adam_update`.

    Under the fast kernels (:func:`minigrad.kernels.fast`) one numba pass does
    it all, :func:`minigrad.kernels.optim.adam_step_numba`, to the same bits.
    """
    # BEGIN KERNEL ch2.adam_update
    if kernels.fast():
        from .kernels import optim as fused

        if fused.fusable(param, grad, exp_avg, exp_avg_sq):
            return fused.adam_step_numba(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2,
                                         eps, weight_decay, decoupled)
    # END KERNEL
    if weight_decay and decoupled:
        param *= 1 - lr * weight_decay
    elif weight_decay:
        grad = grad + weight_decay * param
    adam_update(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps)


def adam_update(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps):
    """One Adam update, in place on ``param``, ``exp_avg`` and ``exp_avg_sq``."""
    # BEGIN SOLUTION ch2.adam_update
    exp_avg *= beta1
    exp_avg += (1 - beta1) * grad
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * grad * grad
    bias_correction1 = 1 - beta1 ** step
    bias_correction2 = 1 - beta2 ** step
    denom = np.sqrt(exp_avg_sq) / math.sqrt(bias_correction2) + eps
    param -= (lr / bias_correction1) * exp_avg / denom
    # END SOLUTION


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter 2019): Adam with *decoupled* weight decay,
    p = p * (1 - lr * weight_decay) before the Adam step, so the decay is not
    rescaled by the adaptive denominator. PyTorch's default weight_decay=0.01.
    """

    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)


class WarmupCosineLR:
    """Linear warmup from 0 to the base lr over ``warmup_steps``, then cosine decay
    to ``min_lr`` at ``total_steps``:

    lr(t) = base * (t + 1) / w                                    t < w
    lr(t) = min + (base - min) * (1 + cos(pi * (t - w) / (T - w))) / 2   w <= t <= T
    lr(t) = min                                                   t > T

    with t the number of ``step()`` calls so far, w = ``warmup_steps`` and
    T = ``total_steps``. Warmup starts at base / w rather than 0, so the first
    update is not wasted, and reaches base at t = w - 1.
    """

    def __init__(self, optimizer: Optimizer, warmup_steps: int, total_steps: int, min_lr: float = 0.0):
        if not 0 <= warmup_steps <= total_steps or total_steps < 1:
            raise ValueError(f"WarmupCosineLR: need 0 <= warmup_steps <= total_steps and total_steps >= 1, "
                             f"got warmup_steps={warmup_steps}, total_steps={total_steps}")
        self.optimizer = optimizer
        self.warmup_steps, self.total_steps, self.min_lr = warmup_steps, total_steps, min_lr
        # PyTorch's convention: the group's initial lr is kept as "initial_lr", so a
        # second scheduler on the same optimizer does not take a scheduled lr as its base
        self.base_lrs = [g.setdefault("initial_lr", g["lr"]) for g in optimizer.param_groups]

        self.last_step = 0
        self._apply()

    def lr_at(self, step: int, base_lr: float) -> float:
        if step < self.warmup_steps:
            return base_lr * (step + 1) / self.warmup_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        frac = min((step - self.warmup_steps) / span, 1.0)
        return self.min_lr + (base_lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * frac))

    def _apply(self):
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = self.lr_at(self.last_step, base)

    def step(self):
        self.last_step += 1
        self._apply()

    def get_last_lr(self):
        return [g["lr"] for g in self.optimizer.param_groups]


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0) -> float:
    """Scale all gradients together so their joint norm is at most ``max_norm``.

    Returns the total norm before clipping (as ``torch.nn.utils.clip_grad_norm_``).
    """
    # a list, not the caller's iterator: model.parameters() is a generator, and
    # it is walked twice (norm, then scaling)
    parameters = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    if norm_type == math.inf:
        total = max(float(np.max(np.abs(g))) for g in grads)
    else:
        total = float(sum(np.sum(np.abs(g.astype(np.float64)) ** norm_type) for g in grads)) ** (1 / norm_type)
    if not math.isfinite(total):
        raise FloatingPointError(f"clip_grad_norm_: the total gradient norm is {total}")
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        for p in parameters:
            if p.grad is not None:
                p.grad = p.grad * np.asarray(coef, dtype=p.grad.dtype)
    return total
