"""The embedding's backward, a scatter-add, in one loop.

An embedding's forward picks rows, ``out[n] = weight[idx[n]]``; its backward
sends each output row's gradient back to the row it came from, summing over
repeats: ``grad_weight[v] = sum over n with idx[n] == v of g[n]``. NumPy's
``np.add.at`` does exactly that, unbuffered, so a row picked twice gets both
gradients, but through a generic per-element path about a hundred times
slower than the loop below, which adds each gradient row into its table
row in the order of ``idx``: the order ``np.add.at`` adds in, so the two
agree bit for bit, ties (repeated indices) included.

Shapes: ``idx`` (N,) integer rows of the table; ``g`` (N, D), contiguous;
the result (V, D).

This module imports numba: :mod:`minigrad.functional` imports it only when
:func:`minigrad.kernels.fast` says the fast kernels are wanted.
"""

from __future__ import annotations

import numpy as np

from .jit import njit

__all__ = ["embedding_backward_reference", "embedding_backward_numba"]


def embedding_backward_reference(idx: np.ndarray, g: np.ndarray, num_embeddings: int) -> np.ndarray:
    """grad_weight (V, D) with grad_weight[v] = sum of g[n] over the n with idx[n] == v."""
    grad_weight = np.zeros((num_embeddings, g.shape[1]), g.dtype)
    np.add.at(grad_weight, idx, g)  # unbuffered: a row used twice gets both
    return grad_weight


@njit(cache=True, nogil=True)
def _scatter_add_rows(idx, g, out):
    for n in range(idx.size):
        row, src = out[idx[n]], g[n]
        for j in range(src.size):
            row[j] += src[j]


def embedding_backward_numba(idx: np.ndarray, g: np.ndarray, num_embeddings: int) -> np.ndarray:
    grad_weight = np.zeros((num_embeddings, g.shape[1]), g.dtype)
    _scatter_add_rows(np.ascontiguousarray(idx, np.intp), np.ascontiguousarray(g), grad_weight)
    return grad_weight
