"""Cross-entropy from logits: the losses and the softmax in two row passes around one exp.

:func:`minigrad.functional.cross_entropy` reads the way the math does: shift
each row by its max, exponentiate, sum, take the log, pick the target's
log-probability; its backward exponentiates the log-probabilities again.
With a language model's rows (B*T rows over a vocabulary of ~65, not a
multiple of the SIMD width) NumPy's row reductions and broadcasts cost more
than the exp itself. Here the forward makes the softmax the backward needs,
once:

    z = x - max(x)                             one pass per row (numba)
    e = exp(z)                                 NumPy's SIMD exp (numba's, without SVML, is scalar)
    loss = log(sum e) - z[t];  p = e / sum(e)  one pass per row (numba)

Rows marked invalid (``ignore_index``) get zero loss and zero probabilities.

Shapes: ``x`` (M, C) rows of logits; ``target`` (M,) class ids in [0, C);
``valid`` (M,) 1.0 for a counted row, 0.0 for an ignored one, in x's dtype.
Returns ``losses`` (M,) and ``probs`` (M, C), each scaled by ``valid``.

This module imports numba: :mod:`minigrad.functional` imports it only when
:func:`minigrad.kernels.fast` says the fast kernels are wanted.
"""

from __future__ import annotations

import numpy as np

from .jit import njit

__all__ = ["cross_entropy_reference", "cross_entropy_numba"]

_REDUCE = {"reassoc", "contract", "nsz"}  # a row's max and sum over SIMD lanes; NaN still propagates


def cross_entropy_reference(x: np.ndarray, target: np.ndarray, valid: np.ndarray):
    """losses_r = valid_r * (logsumexp(x_r) - x_r[t_r]);  probs_r = valid_r * softmax(x_r)."""
    z = x - x.max(axis=1, keepdims=True)                       # (M, C)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)                           # (M, 1)
    losses = (np.log(s[:, 0]) - z[np.arange(x.shape[0]), target]) * valid   # (M,)
    return losses.astype(x.dtype, copy=False), e / s * valid[:, None]


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def _shift_by_row_max(x, z):
    for r in range(x.shape[0]):
        row, out = x[r], z[r]
        m = row[0]
        for j in range(1, row.size):
            m = max(m, row[j])
        for j in range(row.size):
            out[j] = row[j] - m


@njit(cache=True, nogil=True, fastmath=_REDUCE, error_model="numpy")
def _normalize_rows(z, e, target, valid, losses):
    # e holds exp(z) and becomes the softmax, in place
    for r in range(z.shape[0]):
        row, keep = e[r], valid[r]
        s = row.dtype.type(0.0)
        for j in range(row.size):
            s += row[j]
        losses[r] = (np.log(s) - z[r, target[r]]) * keep
        for j in range(row.size):
            row[j] = row[j] / s * keep


def cross_entropy_numba(x: np.ndarray, target: np.ndarray, valid: np.ndarray):
    x = np.ascontiguousarray(x)
    z = np.empty_like(x)
    _shift_by_row_max(x, z)
    e = np.exp(z)
    losses = np.empty(x.shape[0], x.dtype)
    _normalize_rows(z, e, np.ascontiguousarray(target, np.intp), np.ascontiguousarray(valid, x.dtype),
                    losses)
    return losses, e
