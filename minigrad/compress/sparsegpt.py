"""SparseGPT: one-shot pruning with second-order error compensation (Frantar & Alistarh
2023, "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot").

For each layer, given H = 2 X^T X / N from calibration inputs, the columns are
visited left to right in blocks of ``blocksize``. At the start of a block the
mask is chosen by the OBS saliency w^2 / [H^-1]_jj^2 (with U the Cholesky factor,
[U_jj]^2 plays the role of [H^-1]_jj): the ``sparsity`` fraction of smallest
saliency in the block is pruned ("adaptive mask selection"). Then every column
is fixed in turn, pruned entries set to zero, and the error is pushed into the
columns not yet visited through the optimal-brain-surgeon update
(:func:`minigrad.compress.obs.column_step`): the weights that remain absorb what
the pruned ones did. With ``prunen``/``prunem`` (2 and 4) the mask is N:M: in each
group of m columns, per row, the n of smallest saliency are pruned.
Argument names follow the paper's code (``fasterprune``).
"""

from __future__ import annotations

import numpy as np

from .obs import column_step, inverse_hessian_cholesky
from .pruning import check_sparsity

__all__ = ["sparsegpt_prune"]


def sparsegpt_prune(W, H, sparsity: float = 0.5, prunen: int = 0, prunem: int = 0,
                    blocksize: int = 128, percdamp: float = 0.01):
    """Prune W (out, in) to ``sparsity`` using H (in, in), compensating the rest.

    Returns:
        (W_pruned (out, in) in W's dtype, mask (out, in) bool, True = kept).
    """
    W0 = np.asarray(getattr(W, "data", W))
    if W0.ndim != 2:
        raise ValueError(f"sparsegpt_prune: W must be (out, in), got shape {W0.shape}")
    rows, cols = W0.shape
    if np.shape(H) != (cols, cols):
        raise ValueError(f"sparsegpt_prune: H must be ({cols}, {cols}) for W {W0.shape}, "
                         f"got {np.shape(H)}")
    if prunen or prunem:
        if not (0 < prunen < prunem) or cols % prunem:
            raise ValueError(f"sparsegpt_prune: need 0 < prunen < prunem with prunem dividing "
                             f"in_features {cols}, got prunen={prunen}, prunem={prunem}")
        sparsity = prunen / prunem
    sparsity = check_sparsity(sparsity, "sparsegpt_prune")
    if blocksize < 1:
        raise ValueError(f"sparsegpt_prune: blocksize must be >= 1, got {blocksize}")
    U, dead = inverse_hessian_cholesky(H, percdamp)
    Wf = W0.astype(np.float64).copy()
    Wf[:, dead] = 0.0
    keep = np.ones_like(Wf, dtype=bool)
    d = np.diag(U)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1, U1 = Wf[:, i1:i2].copy(), U[i1:i2, i1:i2]
        err1 = np.zeros_like(W1)
        if not prunen:                                       # mask for the whole block at once
            sal = W1 ** 2 / d[i1:i2] ** 2                   # (rows, block)
            k = int(sal.size * sparsity)
            order = np.argsort(sal.reshape(-1), kind="stable")
            m1 = np.ones(sal.size, dtype=bool)
            m1[order[:k]] = False
            keep[:, i1:i2] = m1.reshape(sal.shape)
        for i in range(i2 - i1):
            if prunen and i % prunem == 0:                  # N:M: the next group's mask now
                sal = W1[:, i:i + prunem] ** 2 / d[i1 + i:i1 + i + prunem] ** 2
                low = np.argsort(sal, axis=1, kind="stable")[:, :prunen]
                grp = np.ones(sal.shape, dtype=bool)
                np.put_along_axis(grp, low, False, axis=1)
                keep[:, i1 + i:i1 + i + prunem] = grp
            col_keep = keep[:, i1 + i]
            _, err1[:, i] = column_step(W1, U1, i, lambda w, ck=col_keep: np.where(ck, w, 0.0))
        Wf[:, i1:i2] = W1
        Wf[:, i2:] -= err1 @ U[i1:i2, i2:]                  # the block's error, to later columns
    Wf[~keep] = 0.0
    return Wf.astype(W0.dtype), keep
