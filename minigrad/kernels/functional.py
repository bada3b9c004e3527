"""Fused kernels for the elementwise and row-wise functions of a transformer step.

NumPy computes GELU and its derivative in about a dozen passes over memory
(scale, erf, add, multiply; square, scale, exp, multiply, add), each writing
a temporary as large as the activation; layer norm's forward and backward
take about as many. The numba kernels here make one pass (per row, for layer
norm), keeping the values in registers and cache, and split the work over
the cores in threads (``nogil``). For float32, GELU's erf and exp are
polynomials (a call into libm cannot run in SIMD lanes; a polynomial runs
eight values at once), good to float32's rounding. Each has a
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

from ..threads import run_parallel, split

__all__ = ["gelu_forward_reference", "gelu_forward_numba",
           "layer_norm_forward_reference", "layer_norm_forward_numba",
           "layer_norm_backward_reference", "layer_norm_backward_numba"]

_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
# below this many values one thread wins: the pool's hand-off, and inside a training step the
# BLAS threads still spinning after the last matrix multiply, which take the other cores
_MIN_PER_THREAD = 1 << 19
_THREADS = 2
# reassociation lets LLVM split a row's sums over SIMD lanes, as NumPy's pairwise sums do;
# NaN and inf still propagate (no nnan/ninf)
_REDUCE = {"reassoc", "contract", "nsz"}
_ELEMENTWISE = {"contract", "nsz"}  # fused multiply-adds, no reordering


def _row_ranges(rows: int, per_row: int):
    """Split ``rows`` into at most _THREADS contiguous ranges of whole rows."""
    return split(rows, min(_THREADS, rows * per_row // _MIN_PER_THREAD))


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
    # float64 (and any dtype but float32): libm's erf and exp, one value at a time
    half, one = x.dtype.type(0.5), x.dtype.type(1.0)
    sqrt_half, inv_sqrt_2pi = x.dtype.type(_SQRT_HALF), x.dtype.type(_INV_SQRT_2PI)
    xb, ob, sb = x[lo:hi], out[lo:hi], slope[lo:hi]  # block views indexed from 0
    for i in range(xb.size):
        v = xb[i]
        cdf = half * (one + math.erf(v * sqrt_half))
        ob[i] = v * cdf
        sb[i] = cdf + v * math.exp(-half * v * v) * inv_sqrt_2pi


# float32: erf and exp written as polynomials, so that LLVM runs 8 values at once in SIMD
# lanes (a call into libm cannot be vectorized). Both are evaluated in float64 and are good
# to ~1e-8, below float32's rounding.
#
# erf(t) = t * P((t / 4)^2) on 0 <= t <= 4, and 1 beyond (erf(4) = 1 - 1.5e-8): the
# coefficients of P, lowest first, are fit_erf_polynomial()'s least-squares fit.
_ERF_T_MAX = 4.0
_ERF_P = (1.1283791238789276, -6.018011682683041, 28.88578893722415, -110.02136763036276,
          341.95949171860786, -891.8417671174824, 1987.5855031290203, -3812.02484959023,
          6264.881009819926, -8697.661489925229, 9981.075196019148, -9211.373413501591,
          6610.291486949273, -3528.9893824373507, 1312.0805509433942, -302.02866501631956,
          32.32154025839098)


def fit_erf_polynomial(degree: int = 16, t_max: float = _ERF_T_MAX, nodes: int = 2000):
    """The coefficients c_0..c_degree of erf(t) ~ t * sum_k c_k (t / t_max)^(2k) on
    [0, t_max]: least squares at ``nodes`` Chebyshev points (where _ERF_P came from)."""
    from scipy.special import erf

    t = t_max * 0.5 * (1 - np.cos(np.pi * (np.arange(nodes) + 0.5) / nodes))
    basis = np.vander((t / t_max) ** 2, degree + 1, increasing=True) * t[:, None]
    return np.linalg.lstsq(basis, erf(t), rcond=None)[0]


@njit(cache=True, nogil=True, inline="always")
def _erf_poly(s):
    """sum_k _ERF_P[k] s^k by Horner's rule, written out so that it stays in registers."""
    c = _ERF_P
    p = c[16] * s + c[15]
    p = p * s + c[14]
    p = p * s + c[13]
    p = p * s + c[12]
    p = p * s + c[11]
    p = p * s + c[10]
    p = p * s + c[9]
    p = p * s + c[8]
    p = p * s + c[7]
    p = p * s + c[6]
    p = p * s + c[5]
    p = p * s + c[4]
    p = p * s + c[3]
    p = p * s + c[2]
    p = p * s + c[1]
    return p * s + c[0]


@njit(cache=True, nogil=True, inline="always")
def _exp_neg(u):
    """exp(-u) for 0 <= u <= 50 as exp(-u / 256)^256: a degree-8 Taylor series of the
    small exponent (|u / 256| < 0.2), then eight squarings (relative error < 1e-9)."""
    w = -u * (1.0 / 256.0)
    q = 1.0 + w * (1.0 + w * (1.0 / 2 + w * (1.0 / 6 + w * (1.0 / 24 + w * (
        1.0 / 120 + w * (1.0 / 720 + w * (1.0 / 5040 + w * (1.0 / 40320))))))))
    q = q * q
    q = q * q
    q = q * q
    q = q * q
    q = q * q
    q = q * q
    q = q * q
    return q * q


@njit(cache=True, nogil=True, fastmath=_ELEMENTWISE)
def _gelu_forward_range_f32(x, out, slope, lo, hi):
    xb, ob, sb = x[lo:hi], out[lo:hi], slope[lo:hi]
    for i in range(xb.size):
        v = np.float64(xb[i])
        t = abs(v) * _SQRT_HALF                      # Phi(v) = (1 + erf(v / sqrt 2)) / 2
        tc = _ERF_T_MAX if t > _ERF_T_MAX else t     # NaN stays NaN (the comparison is False)
        e = tc * _erf_poly(tc * tc * (1.0 / (_ERF_T_MAX * _ERF_T_MAX)))
        e = 1.0 if t >= _ERF_T_MAX else e
        cdf = 0.5 + 0.5 * (-e if v < 0.0 else e)
        vv = v * v                                   # v phi(v) is below 1e-21 past |v| = 10
        vpdf = v * _exp_neg(0.5 * vv) * _INV_SQRT_2PI if vv <= 100.0 else 0.0 * v  # inf: nan
        ob[i] = v * cdf
        sb[i] = cdf + vpdf


def gelu_forward_numba(x: np.ndarray):
    flat = np.ascontiguousarray(x).reshape(-1)
    out, slope = np.empty_like(flat), np.empty_like(flat)
    kernel = _gelu_forward_range_f32 if flat.dtype == np.float32 else _gelu_forward_range
    run_parallel([(kernel, (flat, out, slope, lo, hi))
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
def _shifted_sums(x, r, k):
    """sum_j (x[r, j] - k) and sum_j (x[r, j] - k)^2, in float64 (SIMD lanes: reassoc)."""
    s = 0.0
    ss = 0.0
    for j in range(x.shape[1]):
        d = x[r, j] - k
        s += d
        ss += d * d
    return s, ss


@njit(cache=True, nogil=True, fastmath=_ELEMENTWISE)
def _layer_norm_forward_rows(x, eps, weight, bias, y, xhat, rstd, lo, hi):
    # the sums are of the row minus its first value k, so that a row far from zero loses
    # nothing to cancellation; the elementwise work is in the row's own precision (and not
    # reassociated: (x - k) - mean must not become x - (k + mean))
    D = x.shape[1]
    for r in range(lo, hi):
        k = x[r, 0]
        s, ss = _shifted_sums(x, r, k)
        ms = s / D                                   # mean - k
        inv = 1.0 / math.sqrt(max(ss / D - ms * ms, 0.0) + eps)
        rstd[r, 0] = inv
        m, i = x.dtype.type(ms), x.dtype.type(inv)
        for j in range(D):
            v = ((x[r, j] - k) - m) * i
            xhat[r, j] = v
            y[r, j] = v * weight[j] + bias[j]


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
def _weighted_sums(g, xhat, weight, r):
    """sum_j gh_j and sum_j gh_j xhat[r, j], gh = g[r] * weight, in float64."""
    s1 = 0.0
    s2 = 0.0
    for j in range(g.shape[1]):
        gh = g[r, j] * weight[j]
        s1 += gh
        s2 += gh * xhat[r, j]
    return s1, s2


@njit(cache=True, nogil=True, fastmath=_ELEMENTWISE)
def _layer_norm_backward_rows(g, xhat, rstd, weight, gx, gw, gb, lo, hi):
    D = g.shape[1]
    for j in range(D):
        gw[j] = 0.0
        gb[j] = 0.0
    for r in range(lo, hi):
        s1, s2 = _weighted_sums(g, xhat, weight, r)
        for j in range(D):
            gw[j] += g[r, j] * xhat[r, j]
            gb[j] += g[r, j]
        m1, m2, inv = g.dtype.type(s1 / D), g.dtype.type(s2 / D), rstd[r, 0]
        for j in range(D):
            gx[r, j] = inv * (g[r, j] * weight[j] - m1 - xhat[r, j] * m2)


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
                   (g, xhat, rstd, w, gx, gw[i], gb[i], lo, hi))
                  for i, (lo, hi) in enumerate(ranges)])
    return gx, gw.sum(axis=0).astype(g.dtype), gb.sum(axis=0).astype(g.dtype)
# END KERNEL
