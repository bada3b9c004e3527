"""Fused kernels for the elementwise and row-wise functions of a transformer step.

NumPy computes GELU and its derivative in about a dozen passes over memory
(scale, erf, add, multiply; square, scale, exp, multiply, add), each writing
a temporary as large as the activation; layer norm's forward and backward
take about as many. The numba kernels here make one pass (per row, for layer
norm), keeping the values in registers and cache, and split the work over
the cores in threads (``nogil``). For float32, GELU is one exp and one
polynomial of erfc, in float32 (a call into libm cannot run in SIMD lanes; a
polynomial runs eight values at once), good to float32's rounding. Each has a
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

from ..flash.kernels import _exp_constants, _exp_rows
from ..threads import run_parallel, split_work
from .jit import njit

__all__ = ["add_bias_reference", "add_bias_numba", "gelu_forward_reference", "gelu_forward_numba",
           "layer_norm_forward_reference", "layer_norm_forward_numba",
           "layer_norm_backward_reference", "layer_norm_backward_numba"]

_SQRT_HALF = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_MIN_PER_THREAD = 1 << 19  # values a thread must get (minigrad.threads says why)
# reassociation lets LLVM split a row's sums over SIMD lanes, as NumPy's pairwise sums do;
# NaN and inf still propagate (no nnan/ninf)
_REDUCE = {"reassoc", "contract", "nsz"}
_ELEMENTWISE = {"contract", "nsz"}  # fused multiply-adds, no reordering


def _row_ranges(rows: int, per_row: int):
    """``rows`` in contiguous ranges of whole rows, one per thread the work pays for."""
    return split_work(rows, per_row, _MIN_PER_THREAD)


# ----------------------------------------------------------------------------
# a linear layer's bias: y[r, :] += b
# ----------------------------------------------------------------------------

def add_bias_reference(y: np.ndarray, b: np.ndarray) -> None:
    """In place: y (R, C) += b (C,) on every row, NumPy's broadcast add."""
    y += b


@njit(cache=True, nogil=True, fastmath=_ELEMENTWISE)
def _add_bias_rows(y, b):
    for r in range(y.shape[0]):
        row = y[r]
        for c in range(row.size):
            row[c] += b[c]


def add_bias_numba(y: np.ndarray, b: np.ndarray) -> None:
    """numba twin of :func:`add_bias_reference` (the same additions, so the same bits): one
    loop a row, which the compiler vectorizes; NumPy's broadcast loop is about 2x slower on a
    step's (768, 128) outputs. y must be C-contiguous (R, C) and b (C,) of y's dtype."""
    _add_bias_rows(y, b)


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


# float32: one exp and one polynomial, in float32 SIMD lanes (eight values at once; a call
# into libm cannot be vectorized). With t = |x| / sqrt 2 and E = exp(-t^2) = exp(-x^2 / 2):
#   h = Phi(-|x|) = erfc(t) / 2 = E * R(w) / 2,   R = erfcx (erfc(t) e^(t^2)), w = t / (2 + t)
#   Phi(x) = h for x < 0, 1 - h for x >= 0;   phi(x) = E / sqrt(2 pi)
# E serves Phi and phi both, and h is computed directly where it is small (x < 0), so the
# left tail keeps its relative accuracy instead of being 1 - (a number near 1).
# R(w) = 1 + sum_k _ERFCX_P[k] w^k, fit_erfcx_polynomial()'s least-squares fit on t in [0, 9.4]
# (beyond, E underflows float32): good to 1e-9; in float32 to 5e-8 near t = 0 (where E ~ 1
# and it matters), 2.5e-7 where E < 1e-6.
_ERFCX_T_MAX, _ERFCX_DEGREE = 9.4, 10
_ERFCX_P = (1.0, -2.256758281181833, 1.7432393481399555, -0.274751395818256,
            -0.31091247828652385, 0.005407457056798453, 0.09423897077858952, 0.0014606395309444886,
            0.06496996668237523, -0.10283192164921573, 0.035952534449367766)
_F32 = np.float32
_GELU_C = tuple(_F32(c) for c in _ERFCX_P)
_SQRT_HALF_F32, _INV_SQRT_2PI_F32 = _F32(_SQRT_HALF), _F32(_INV_SQRT_2PI)
_GELU_CHUNK = 2048        # values per pass: an 8 KiB buffer, in L1; exp's call cost spread
_EXP_CONSTANTS = _exp_constants(np.float32)   # (coef, iproto) of chapter 4's exp, float32


def fit_erfcx_polynomial(degree: int = _ERFCX_DEGREE, t_max: float = _ERFCX_T_MAX,
                         nodes: int = 4000):
    """The coefficients of erfcx(t) ~ 1 + sum_{k >= 1} c_k w^k, w = (t / 2) / (1 + t / 2), for
    t in [0, t_max]: least squares at ``nodes`` Chebyshev points in w, the constant held at
    erfcx(0) = 1 (so Phi(0) = 1/2 exactly). Returns c_0 = 1, c_1, ..., c_degree (_ERFCX_P)."""
    from scipy.special import erfcx

    w_max = 1.0 - 1.0 / (1.0 + 0.5 * t_max)
    w = w_max * 0.5 * (1 - np.cos(np.pi * (np.arange(nodes) + 0.5) / nodes))
    t = 2.0 * w / (1.0 - w)
    basis = np.vander(w, degree + 1, increasing=True)[:, 1:]
    return np.concatenate([[1.0], np.linalg.lstsq(basis, erfcx(t) - 1.0, rcond=None)[0]])


# error_model="numpy": a float division by zero gives inf instead of raising, so the loop has
# no branch to check for it and vectorizes (the divisor here is >= 1 anyway)
@njit(cache=True, nogil=True, fastmath=_ELEMENTWISE, error_model="numpy")
def _gelu_from_exp(x, E, out, slope):
    """y = x Phi(x) and dy/dx = Phi(x) + x phi(x) from E = exp(-x^2 / 2), for each x."""
    c = _GELU_C
    for i in range(x.size):
        v = x[i]
        t = abs(v) * _SQRT_HALF_F32
        t = t if t < _F32(16) else _F32(16)                   # inf / inf would be NaN; E = 0 there
        w = _F32(0.5) * t / (_F32(1) + _F32(0.5) * t)          # in [0, 1): small near 0
        r = c[10] * w + c[9]
        r = r * w + c[8]
        r = r * w + c[7]
        r = r * w + c[6]
        r = r * w + c[5]
        r = r * w + c[4]
        r = r * w + c[3]
        r = r * w + c[2]
        r = r * w + c[1]
        h = _F32(0.5) * E[i] * (r * w + c[0])                 # Phi(-|x|); 1/2 at x = 0
        cdf = h if v < _F32(0) else _F32(1) - h               # NaN: 1 - NaN = NaN
        out[i] = v * cdf                                      # x = inf: inf * 1
        slope[i] = cdf + v * (E[i] * _INV_SQRT_2PI_F32)      # x = +-inf: inf * 0 = NaN


@njit(cache=True, nogil=True)
def _gelu_forward_range_f32(x, out, slope, lo, hi, coef, iproto):
    """x[lo:hi] in chunks of _GELU_CHUNK: E = exp(-x^2 / 2) by chapter 4's vectorized exp
    (:func:`minigrad.flash.kernels._exp_rows`, constants ``coef``, ``iproto``), then GELU
    from it: passes that each vectorize, over a buffer that stays in L1."""
    buf = np.empty(_GELU_CHUNK, np.float32)
    zero, total = np.zeros(1, np.float32), np.empty(1, np.float32)
    for c0 in range(lo, hi, _GELU_CHUNK):
        xs = x[c0:min(c0 + _GELU_CHUNK, hi)]
        E = buf[:xs.size]
        for i in range(xs.size):
            E[i] = _F32(-0.5) * xs[i] * xs[i]
        _exp_rows(E.reshape((1, E.size)), zero, coef, iproto, total)  # exp(-x^2 / 2); -inf -> 0
        _gelu_from_exp(xs, E, out[c0:c0 + xs.size], slope[c0:c0 + xs.size])


def gelu_forward_numba(x: np.ndarray):
    flat = np.ascontiguousarray(x).reshape(-1)
    out, slope = np.empty_like(flat), np.empty_like(flat)
    if flat.dtype == np.float32:
        kernel, constants = _gelu_forward_range_f32, _EXP_CONSTANTS
    else:
        kernel, constants = _gelu_forward_range, ()
    run_parallel([(kernel, (flat, out, slope, lo, hi, *constants))
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
    """sum_j (x[r, j] - k) and sum_j (x[r, j] - k)^2, in float64 (SIMD lanes: reassoc).
    The difference is taken in float64 too: in float32, 1e19 - (-1e19) squared overflows.
    (np.float64, not float(): numba's float() of a float32 stays float32.)"""
    s = 0.0
    ss = 0.0
    k = np.float64(k)
    for j in range(x.shape[1]):
        d = np.float64(x[r, j]) - k
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
