"""Gradient accumulation: a large batch as k micro-batches, one backward each.

Gradients add up in ``.grad`` across backward calls, so running k
micro-batches before one optimizer step gives the full batch's gradient
while only one micro-batch's activations are alive at a time. With a mean
loss the micro-batch losses must be weighted by their share of the batch,
n_i / N (1/k for equal micro-batches):

    grad L = grad (1/N sum_n l_n) = sum_i (n_i / N) grad (1/n_i sum_{n in i} l_n)

Without the 1/k the step is k times too large (as if the learning rate were
k times larger). Equal to the full batch up to float rounding (sums are
taken in a different order).
"""

from __future__ import annotations

import numbers

import numpy as np

from ..tensor import Tensor

__all__ = ["micro_batches", "accumulate_gradients"]


def micro_batches(n: int, k: int) -> list:
    """Slices cutting ``n`` rows into ``k`` nearly equal contiguous micro-batches (sizes differ by <= 1)."""
    if not isinstance(k, numbers.Integral) or not 1 <= k <= n:
        raise ValueError(f"micro_batches: k must be an integer in [1, {n}], got {k!r}")
    bounds = np.linspace(0, n, k + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def accumulate_gradients(model, loss_fn, inputs, targets, accumulation_steps: int) -> float:
    """Accumulate into every parameter's ``.grad`` the gradient of ``loss_fn(model(inputs),
    targets)`` (a *mean* over rows), in ``accumulation_steps`` micro-batches.

    Args:
        model: callable (a Module).
        loss_fn: ``loss_fn(output, target) -> scalar Tensor``, a mean over rows.
        inputs: (N, ...) array or Tensor; targets: (N, ...).
        accumulation_steps: k, the number of micro-batches.
    Returns:
        the full-batch mean loss (a float).
    """
    x = inputs.data if isinstance(inputs, Tensor) else np.asarray(inputs)
    y = targets.data if isinstance(targets, Tensor) else np.asarray(targets)
    if len(x) != len(y):
        raise ValueError(f"accumulate_gradients: inputs and targets have {len(x)} and {len(y)} rows")
    N = len(x)
    total = 0.0
    for sl in micro_batches(N, accumulation_steps):
        # BEGIN SOLUTION ch7.accumulate_gradients
        weight = (sl.stop - sl.start) / N               # n_i / N: 1/k for equal micro-batches
        loss = loss_fn(model(Tensor(x[sl])), y[sl]) * weight
        loss.backward()                                 # adds into .grad
        total += float(loss.data)
        # END SOLUTION
    return total
