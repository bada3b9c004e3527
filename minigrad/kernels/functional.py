"""Fused kernels for the elementwise and row-wise functions of a transformer step.

NumPy computes GELU and its derivative in about a dozen passes over memory
(scale, erf, add, multiply; square, scale, exp, multiply, add), each writing
a temporary as large as the activation; layer norm's forward and backward
take about as many. The numba kernels here make one pass (per row, for layer
norm), keeping the values in registers and cache, and split the work over
the cores in threads (``nogil``). Each has a
NumPy ``*_reference`` with the same signature, the math of
:func:`minigrad.functional.gelu` and :func:`minigrad.functional.layer_norm`
written the readable way; ``tests/test_kernels.py`` holds the two equal.

Shapes: ``x`` and ``g`` are contiguous (R, D): R rows (every leading dim
flattened) of the D features that layer norm normalizes; GELU does not care.

This module imports numba: :mod:`minigrad.functional` imports it only when
:func:`minigrad.kernels.fast` says the fast kernels are wanted.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..threads import run_parallel

__all__ = ["gelu_forward_reference", "gelu_forward_numba",
           "layer_norm_forward_reference", "layer_norm_forward_numba",
           "layer_norm_backward_reference", "layer_norm_backward_numba"]

_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_MIN_PER_THREAD = 1 << 18  # below this many values one thread beats the pool's hand-off
_THREADS = 2
# reassociation lets LLVM split a row's sums over SIMD lanes, as NumPy's pairwise sums do;
# NaN and inf still propagate (no nnan/ninf)
_REDUCE = {"reassoc", "contract", "nsz"}


def _row_ranges(rows: int, per_row: int):
    """Split ``rows`` into at most _THREADS contiguous ranges of whole rows."""
    t = max(1, min(_THREADS, rows * per_row // _MIN_PER_THREAD, rows))
    bounds = np.linspace(0, rows, t + 1).astype(np.int64)
    return list(zip(bounds[:-1], bounds[1:]))


# ----------------------------------------------------------------------------
# GELU, exact: y = x * Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2
# ----------------------------------------------------------------------------

def gelu_forward_reference(x: np.ndarray):
    """(y, dy/dx) of y = x * Phi(x): dy/dx = Phi(x) + x * phi(x), phi the normal density.

    The derivative is made in the same pass as the value and kept for the
    backward, which is then one multiply: dx = g * dy/dx.
    """
    from scipy.special import erf

    cdf = 0.5 * (1 + erf(x * _SQRT_HALF))
    pdf = np.exp(-0.5 * x * x) * _INV_SQRT_2PI
    return (x * cdf).astype(x.dtype, copy=False), (cdf + x * pdf).astype(x.dtype, copy=False)


@njit(cache=True, nogil=True)
def _gelu_forward_range(x, out, slope, lo, hi):
    # in the input's precision: erff and expf for float32, as NumPy's reference
    half, one = x.dtype.type(0.5), x.dtype.type(1.0)
    sqrt_half, inv_sqrt_2pi = x.dtype.type(_SQRT_HALF), x.dtype.type(_INV_SQRT_2PI)
    xb, ob, sb = x[lo:hi], out[lo:hi], slope[lo:hi]  # block views indexed from 0
    for i in range(xb.size):
        v = xb[i]
        cdf = half * (one + math.erf(v * sqrt_half))
        ob[i] = v * cdf
        sb[i] = cdf + v * math.exp(-half * v * v) * inv_sqrt_2pi


def gelu_forward_numba(x: np.ndarray):
    flat = np.ascontiguousarray(x).reshape(-1)
    out, slope = np.empty_like(flat), np.empty_like(flat)
    run_parallel([(_gelu_forward_range, (flat, out, slope, lo, hi))
                  for lo, hi in _row_ranges(flat.size, 1)])
    return out.reshape(x.shape), slope.reshape(x.shape)


# ----------------------------------------------------------------------------
# layer norm over the last dim: xhat = (x - mean) * rstd, rstd = 1 / sqrt(var + eps)
# ----------------------------------------------------------------------------

def layer_norm_forward_reference(x: np.ndarray, eps: float, weight=None, bias=None):
    """(y, xhat, rstd) for each row of x (R, D): y = xhat * weight + bias, rstd (R, 1),
    the biased variance."""
    mu = x.mean(axis=1, keepdims=True)
    xc = x - mu
    rstd = 1.0 / np.sqrt((xc * xc).mean(axis=1, keepdims=True) + eps)
    xhat = xc * rstd
    y = xhat
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return (y.astype(x.dtype, copy=False), xhat.astype(x.dtype, copy=False),
            rstd.astype(x.dtype, copy=False))


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def _layer_norm_forward_rows(x, eps, weight, bias, y, xhat, rstd, lo, hi):
    D = x.shape[1]
    for r in range(lo, hi):
        row, h, out = x[r], xhat[r], y[r]
        s = 0.0
        for j in range(D):
            s += row[j]
        mu = s / D
        ss = 0.0
        for j in range(D):
            d = row[j] - mu
            ss += d * d
        inv = 1.0 / math.sqrt(ss / D + eps)
        rstd[r, 0] = inv
        for j in range(D):
            v = (row[j] - mu) * inv
            h[j] = v
            out[j] = v * weight[j] + bias[j]


def layer_norm_forward_numba(x: np.ndarray, eps: float, weight=None, bias=None):
    x = np.ascontiguousarray(x)
    R, D = x.shape
    w = np.ones(D, x.dtype) if weight is None else np.ascontiguousarray(weight, x.dtype)
    b = np.zeros(D, x.dtype) if bias is None else np.ascontiguousarray(bias, x.dtype)
    y, xhat, rstd = np.empty_like(x), np.empty_like(x), np.empty((R, 1), x.dtype)
    run_parallel([(_layer_norm_forward_rows, (x, float(eps), w, b, y, xhat, rstd, lo, hi))
                  for lo, hi in _row_ranges(R, D)])
    return y, xhat, rstd


# BEGIN KERNEL ch2.layer_norm_backward
# (the backward restates exercise ch2.layer_norm_backward: a release that stubs it drops this
# region, and functional.layer_norm then runs its readable route)
def layer_norm_backward_reference(g: np.ndarray, xhat: np.ndarray, rstd: np.ndarray, weight):
    """dx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat)), gh = g * weight,
    with dweight = sum_rows(g * xhat), dbias = sum_rows(g)."""
    gh = g * weight if weight is not None else g
    gx = rstd * (gh - gh.mean(axis=1, keepdims=True)
                 - xhat * (gh * xhat).mean(axis=1, keepdims=True))
    return gx.astype(g.dtype, copy=False), (g * xhat).sum(axis=0), g.sum(axis=0)


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def _layer_norm_backward_rows(g, xhat, rstd, weight, has_weight, gx, gw, gb, lo, hi):
    D = g.shape[1]
    for j in range(D):
        gw[j] = 0.0
        gb[j] = 0.0
    for r in range(lo, hi):
        grow, hrow, out = g[r], xhat[r], gx[r]
        s1 = 0.0  # sum(gh)
        s2 = 0.0  # sum(gh * xhat)
        for j in range(D):
            gh = grow[j] * weight[j] if has_weight else grow[j]
            s1 += gh
            s2 += gh * hrow[j]
            gw[j] += grow[j] * hrow[j]
            gb[j] += grow[j]
        m1, m2, inv = s1 / D, s2 / D, rstd[r, 0]
        for j in range(D):
            gh = grow[j] * weight[j] if has_weight else grow[j]
            out[j] = inv * (gh - m1 - hrow[j] * m2)


def layer_norm_backward_numba(g: np.ndarray, xhat: np.ndarray, rstd: np.ndarray, weight):
    g = np.ascontiguousarray(g, xhat.dtype)
    R, D = g.shape
    w = np.ones(D, xhat.dtype) if weight is None else np.ascontiguousarray(weight, xhat.dtype)
    ranges = _row_ranges(R, D)
    gx = np.empty_like(g)
    # each thread sums its own rows' weight and bias gradients; the partial sums add up after
    gw = np.empty((len(ranges), D), np.float64)
    gb = np.empty((len(ranges), D), np.float64)
    run_parallel([(_layer_norm_backward_rows,
                   (g, xhat, rstd, w, weight is not None, gx, gw[i], gb[i], lo, hi))
                  for i, (lo, hi) in enumerate(ranges)])
    return gx, gw.sum(axis=0).astype(g.dtype), gb.sum(axis=0).astype(g.dtype)
# END KERNEL
