"""Fused optimizer kernels: Adam's update in one pass over memory.

:func:`minigrad.optim.adam_step` writes one Adam step the readable way, a
NumPy statement per line of the paper: decay, two moment updates, a square
root, a division, the update, about ten passes over every parameter, each
writing a temporary as large as it. The kernel here makes one pass: each
element of the parameter, its gradient and its two moments is read once,
updated in registers and written back in place.

It computes what the reference computes, in the same order and in the
parameter's precision (the hyper-parameters rounded to it first, as NumPy
rounds a Python float meeting a float32 array), so the two agree bit for
bit; ``tests/test_kernels_optim.py`` holds them equal.

This module imports numba: :mod:`minigrad.optim` imports it only when
:func:`minigrad.kernels.fast` says the fast kernels are wanted.
"""

from __future__ import annotations

import math

import numpy as np

from .jit import njit

__all__ = ["adam_step_numba", "fusable"]


def fusable(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray) -> bool:
    """Whether the kernel takes these arrays: one dtype, float32 or float64, one shape, all
    contiguous, and a gradient apart from the parameter (AdamW's reference decays a
    gradient that aliases the parameter before reading it)."""
    dt = param.dtype
    return ((dt == np.float32 or dt == np.float64)
            and grad.dtype == exp_avg.dtype == exp_avg_sq.dtype == dt and grad.shape == param.shape
            and param.flags.c_contiguous and grad.flags.c_contiguous and param.flags.writeable
            and exp_avg.flags.c_contiguous and exp_avg_sq.flags.c_contiguous
            and not np.may_share_memory(param, grad))


# BEGIN KERNEL ch2.adam_update
# (restates exercise ch2.adam_update: a release that stubs it drops this region, and
# minigrad.optim.adam_step then runs the readable adam_update)
@njit(cache=True, nogil=True, error_model="numpy")
def _adam_elements(p, g, m, v, decay, l2, beta1, one_minus_beta1, beta2, one_minus_beta2,
                   step_size, sqrt_bc2, eps, decoupled, coupled):
    # the scalars rounded to p's dtype first, as NumPy rounds a Python float meeting a
    # float32 array: float32 math for float32 parameters. error_model="numpy": a division
    # by zero gives inf, not an exception check per element that keeps LLVM from vectorizing
    t = p.dtype.type
    decay, l2, beta1, one_minus_beta1, beta2 = t(decay), t(l2), t(beta1), t(one_minus_beta1), t(beta2)
    one_minus_beta2, step_size, sqrt_bc2, eps = t(one_minus_beta2), t(step_size), t(sqrt_bc2), t(eps)
    for i in range(p.size):
        gi = g[i]
        if decoupled:
            p[i] = p[i] * decay                          # AdamW: p *= 1 - lr * wd
        elif coupled:
            gi = gi + l2 * p[i]                          # Adam: g = g + wd * p
        mi = m[i] * beta1 + one_minus_beta1 * gi
        vi = v[i] * beta2 + one_minus_beta2 * gi * gi
        m[i], v[i] = mi, vi
        p[i] = p[i] - step_size * mi / (np.sqrt(vi) / sqrt_bc2 + eps)


def adam_step_numba(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps,
                    weight_decay, decoupled):
    """:func:`minigrad.optim.adam_step` in one pass, in place on ``param``, ``exp_avg``
    and ``exp_avg_sq`` (arrays :func:`fusable` accepts; any shape, 0-d included)."""
    bias_correction1 = 1 - beta1 ** step
    bias_correction2 = 1 - beta2 ** step
    wd = bool(weight_decay)
    _adam_elements(param.reshape(-1), grad.reshape(-1), exp_avg.reshape(-1), exp_avg_sq.reshape(-1),
                   1 - lr * weight_decay, weight_decay, beta1, 1 - beta1, beta2, 1 - beta2,
                   lr / bias_correction1, math.sqrt(bias_correction2), eps,
                   wd and decoupled, wd and not decoupled)
# END KERNEL
