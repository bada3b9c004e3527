"""fp32 master weights: why the optimizer must not update 16-bit weights.

An update u to a weight w survives a format only if |u| is at least half the
spacing of the format at w: for bf16 at w = 1.0 the spacing is 2^-7 ~ 0.0078,
so any |u| < 0.0039 is rounded away and the weight never moves, however many
steps. Mixed-precision training keeps an fp32 *master* copy (spacing 1.2e-7
at 1.0) that accumulates the updates; the 16-bit weights the model computes
with are a fresh cast of it every step (Micikevicius et al. 2018).
"""

from __future__ import annotations

import numpy as np

from .format import get_format
from .rounding import as_float_array, round_to

__all__ = ["master_sgd_step_", "weight_update_trajectory", "round_parameters_"]


def master_sgd_step_(master: np.ndarray, grad, lr: float, fmt) -> np.ndarray:
    """One SGD step on fp32 master weights; returns the model's 16-bit copy.

        master <- master - lr * grad      (in place, float32)
        model  =  round_to(master, fmt)

    Args:
        master: float32 array, the master weights (updated in place).
        grad: the (unscaled) gradient, ``master``'s shape; its values may be 16-bit.
        lr: learning rate >= 0.
        fmt: the model's format ("bf16", "fp16", ...).
    Returns:
        float32 array, ``master``'s shape, on the grid of ``fmt``.
    """
    f = get_format(fmt, "master_sgd_step_")
    grad = as_float_array(grad, "master_sgd_step_", "grad")
    if not (isinstance(master, np.ndarray) and master.dtype == np.float32):
        raise TypeError(f"master_sgd_step_: master must be a float32 ndarray (the fp32 copy), "
                        f"got {type(master).__name__} {getattr(master, 'dtype', '')}")
    if grad.shape != master.shape:
        raise ValueError(f"master_sgd_step_: grad shape {grad.shape} differs from master "
                         f"shape {master.shape}")
    if not lr >= 0:
        raise ValueError(f"master_sgd_step_: lr must be >= 0, got {lr!r}")
    # BEGIN SOLUTION ch5.master_step
    master -= np.float32(lr) * grad.astype(np.float32)
    return round_to(master, f)
    # END SOLUTION


def weight_update_trajectory(w0: float = 1.0, update: float = 1e-3, steps: int = 100,
                             fmt="bfloat16") -> dict:
    """Add ``update`` to a weight ``steps`` times: exact, in ``fmt`` alone, with an fp32 master.

    Returns:
        dict of (steps + 1,) float64 arrays: "exact" (w0 + k u), "pure" (stored in
        ``fmt``, rounded every step), "master" (the fp32 master), "model" (its
        cast to ``fmt``, what the forward pass sees).
    """
    f = get_format(fmt, "weight_update_trajectory")
    if steps < 0:
        raise ValueError(f"weight_update_trajectory: steps must be >= 0, got {steps}")
    pure = round_to(np.float32(w0), f)
    master = np.array([w0], np.float32)
    out = {k: np.empty(steps + 1) for k in ("exact", "pure", "master", "model")}
    out["exact"][:] = w0 + update * np.arange(steps + 1)
    out["pure"][0], out["master"][0], out["model"][0] = pure, master[0], round_to(master, f)[0]
    for k in range(1, steps + 1):
        pure = round_to(pure + np.float32(update), f)       # the sum rounded back into fmt
        model = master_sgd_step_(master, np.array([-update], np.float32), 1.0, f)
        out["pure"][k], out["master"][k], out["model"][k] = pure, master[0], model[0]
    return out


def round_parameters_(params, fmt) -> None:
    """Store parameters in ``fmt``: round each one's data in place ("pure" 16-bit
    weights with no fp32 master behind them)."""
    f = get_format(fmt, "round_parameters_")
    for p in params:
        p.data[...] = round_to(p.data, f)
