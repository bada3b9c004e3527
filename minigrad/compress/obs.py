"""The layer-wise second-order problem behind SparseGPT and GPTQ.

A linear layer's output on calibration inputs X (N, in) is X W^T. Changing
one output row w (in,) to w + delta changes the squared error by
delta^T H delta / 2 with the Hessian

    H = 2 X^T X / N            (in, in), the same for every row of W

(the 1/N is AutoGPTQ's running mean; it changes no result below). The
optimal brain surgeon (Hassibi & Stork 1993) fixes weight q to a new value
w_q - e and moves the others to compensate, optimally:

    delta = -(e / [H^-1]_qq) * H^-1[:, q],   extra error e^2 / (2 [H^-1]_qq)

Done column after column (q = 0, 1, ...), the inverse Hessian of the
columns still free is needed at each step; the rows of the upper Cholesky
factor U of H^-1 (H^-1 = U^T U) hold exactly those, so one factorisation
serves every step (Frantar et al. 2022, GPTQ, section 3, "Cholesky
reformulation"). Damping adds damp_percent * mean(diag H) to the diagonal
so the factorisation exists even when X is rank-deficient.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["layer_hessian", "inverse_hessian_cholesky", "obs_update", "column_step"]


def layer_hessian(X) -> np.ndarray:
    """H = 2 X^T X / N for inputs X (..., in) of one linear layer: (in, in) float64."""
    X = np.asarray(getattr(X, "data", X), dtype=np.float64)
    if X.ndim < 2 or X.shape[-1] < 1:
        raise ValueError(f"layer_hessian: X must be (..., in_features), got shape {X.shape}")
    X = X.reshape(-1, X.shape[-1])                          # (..., in) -> (N, in)
    return 2.0 * (X.T @ X) / X.shape[0]


def check_damp(damp_percent, fn: str) -> float:
    if isinstance(damp_percent, bool) or not isinstance(damp_percent, numbers.Real) \
            or not 0.0 < damp_percent <= 1.0:
        raise ValueError(f"{fn}: damp_percent must be in (0, 1], got {damp_percent!r}")
    return float(damp_percent)


def inverse_hessian_cholesky(H, damp_percent: float = 0.01):
    """Upper Cholesky factor U of (H + lambda I)^-1, lambda = damp_percent * mean(diag H).

    Columns whose input is always zero ("dead", H_jj = 0) get H_jj = 1 so the
    factorisation exists; their weights cannot matter and are set to zero by
    the callers. Returns (U (in, in) float64, dead (in,) bool).
    """
    H = np.array(H, dtype=np.float64)
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"inverse_hessian_cholesky: H must be square (in, in), got {H.shape}")
    damp_percent = check_damp(damp_percent, "inverse_hessian_cholesky")
    dead = np.diag(H) == 0
    H[dead, dead] = 1.0
    H[np.diag_indices_from(H)] += damp_percent * np.mean(np.diag(H))
    L = np.linalg.cholesky(H)                               # H = L L^T
    Linv = np.linalg.solve(L, np.eye(H.shape[0]))           # H^-1 = Linv^T Linv
    Hinv = Linv.T @ Linv
    U = np.linalg.cholesky(Hinv).T                          # H^-1 = U^T U, U upper
    return U, dead


def obs_update(w, Hinv, q: int, new_value: float = 0.0) -> np.ndarray:
    """Optimal brain surgeon, closed form: set w[q] to ``new_value`` and move every other
    weight by delta = -((w_q - new_value) / Hinv_qq) * Hinv[:, q]. Returns the new row (in,)."""
    w = np.asarray(w, dtype=np.float64)
    e = w[q] - new_value
    return w - (e / Hinv[q, q]) * Hinv[:, q]


def column_step(W, U, i: int, target) -> tuple:
    """One step of GPTQ and SparseGPT: fix column ``i`` of W to ``target(W[:, i])`` and spread
    the error over the columns after it, for every row at once (in place).

        err = (w - target(w)) / U_ii,      W[:, i:] -= err (outer) U[i, i:]

    which is :func:`obs_update` with the inverse Hessian of the free columns i.. (U's row i
    holds it: U_ij = [H_F^-1]_ij / sqrt([H_F^-1]_ii)). Afterwards W[:, i] == target(w).

    Args:
        W: (rows, cols) float, modified in place.
        U: (cols, cols) upper Cholesky factor of H^-1 (:func:`inverse_hessian_cholesky`).
        i: the column.
        target: (rows,) -> (rows,): round to a grid (GPTQ) or zero the pruned (SparseGPT).
    Returns:
        (q, err): the fixed column and the scaled error, both (rows,).
    """
    # BEGIN SOLUTION ch10.gptq_step
    w = W[:, i].copy()
    q = target(w)
    err = (w - q) / U[i, i]
    W[:, i:] -= np.outer(err, U[i, i:])                     # (rows, 1) x (1, cols - i)
    # END SOLUTION
    return q, err
