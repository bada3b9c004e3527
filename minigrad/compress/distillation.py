"""Knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a
Neural Network").

A trained teacher's logits z_t, softened by a temperature T, are the *soft labels*
p_t = softmax(z_t / T); the student's logits z_s give *soft predictions*
p_s = softmax(z_s / T) and *hard predictions* softmax(z_s). The loss combines

    distillation loss  = KL(p_t || p_s) = sum_c p_t (log p_t - log p_s)
    student loss       = CE(z_s, y)      (hard predictions against the true labels)
    loss = alpha * T^2 * distillation loss + (1 - alpha) * student loss

The T^2 keeps the soft term's gradient the same size as T changes (its gradient
w.r.t. z_s is (p_s - p_t) / T). With T > 1 the soft labels show which wrong classes
the teacher finds nearly right: information hard labels do not carry.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import functional as F
from ..tensor import Tensor

__all__ = ["soft_labels", "distillation_loss"]


def _check_temperature(T, fn: str) -> float:
    if isinstance(T, bool) or not isinstance(T, numbers.Real) or not T > 0:
        raise ValueError(f"{fn}: T (temperature) must be > 0, got {T!r}")
    return float(T)


def soft_labels(teacher_logits, T: float = 2.0) -> np.ndarray:
    """softmax(z_t / T) along the last axis: the teacher's soft labels (..., C)."""
    T = _check_temperature(T, "soft_labels")
    z = np.asarray(getattr(teacher_logits, "data", teacher_logits), np.float64) / T
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def distillation_loss(student_logits: Tensor, teacher_logits, labels, T: float = 2.0,
                      alpha: float = 0.5, ignore_index: int = -100) -> Tensor:
    """alpha T^2 KL(softmax(z_t/T) || softmax(z_s/T)) + (1 - alpha) CE(z_s, y), averaged over rows.

    Args:
        student_logits: (N, C) Tensor (gradients flow into it).
        teacher_logits: (N, C) array or Tensor (no gradient: the teacher is fixed).
        labels: (N,) int class ids; rows equal to ``ignore_index`` count in neither term.
        T: temperature > 0.  alpha: weight of the distillation term, in [0, 1].
    Returns:
        a scalar Tensor.
    """
    fn = "distillation_loss"
    T = _check_temperature(T, fn)
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 <= alpha <= 1:
        raise ValueError(f"{fn}: alpha must be in [0, 1], got {alpha!r}")
    zs = student_logits if isinstance(student_logits, Tensor) else Tensor(student_logits)
    zt = np.asarray(getattr(teacher_logits, "data", teacher_logits))
    y = np.asarray(labels)
    if zs.ndim != 2 or zt.shape != zs.shape or y.shape != zs.shape[:1]:
        raise ValueError(f"{fn}: need student and teacher logits (N, C) and labels (N,), got "
                         f"{zs.shape}, {zt.shape}, {y.shape}")
    rows = y != ignore_index
    if not rows.any():
        raise ValueError(f"{fn}: every label is ignore_index={ignore_index}")
    # BEGIN SOLUTION ch10.distillation_loss
    p_t = soft_labels(zt[rows], T).astype(zs.dtype)                  # soft labels (n, C)
    log_p_s = F.log_softmax(zs[rows] / T, dim=-1)                    # log soft predictions
    log_p_t = np.log(np.maximum(p_t, np.finfo(zs.dtype).tiny))
    kl = (Tensor(p_t) * (Tensor(log_p_t) - log_p_s)).sum() / int(rows.sum())
    student = F.cross_entropy(zs[rows], y[rows])                     # hard predictions vs y
    return kl * (alpha * T * T) + student * (1 - alpha)
    # END SOLUTION
