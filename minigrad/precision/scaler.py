"""Loss scaling: multiply the loss by S so small gradients survive fp16, divide them back.

fp16's smallest subnormal is 2^-24 ~ 6e-8; a gradient below half of it is
stored as 0. Backpropagation is linear in the loss, so computing the gradient
of S * loss gives S * grad: multiplied into fp16's range. Before the
optimizer step the fp32 gradients are divided by S again (Micikevicius et al.
2018, "Mixed Precision Training").

Too large an S overflows: some gradient becomes inf (or NaN). *Dynamic* loss
scaling detects that, skips the step and halves S; after ``growth_interval``
steps without overflow it doubles S. :class:`GradScaler` follows
``torch.amp.GradScaler``'s API and semantics, so this loop reads the same in
both libraries::

    scaler = GradScaler()
    for x, y in batches:
        optimizer.zero_grad()
        with autocast("cpu", dtype="float16"):
            loss = F.cross_entropy(model(x), y)
        scaler.scale(loss).backward()   # gradients of S * loss
        scaler.step(optimizer)          # unscale_, then step unless a gradient is inf/NaN
        scaler.update()                 # S *= backoff_factor on overflow, else maybe *= growth
"""

from __future__ import annotations

import numbers
from enum import Enum

import numpy as np

from ..tensor import Tensor

__all__ = ["GradScaler", "StaticGradScaler", "update_scale", "unscale_grads_"]


class OptState(Enum):
    READY = 0
    UNSCALED = 1
    STEPPED = 2


def _fresh_state() -> dict:
    return {"stage": OptState.READY, "found_inf": None}


def unscale_grads_(grads, inv_scale: np.float32) -> bool:
    """Multiply every gradient by ``inv_scale`` in place; True if any of them holds inf or NaN.

    As ``torch._amp_foreach_non_finite_check_and_unscale_``: all gradients are
    unscaled even when one is non-finite (the step is skipped anyway).

    Args:
        grads: list of float ndarrays (None entries are skipped).
        inv_scale: 1 / S as float32.
    """
    # BEGIN SOLUTION ch5.unscale
    found_inf = False
    for g in grads:
        if g is None:
            continue
        found_inf |= not np.isfinite(g).all()
        g *= inv_scale
    return found_inf
    # END SOLUTION


def update_scale(scale: np.float32, growth_tracker: int, found_inf: bool, growth_factor: float,
                 backoff_factor: float, growth_interval: int) -> tuple[np.float32, int]:
    """One dynamic-loss-scale update, as ``torch._amp_update_scale_``.

    overflow:    S = S * backoff_factor, tracker = 0
    otherwise:   tracker += 1; when it reaches growth_interval,
                 S = S * growth_factor (kept only if finite), tracker = 0

    Returns:
        (new scale as float32, new growth tracker)
    """
    # BEGIN SOLUTION ch5.scaler_update
    if found_inf:
        return np.float32(scale * backoff_factor), 0
    successful = growth_tracker + 1
    if successful == growth_interval:
        with np.errstate(over="ignore"):             # beyond float32's max: inf, not kept
            grown = np.float32(scale * growth_factor)
        return (grown if np.isfinite(grown) else np.float32(scale)), 0
    return np.float32(scale), successful
    # END SOLUTION


class GradScaler:
    """Dynamic loss scaling with PyTorch's API (``torch.amp.GradScaler``).

    Args:
        init_scale: S before the first update (2^16).
        growth_factor: S *= growth_factor after ``growth_interval`` clean steps (> 1).
        backoff_factor: S *= backoff_factor after a step with inf/NaN gradients (in (0, 1)).
        growth_interval: clean steps between growths.
        enabled: False makes every method a pass-through (scale(loss) is loss, step is
            optimizer.step()), so one training loop serves fp32 and fp16.
    """

    def __init__(self, init_scale: float = 2.0 ** 16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000, enabled: bool = True):
        self._enabled = bool(enabled)
        if self._enabled:
            if not (np.isfinite(init_scale) and init_scale > 0):
                raise ValueError(f"GradScaler: init_scale must be a finite number > 0, got {init_scale!r}")
            if not growth_factor > 1.0:
                raise ValueError(f"GradScaler: growth_factor must be > 1.0, got {growth_factor!r}")
            if not 0.0 < backoff_factor < 1.0:
                raise ValueError(f"GradScaler: backoff_factor must be in (0, 1), got {backoff_factor!r}")
            self._check_interval(growth_interval)
        self._init_scale = float(init_scale)
        self._growth_factor = float(growth_factor)
        self._backoff_factor = float(backoff_factor)
        self._growth_interval = int(growth_interval)
        self._scale = None                  # float32, created by the first scale()
        self._init_growth_tracker = 0
        self._growth_tracker = None
        self._per_optimizer_states: dict[int, dict] = {}

    @staticmethod
    def _check_interval(growth_interval):
        if isinstance(growth_interval, bool) or not isinstance(growth_interval, numbers.Integral) \
                or growth_interval < 1:
            raise ValueError(f"GradScaler: growth_interval must be an integer >= 1, "
                             f"got {growth_interval!r}")

    def _state(self, optimizer) -> dict:
        return self._per_optimizer_states.setdefault(id(optimizer), _fresh_state())

    def _check_started(self, fn: str):
        if self._scale is None:
            raise RuntimeError(f"GradScaler.{fn}: no scale yet; call scaler.scale(loss) earlier "
                               f"in the iteration")

    def scale(self, outputs):
        """``outputs * S`` (a Tensor, or a list/tuple of Tensors). Backward of it gives S * grad."""
        if not self._enabled:
            return outputs
        if self._scale is None:
            self._scale = np.float32(self._init_scale)
            self._growth_tracker = self._init_growth_tracker
        if isinstance(outputs, Tensor):
            return outputs * self._scale
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.scale(o) for o in outputs)
        raise TypeError(f"GradScaler.scale: outputs must be a Tensor or a list/tuple of Tensors, "
                        f"got {type(outputs).__name__}")

    def unscale_(self, optimizer) -> None:
        """Divide the gradients of ``optimizer``'s parameters by S, in place, and record
        whether any was inf/NaN. Call it before clipping gradients; at most once per step."""
        if not self._enabled:
            return
        self._check_started("unscale_")
        state = self._state(optimizer)
        if state["stage"] is OptState.UNSCALED:
            raise RuntimeError("unscale_() has already been called on this optimizer since the "
                               "last update().")
        if state["stage"] is OptState.STEPPED:
            raise RuntimeError("unscale_() is being called after step().")
        inv_scale = np.float32(1.0 / np.float64(self._scale))     # computed in double, as torch
        grads = [p.grad for g in optimizer.param_groups for p in g["params"]]
        state["found_inf"] = unscale_grads_(grads, inv_scale)
        state["stage"] = OptState.UNSCALED

    def step(self, optimizer, *args, **kwargs):
        """``unscale_(optimizer)`` if not done yet, then ``optimizer.step()`` unless a gradient
        was inf/NaN (the step is skipped). Returns what ``optimizer.step`` returned, or None."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        self._check_started("step")
        state = self._state(optimizer)
        if state["stage"] is OptState.STEPPED:
            raise RuntimeError("step() has already been called since the last update().")
        if state["stage"] is OptState.READY:
            self.unscale_(optimizer)
        retval = None if state["found_inf"] else optimizer.step(*args, **kwargs)
        state["stage"] = OptState.STEPPED
        return retval

    def update(self, new_scale=None) -> None:
        """Set S for the next iteration: ``new_scale`` if given, else back off (any optimizer
        saw inf/NaN) or count a clean step (and grow after ``growth_interval`` of them)."""
        if not self._enabled:
            return
        self._check_started("update")
        if new_scale is not None:
            if not (isinstance(new_scale, numbers.Real) and np.isfinite(new_scale) and new_scale > 0):
                raise ValueError(f"GradScaler.update: new_scale must be a finite number > 0, "
                                 f"got {new_scale!r}")
            self._scale = np.float32(new_scale)
        else:
            found = [s["found_inf"] for s in self._per_optimizer_states.values()
                     if s["found_inf"] is not None]
            if not found:
                raise RuntimeError("GradScaler.update: no inf checks were recorded prior to "
                                   "update(); call scaler.step(optimizer) first")
            self._scale, self._growth_tracker = update_scale(
                self._scale, self._growth_tracker, any(found), self._growth_factor,
                self._backoff_factor, self._growth_interval)
        self._per_optimizer_states = {}

    # -- inspection and checkpoints, as torch ---------------------------------------
    def get_scale(self) -> float:
        """The current S as a Python float (``init_scale`` before the first scale(); 1.0 if disabled)."""
        if not self._enabled:
            return 1.0
        return self._init_scale if self._scale is None else float(self._scale)

    def is_enabled(self) -> bool:
        return self._enabled

    def get_growth_factor(self) -> float:
        return self._growth_factor

    def get_backoff_factor(self) -> float:
        return self._backoff_factor

    def get_growth_interval(self) -> int:
        return self._growth_interval

    def _get_growth_tracker(self) -> int:
        return self._init_growth_tracker if self._growth_tracker is None else int(self._growth_tracker)

    def state_dict(self) -> dict:
        """scale, growth_factor, backoff_factor, growth_interval, _growth_tracker ({} if disabled)."""
        if not self._enabled:
            return {}
        return {"scale": self.get_scale(), "growth_factor": self._growth_factor,
                "backoff_factor": self._backoff_factor, "growth_interval": self._growth_interval,
                "_growth_tracker": self._get_growth_tracker()}

    def load_state_dict(self, state_dict: dict) -> None:
        if not self._enabled:
            return
        if len(state_dict) == 0:
            raise RuntimeError("The source state dict is empty, possibly because it was saved "
                               "from a disabled instance of GradScaler.")
        missing = {"scale", "growth_factor", "backoff_factor", "growth_interval",
                   "_growth_tracker"} - set(state_dict)
        if missing:
            raise KeyError(f"GradScaler.load_state_dict: state_dict lacks {sorted(missing)}")
        self._check_interval(state_dict["growth_interval"])
        self._init_scale = float(state_dict["scale"])
        if self._scale is not None:
            self._scale = np.float32(self._init_scale)
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._init_growth_tracker = int(state_dict["_growth_tracker"])
        if self._growth_tracker is not None:
            self._growth_tracker = self._init_growth_tracker


class StaticGradScaler(GradScaler):
    """Static loss scaling: one fixed S for the whole run (Micikevicius et al. 2018's
    first recipe). Steps with inf/NaN gradients are still skipped, but S never
    changes: too small and gradients underflow, too large and every step is skipped."""

    def __init__(self, scale: float = 2.0 ** 10, enabled: bool = True):
        super().__init__(init_scale=scale, enabled=enabled)

    def update(self, new_scale=None) -> None:
        if not self._enabled:
            return
        self._check_started("update")
        if new_scale is not None:
            super().update(new_scale)
        self._per_optimizer_states = {}
