"""Stochastic rounding: round up with probability equal to the fraction.

Between the two neighbours lo <= x <= hi of a grid (integers, or the values
of a float format),

    round(x) = hi with probability (x - lo) / (hi - lo), else lo,

so E[round(x)] = x: the rounding error averages out instead of piling up.
Nearest rounding is biased for a value that is repeatedly nudged: a weight
w stored in bfloat16 (8 significant bits) receiving updates smaller than
half the spacing around w is rounded back to w every step and never moves;
stochastic rounding moves it by the right amount on average. Reference:
Gupta et al. 2015, "Deep Learning with Limited Numerical Precision".
"""

from __future__ import annotations

import numpy as np

from ..kernels import fast as fast_kernels
from ..tensor import get_rng
from ._checks import as_float_array

__all__ = ["stochastic_round", "round_nearest", "accumulate_updates", "FORMATS"]

FORMATS = ("int", "float16", "bfloat16")


def _check_format(dtype, fn):
    if dtype not in FORMATS:
        raise ValueError(f"{fn}: dtype must be one of {FORMATS}, got {dtype!r}")


def _bfloat16_bits(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)


def round_nearest(x, dtype: str = "int") -> np.ndarray:
    """Round to nearest, ties to even, on the grid of ``dtype`` (the deterministic baseline).

    "int" keeps ``x``'s float dtype; "float16" returns float16 (beyond its largest
    finite value, 65504, IEEE rounding gives +-inf: an answer, not a warning);
    "bfloat16" returns float32 arrays whose low 16 bits are zero (NumPy has no bfloat16).
    """
    x = as_float_array(x, "round_nearest")
    _check_format(dtype, "round_nearest")
    if dtype == "int":
        return np.rint(x)
    if dtype == "float16":
        with np.errstate(over="ignore"):
            return x.astype(np.float16)
    from ..precision import round_to      # chapter 5: one home for rounding to a format

    return np.asarray(round_to(x, "bfloat16"), dtype=np.float32)


def stochastic_round(x, dtype: str = "int", rng=None) -> np.ndarray:
    """Unbiased random rounding of ``x`` to the grid of ``dtype``.

    Args:
        x: float array, any shape.
        dtype: "int" (to integers, result in ``x``'s float dtype), "float16"
            (result float16) or "bfloat16" (float32 holding bfloat16 values).
            Beyond the format's largest finite value the result is inf where
            round-to-nearest gives inf (not a saturated max): see
            :func:`_stochastic_round_float`.
        rng: a ``np.random.Generator``; None means :func:`minigrad.get_rng`.
    Returns:
        array of ``x``'s shape; E[result] = x for values inside the format's range.
    """
    fn = "stochastic_round"
    x = as_float_array(x, fn)
    _check_format(dtype, fn)
    rng = get_rng() if rng is None else rng
    if dtype == "int":
        u = rng.random(x.size).reshape(x.shape)     # U[0, 1), float64, one per value
        if fast_kernels():                          # numba, tested equal to the lines below
            from . import kernels

            out = np.empty(x.size, x.dtype)
            kernels.FAST["stochastic_round"](np.ascontiguousarray(x).reshape(-1), u.reshape(-1), out)
            return out.reshape(x.shape)
        # BEGIN SOLUTION ch6.stochastic_round
        lo = np.floor(x)
        # up where u < frac(x): probability frac(x); x - floor(x) is exact, floor(x + u) is not
        return (lo + (u < (x.astype(np.float64) - lo))).astype(x.dtype)
        # END SOLUTION
    if dtype == "bfloat16" and x.dtype == np.float32:
        # bfloat16 keeps the top 16 bits of a float32. Adding a uniform integer in
        # [0, 2^16) to the bits carries into the kept part with probability
        # (dropped bits) / 2^16, exactly the fraction of the way to the next value
        # (a carry out of the largest finite value reaches the exponent of inf).
        b = _bfloat16_bits(x)
        r = rng.integers(0, 1 << 16, size=b.shape, dtype=np.uint32)
        return ((b + r) & np.uint32(0xFFFF0000)).view(np.float32).reshape(x.shape)
    out = _stochastic_round_float(x, dtype, rng.random(x.shape))
    return out.astype(np.float16) if dtype == "float16" else out.astype(np.float32)


def _stochastic_round_float(x: np.ndarray, dtype: str, u: np.ndarray) -> np.ndarray:
    """Stochastic rounding of ``x`` onto the grid of ``dtype``, every step exact in float64.

    The magnitude a = |x| lies between lo = floor(a / quantum) * quantum and
    hi = lo + quantum, quantum = 2^(max(e, emin) - m) the spacing of its binade;
    hi is taken where u < (a - lo) / quantum. Beyond the largest finite value the
    next grid point, 2^(emax + 1), is inf: a value between max and 2^(emax + 1) becomes
    inf with probability (a - max) / quantum, and anything from 2^(emax + 1) up is inf,
    as round-to-nearest makes it (fp16: 1e6 -> inf, never a silent 65504).
    """
    from ..precision.format import get_format

    f = get_format(dtype, "stochastic_round")
    a = np.abs(x.astype(np.float64))
    _, E = np.frexp(a)                                   # a = frac * 2^E, frac in [0.5, 1)
    quantum = np.ldexp(1.0, np.maximum(E - 1, f.min_exp) - f.mantissa_bits)
    lo = np.floor(a / quantum) * quantum
    r = np.where(u < (a - lo) / quantum, lo + quantum, lo)
    r = np.where(r > f.max, np.inf, r)
    return np.copysign(r, x)                            # copysign keeps -0.0


def accumulate_updates(w0: float = 1.0, update: float = 1e-4, steps: int = 1000,
                       dtype: str = "bfloat16", rounding: str = "nearest", n: int = 1,
                       rng=None) -> np.ndarray:
    """Add ``update`` to weights stored in ``dtype`` for ``steps`` steps, rounding each step.

    The exact result after k steps is w0 + k * update. With nearest rounding
    an update below half the spacing of ``dtype`` around w0 is lost every
    step; with stochastic rounding the stored weight follows the exact line
    on average.

    Args:
        w0, update: start value and per-step increment.
        steps: number of updates.  n: independent weights (to average over).
        dtype: "float16" or "bfloat16" (the storage format).
        rounding: "nearest" or "stochastic".
    Returns:
        (steps + 1, n) float64 trajectory of the stored weights.
    """
    if dtype not in ("float16", "bfloat16"):
        raise ValueError(f"accumulate_updates: dtype must be 'float16' or 'bfloat16', got {dtype!r}")
    if rounding not in ("nearest", "stochastic"):
        raise ValueError(f"accumulate_updates: rounding must be 'nearest' or 'stochastic', "
                         f"got {rounding!r}")
    if steps < 0 or n < 1:
        raise ValueError(f"accumulate_updates: need steps >= 0 and n >= 1, got {steps}, {n}")
    rng = get_rng() if rng is None else rng
    w = round_nearest(np.full(n, w0, np.float32), dtype)
    traj = np.empty((steps + 1, n))
    traj[0] = w
    for k in range(1, steps + 1):
        # float32 (spacing 1.2e-7 near 1) keeps the increment; storing back in dtype rounds
        s = w.astype(np.float32) + np.float32(update)
        w = stochastic_round(s, dtype, rng) if rounding == "stochastic" else round_nearest(s, dtype)
        traj[k] = w
    return traj
