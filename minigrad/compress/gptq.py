"""GPTQ: post-training quantization column by column with error compensation
(Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative
Pre-trained Transformers"; argument names as AutoGPTQ's ``BaseQuantizeConfig``).

Round-to-nearest (RTN) rounds every weight on its own. GPTQ rounds the columns of
W (out, in) one at a time and, after each, moves the columns not yet rounded so the
layer's output X W^T changes as little as possible (the OBS update, :mod:`.obs`):

    for i in 0..in-1:   q = quant(W[:, i]);  err = (W[:, i] - q) / U_ii
                        W[:, i:] -= err (outer) U[i, i:]       U = chol(H^-1)^T, H = 2 X^T X / N

in blocks of ``blocksize`` columns (the update to later blocks is one matmul).
``desc_act`` (act-order) visits columns in order of decreasing H_jj, the ones
whose inputs are largest first, while many columns are still free to absorb their
error. ``group_size`` gives every run of that many columns its own scale and zero
(found when the group's first column is reached, from the already-updated
weights); -1 means one per output row. ``damp_percent`` of mean(diag H) is added
to the diagonal. With H = I no error moves and GPTQ is exactly RTN.

The grid, as AutoGPTQ's quantizer: maxq = 2^bits - 1 codes 0..maxq, value
scale * (q - zero). ``sym=True``: scale = 2 max|w| / maxq, zero = (maxq + 1) / 2;
``sym=False``: chapter 6's affine grid over [min(w, 0), max(w, 0)].
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from ..quant import quantize_affine
from ..quant._checks import check_bits   # bits in [2, 8], as quant's
from .obs import check_damp, column_step, inverse_hessian_cholesky

__all__ = ["BaseQuantizeConfig", "GPTQResult", "grid_params", "quantize_to_grid", "rtn_quantize",
           "gptq_quantize", "output_error", "gptq_bits_per_weight"]


def check_group_size(group_size, in_features: int, fn: str) -> int:
    """-1 (one group per row) or a positive divisor of ``in_features``."""
    if group_size == -1:
        return in_features
    if isinstance(group_size, bool) or not isinstance(group_size, numbers.Integral) \
            or group_size < 1 or in_features % group_size:
        raise ValueError(f"{fn}: group_size must be -1 or a positive divisor of in_features "
                         f"{in_features}, got {group_size!r}")
    return int(group_size)


@dataclass
class BaseQuantizeConfig:
    """AutoGPTQ's quantization settings (same names and defaults)."""

    bits: int = 4
    group_size: int = 128
    damp_percent: float = 0.01
    desc_act: bool = True
    sym: bool = True

    def __post_init__(self):
        check_bits(self.bits, "BaseQuantizeConfig")
        check_damp(self.damp_percent, "BaseQuantizeConfig")
        if self.group_size != -1 and (not isinstance(self.group_size, int) or self.group_size < 1):
            raise ValueError(f"BaseQuantizeConfig: group_size must be -1 or >= 1, got "
                             f"{self.group_size!r}")


def grid_params(w, bits: int, sym: bool = True):
    """Scale and zero per row of ``w`` (rows, g): each (rows, 1) float64."""
    w = np.asarray(w, dtype=np.float64)
    maxq = 2 ** bits - 1
    if sym:
        amax = np.abs(w).max(axis=1, keepdims=True)
        scale = np.where(amax > 0, 2 * amax / maxq, 1.0)    # an all-zero row: any scale works
        zero = np.full_like(scale, (maxq + 1) / 2)
    else:
        _, scale, zero = quantize_affine(w, bits, dim=0)    # chapter 6's affine grid, per row
        scale, zero = scale.astype(np.float64), zero.astype(np.float64)
    return scale, zero


def quantize_to_grid(w, scale, zero, bits: int) -> np.ndarray:
    """Nearest grid value: scale * (clip(round(w / scale) + zero, 0, maxq) - zero)."""
    q = np.clip(np.rint(w / scale) + zero, 0, 2 ** bits - 1)
    return scale * (q - zero)


def rtn_quantize(W, bits: int = 4, group_size: int = -1, sym: bool = True) -> np.ndarray:
    """Round-to-nearest on GPTQ's grid, per row and group: the baseline. Returns W_hat (out, in)."""
    W = np.asarray(getattr(W, "data", W))
    bits = check_bits(bits, "rtn_quantize")
    g = check_group_size(group_size, W.shape[1], "rtn_quantize")
    out = np.empty(W.shape, np.float64)
    for j in range(0, W.shape[1], g):
        s, z = grid_params(W[:, j:j + g], bits, sym)
        out[:, j:j + g] = quantize_to_grid(W[:, j:j + g].astype(np.float64), s, z, bits)
    return out.astype(W.dtype)


@dataclass
class GPTQResult:
    """What :func:`gptq_quantize` returns. ``qweight`` (out, in) codes 0..2^bits - 1,
    ``scales`` and ``zeros`` (out, n_groups), ``g_idx`` (in,) the group of each input
    column (AutoGPTQ's name; with desc_act groups follow the visiting order), ``perm``
    the visiting order, ``losses`` (out, in) the OBS error of each rounding."""

    weight: np.ndarray
    qweight: np.ndarray
    scales: np.ndarray
    zeros: np.ndarray
    g_idx: np.ndarray
    perm: np.ndarray
    losses: np.ndarray

    def dequantize(self) -> np.ndarray:
        cols = np.arange(self.qweight.shape[1])
        return self.scales[:, self.g_idx[cols]] * (self.qweight - self.zeros[:, self.g_idx[cols]])


def gptq_quantize(W, H, bits: int = 4, group_size: int = 128, damp_percent: float = 0.01,
                  desc_act: bool = True, sym: bool = True, blocksize: int = 128) -> GPTQResult:
    """Quantize W (out, in) with GPTQ against H (in, in) = :func:`layer_hessian` (X).

    Args are AutoGPTQ's; ``group_size`` -1 means one group per row. ``weight`` of the
    result is the dequantized W_hat in W's dtype.
    """
    fn = "gptq_quantize"
    W0 = np.asarray(getattr(W, "data", W))
    if W0.ndim != 2:
        raise ValueError(f"{fn}: W must be (out, in), got shape {W0.shape}")
    rows, cols = W0.shape
    if np.shape(H) != (cols, cols):
        raise ValueError(f"{fn}: H must be ({cols}, {cols}) for W {W0.shape}, got {np.shape(H)}")
    bits = check_bits(bits, fn)
    g = check_group_size(group_size, cols, fn)
    if blocksize < 1:
        raise ValueError(f"{fn}: blocksize must be >= 1, got {blocksize}")
    H = np.asarray(H, dtype=np.float64)
    perm = np.argsort(-np.diag(H), kind="stable") if desc_act else np.arange(cols)
    Wf = W0.astype(np.float64)[:, perm].copy()              # visit columns in perm's order
    U, dead = inverse_hessian_cholesky(H[np.ix_(perm, perm)], damp_percent)
    Wf[:, dead] = 0.0
    n_groups = cols // g
    scales, zeros = np.zeros((rows, n_groups)), np.zeros((rows, n_groups))
    Q = np.zeros_like(Wf)
    losses = np.zeros_like(Wf)
    scale = zero = None
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1, U1 = Wf[:, i1:i2].copy(), U[i1:i2, i1:i2]
        err1 = np.zeros_like(W1)
        for i in range(i2 - i1):
            col = i1 + i
            if col % g == 0:                                 # a new group: its grid, from W now
                grp = np.hstack([W1[:, i:], Wf[:, i2:]])[:, :g]
                scale, zero = grid_params(grp, bits, sym)
                scales[:, col // g], zeros[:, col // g] = scale[:, 0], zero[:, 0]
            w = W1[:, i].copy()
            Q[:, col], err1[:, i] = column_step(
                W1, U1, i, lambda v, s=scale, z=zero: quantize_to_grid(v[:, None], s, z, bits)[:, 0])
            losses[:, col] = (w - Q[:, col]) ** 2 / U1[i, i] ** 2 / 2
        Wf[:, i2:] -= err1 @ U[i1:i2, i2:]                  # (rows, block) @ (block, cols - i2)
    inv = np.argsort(perm)
    g_idx = (np.arange(cols) // g)[inv]                     # group of each original column
    codes = np.rint(Q / scales[:, np.arange(cols) // g] + zeros[:, np.arange(cols) // g])
    return GPTQResult(weight=Q[:, inv].astype(W0.dtype),
                      qweight=codes[:, inv].astype(np.uint8 if bits <= 8 else np.uint16),
                      scales=scales, zeros=zeros, g_idx=g_idx, perm=perm, losses=losses[:, inv])


def output_error(W, W_hat, X) -> float:
    """||X W^T - X W_hat^T||_F / ||X W^T||_F: how much of the layer's output the change loses."""
    X = np.asarray(getattr(X, "data", X), np.float64).reshape(-1, np.shape(W)[1])
    ref = X @ np.asarray(W, np.float64).T
    return float(np.linalg.norm(ref - X @ np.asarray(W_hat, np.float64).T) / np.linalg.norm(ref))


def gptq_bits_per_weight(bits: int = 4, group_size: int = 128, scale_bits: int = 16) -> float:
    """Stored bits per weight: the code, plus one fp16 scale and one ``bits``-bit zero per
    group of ``group_size`` (AutoGPTQ's packing; -1: per row, negligible for wide rows)."""
    bits = check_bits(bits, "gptq_bits_per_weight")
    if group_size == -1:
        return float(bits)
    if group_size < 1:
        raise ValueError(f"gptq_bits_per_weight: group_size must be -1 or >= 1, got {group_size}")
    return bits + (scale_bits + bits) / group_size
