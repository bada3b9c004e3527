"""This machine's roofline, measured: peak FLOP/s, memory bandwidth, and where
a few NumPy operations land under it.

    peak      the best rate of a large float32 ``np.matmul`` (2 n^3 FLOPs)
    bandwidth the best rate of ``np.copyto`` of a large array (reads and writes it: 2 x bytes)

Each operation's FLOPs and bytes come from the cost model of
:mod:`minigrad.scale.roofline` (itemsize 4); its achieved rate is FLOPs / time.
An operation NumPy runs in several passes (softmax: max, subtract, exp, sum,
divide) moves more bytes than the ideal fused kernel, so it lands further below
the roof. The peak reported is the best rate seen, the points' included (on a
shared machine a burst of load can slow the peak's own matmul), so no point is
above it; likewise the bandwidth is the better of ``np.copyto`` and the add's
counted bytes per second. Timings are best-of-``repeats`` after a warm-up call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .roofline import (GPUSpec, attention_cost, elementwise_cost, layer_norm_cost, matmul_cost,
                       softmax_cost)

__all__ = ["MeasuredPoint", "best_time", "measure_peak_flops", "measure_bandwidth",
           "measure_ops", "measure_machine"]


@dataclass(frozen=True)
class MeasuredPoint:
    """One operation timed on this machine, with the FLOPs and bytes of its cost model."""

    name: str
    flops: float
    nbytes: float
    seconds: float

    @property
    def intensity(self) -> float:
        return self.flops / self.nbytes

    @property
    def achieved(self) -> float:
        """FLOP/s actually reached."""
        return self.flops / self.seconds


def best_time(fn, repeats: int = 3, min_seconds: float = 0.02) -> float:
    """Fastest timed call of ``fn()`` after one untimed warm-up call: at least ``repeats``
    calls, more while they add up to under ``min_seconds`` (a quick call gets many tries,
    so one that a busy neighbour delayed does not count)."""
    if repeats < 1:
        raise ValueError(f"best_time: repeats must be >= 1, got {repeats}")
    fn()
    best, spent, calls = float("inf"), 0.0, 0
    while calls < repeats or (spent < min_seconds and calls < 1000):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, spent, calls = min(best, dt), spent + dt, calls + 1
    return max(best, 1e-9)


def _matmul_point(n: int, rng, repeats: int) -> MeasuredPoint:
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    flops, nbytes = matmul_cost(n, n, n, itemsize=4)
    return MeasuredPoint(f"matmul {n}^3", flops, nbytes,
                         best_time(lambda: np.matmul(a, b, out=out), repeats))


def measure_peak_flops(n: int = 1024, repeats: int = 3, rng=None) -> float:
    """FLOP/s of a float32 (n, n) @ (n, n) ``np.matmul``: 2 n^3 / best time."""
    from ..tensor import get_rng

    return _matmul_point(n, rng or get_rng(), repeats).achieved


def measure_bandwidth(nbytes: int = 1 << 26, repeats: int = 3) -> float:
    """Bytes/s of ``np.copyto`` of an ``nbytes`` float32 array: it reads and writes
    every byte, 2 nbytes per copy. Use an array well beyond the caches (64 MiB)."""
    if nbytes < 4:
        raise ValueError(f"measure_bandwidth: nbytes must be >= 4, got {nbytes}")
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    return 2 * src.nbytes / best_time(lambda: np.copyto(dst, src), repeats)


def measure_ops(quick: bool = True, repeats: int = 3, rng=None) -> list:
    """Time a few operations: matmuls of three sizes, an add, a softmax, a layer norm
    and one attention head, on float32 arrays; one :class:`MeasuredPoint` each."""
    from .. import functional as F
    from ..tensor import Tensor, get_rng, no_grad

    rng = rng or get_rng()
    points = [_matmul_point(n, rng, repeats) for n in ((32, 128, 512) if quick
                                                       else (32, 128, 512, 1024))]
    n = 1 << (22 if quick else 24)                  # 16 MiB per array: beyond the caches
    x = rng.standard_normal(n, dtype=np.float32)
    y, z = rng.standard_normal(n, dtype=np.float32), np.empty(n, np.float32)
    points.append(MeasuredPoint(f"add {n:,}", *elementwise_cost(n, 4),
                                best_time(lambda: np.add(x, y, out=z), repeats)))
    rows, cols = 1024, n // 1024
    s = Tensor(x.reshape(rows, cols))
    w, b = Tensor(np.ones(cols, np.float32)), Tensor(np.zeros(cols, np.float32))
    with no_grad():
        points.append(MeasuredPoint(f"softmax {rows}x{cols}", *softmax_cost(rows, cols, 4),
                                    best_time(lambda: F.softmax(s, dim=-1), repeats)))
        points.append(MeasuredPoint(f"layer norm {rows}x{cols}", *layer_norm_cost(rows, cols, 4),
                                    best_time(lambda: F.layer_norm(s, (cols,), w, b), repeats)))
        T, D = (256, 64) if quick else (1024, 64)
        q, k, v = (Tensor(rng.standard_normal((1, 1, T, D), dtype=np.float32)) for _ in "qkv")
        points.append(MeasuredPoint(f"attention T={T} D={D}",
                                    *attention_cost(T, D, 1, itemsize=4, fused=False),
                                    best_time(lambda: F.scaled_dot_product_attention(q, k, v),
                                              repeats)))
    return points


def measure_machine(quick: bool = True, repeats: int = 3, rng=None) -> tuple:
    """(GPUSpec of this machine, measured points): peak from a float32 matmul
    (1024, or 2048 when not quick) or the best point, bandwidth from
    ``np.copyto`` of 64 MiB or the add point, whichever is higher."""
    import os

    points = measure_ops(quick, repeats, rng)
    peak = measure_peak_flops(1024 if quick else 2048, repeats, rng)
    # no operation outruns the best matmul; a point above it means load disturbed the peak
    # measurement, so the best rate seen is the peak
    peak = max([peak] + [p.achieved for p in points])
    # copyto and add both stream arrays beyond the caches; the better counted rate is the
    # bandwidth (the hardware also reads each destination line before writing it)
    streams = [p.nbytes / p.seconds for p in points if p.name.startswith("add")]
    bandwidth = max([measure_bandwidth(1 << 26, repeats)] + streams)
    try:
        memory = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        memory = float("nan")
    return GPUSpec("this machine (float32)", peak, bandwidth, memory), points
