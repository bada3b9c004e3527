"""What a sparse weight costs to store: dense, CSR, and 2:4 with its metadata.

- dense: every value, ``value_bytes`` each (2 for fp16).
- CSR (compressed sparse row): the nonzero values, one column index per value
  (``index_bytes``, int32 here) and a row-pointer array of rows + 1 offsets.
  Unstructured sparsity only pays once the index costs less than the zeros
  saved: with fp16 values and int32 indices, above 2/3 sparsity.
- 2:4 (NVIDIA's semi-structured format): the two kept values of every group of
  four, plus 2 bits of metadata per kept value (its position 0..3 in the group):
  half the values and n/8 bytes of metadata, 1.125 n bytes in fp16 against 2 n.

The arrays are built for real (:func:`to_csr`, :func:`to_semi_structured`) and
their ``nbytes`` counted; each has a decoder so a test can check the round trip.
"""

from __future__ import annotations

import numpy as np

from .pruning import semi_structured_mask

__all__ = ["to_csr", "from_csr", "to_semi_structured", "from_semi_structured", "storage_bytes",
           "dense_nbytes", "csr_nbytes", "semi_structured_nbytes", "csr_break_even_sparsity"]


def to_csr(W, value_dtype=np.float16, index_dtype=np.int32):
    """(data, indices, indptr) of the nonzeros of W (rows, cols), row by row."""
    W = np.asarray(W)
    if W.ndim != 2:
        raise ValueError(f"to_csr: W must be 2-D, got shape {W.shape}")
    rows, cols = np.nonzero(W)                       # row-major order: sorted by row
    indptr = np.zeros(W.shape[0] + 1, dtype=index_dtype)
    np.cumsum(np.bincount(rows, minlength=W.shape[0]), out=indptr[1:])
    return W[rows, cols].astype(value_dtype), cols.astype(index_dtype), indptr


def from_csr(data, indices, indptr, shape) -> np.ndarray:
    W = np.zeros(shape, dtype=np.float32)
    rows = np.repeat(np.arange(shape[0]), np.diff(indptr))
    W[rows, indices] = data
    return W


def to_semi_structured(W, value_dtype=np.float16):
    """2:4 storage of W (rows, cols), 4 | cols: (values (rows, cols/2), metadata uint8).

    The kept entries are the two of largest |w| per group (exactly those of a W already
    pruned 2:4); metadata packs each kept value's 2-bit position, four per byte.
    """
    W = np.asarray(W)
    mask = semi_structured_mask(W.astype(np.float32))                 # (rows, cols), 2 per group
    pos = np.nonzero(mask.reshape(-1, 4))[1].astype(np.uint8)         # (rows * cols / 2,) in 0..3
    values = W[mask].astype(value_dtype).reshape(W.shape[0], -1)      # row-major: group order
    pos = np.concatenate([pos, np.zeros((-pos.size) % 4, np.uint8)]).reshape(-1, 4)
    meta = pos[:, 0] | pos[:, 1] << 2 | pos[:, 2] << 4 | pos[:, 3] << 6
    return values, meta.astype(np.uint8)


def from_semi_structured(values, meta, shape) -> np.ndarray:
    pos = np.stack([(meta >> s) & 3 for s in (0, 2, 4, 6)], axis=1).reshape(-1)
    n_kept = values.size
    pos = pos[:n_kept].astype(np.int64)
    group = np.repeat(np.arange(n_kept // 2), 2)                      # two kept per group
    W = np.zeros(shape, np.float32).reshape(-1, 4)
    W[group, pos] = values.reshape(-1)
    return W.reshape(shape)


def storage_bytes(W, value_dtype=np.float16, index_dtype=np.int32) -> dict:
    """Bytes of W (rows, cols) as dense, as CSR of its nonzeros, and as 2:4 (when 4 | cols;
    2:4 keeps half the entries whatever W's own sparsity is)."""
    W = np.asarray(W)
    out = {"dense": W.size * np.dtype(value_dtype).itemsize,
           "csr": sum(a.nbytes for a in to_csr(W, value_dtype, index_dtype))}
    if W.ndim == 2 and W.shape[1] % 4 == 0:
        out["2:4"] = sum(a.nbytes for a in to_semi_structured(W, value_dtype))
    return out


def dense_nbytes(rows: int, cols: int, value_bytes: int = 2) -> int:
    """rows * cols * value_bytes."""
    return rows * cols * value_bytes


def csr_nbytes(rows: int, nnz: int, value_bytes: int = 2, index_bytes: int = 4) -> int:
    """nnz values + nnz column indices + (rows + 1) row pointers."""
    return nnz * (value_bytes + index_bytes) + (rows + 1) * index_bytes


def semi_structured_nbytes(rows: int, cols: int, value_bytes: int = 2) -> int:
    """2:4: half the values, 2 bits of position per kept value (n / 8 bytes; 4 | cols)."""
    if cols % 4:
        raise ValueError(f"semi_structured_nbytes: 4 must divide cols, got {cols}")
    kept = rows * cols // 2
    return kept * value_bytes + kept * 2 // 8


def csr_break_even_sparsity(value_bytes: int = 2, index_bytes: int = 4) -> float:
    """Sparsity above which CSR is smaller than dense (row pointers neglected):
    (1 - s)(v + i) < v  <=>  s > i / (v + i)."""
    return index_bytes / (value_bytes + index_bytes)
