"""A simulated timeline of tile loads and tile computes, with and without overlap.

Each tile of the inner loop needs its K_j, V_j blocks copied from HBM into
SRAM (a *load*) before its matrix multiplies and exp run (a *compute*).
Run one after the other, the compute units idle during every load. With two
SRAM buffers, the copy engine loads tile j+1 while tile j is computed, so
the slower of the two sets the pace. FlashAttention-3 (Shah et al. 2024)
does this on Hopper GPUs with asynchronous copies (TMA) and warp
specialization: producer warps load, consumer warps compute.

Times come from bytes / bandwidth and flops / throughput, so the same
model answers "what if HBM were twice as fast?".
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Timeline", "tile_times", "simulate", "total_time"]


class Timeline(NamedTuple):
    """Events as (lane, start, duration, kind, label), and the finishing time."""

    events: list
    total: float
    overlap: bool


def tile_times(block_q: int, block_k: int, d: int, itemsize: int = 2,
               hbm_bandwidth: float = 2.0e12, flops: float = 300e12) -> tuple:
    """(load seconds, compute seconds) of one tile of the q_outer forward.

    load: K_j and V_j, 2 * block_k * d * itemsize bytes at ``hbm_bandwidth``
    (bytes/s). compute: S = Q_i K_j^T and P V_j, 2 * 2 * block_q * block_k * d
    flops at ``flops`` per second. Defaults are roughly an H100's fp16.
    """
    if min(block_q, block_k, d) < 1:
        raise ValueError(f"tile_times: block_q, block_k, d must be >= 1, got "
                         f"{block_q}, {block_k}, {d}")
    load = 2 * block_k * d * itemsize / hbm_bandwidth
    compute = 4 * block_q * block_k * d / flops
    return load, compute


def simulate(n_tiles: int, load_time: float, compute_time: float, overlap: bool) -> Timeline:
    """Schedule ``n_tiles`` loads and computes on two lanes, "load" and "compute".

    Without overlap: load 0, compute 0, load 1, compute 1, ...
    With overlap (two buffers): load j+1 starts when load j ends and buffer
    (j+1) % 2 is free (compute j-1 done); compute j starts when load j and
    compute j-1 are done.
    """
    if n_tiles < 1:
        raise ValueError(f"simulate: n_tiles must be >= 1, got {n_tiles}")
    if load_time < 0 or compute_time < 0:
        raise ValueError(f"simulate: times must be >= 0, got load {load_time}, "
                         f"compute {compute_time}")
    events = []
    load_end = compute_end = 0.0
    compute_ends = []
    for j in range(n_tiles):
        if overlap:
            buffer_free = compute_ends[j - 2] if j >= 2 else 0.0   # the compute that used this buffer
            load_start = max(load_end, buffer_free)
        else:
            load_start = compute_end
        load_end = load_start + load_time
        compute_start = max(load_end, compute_end)
        compute_end = compute_start + compute_time
        compute_ends.append(compute_end)
        events.append(("load", load_start, load_time, "load K_j, V_j", str(j)))
        events.append(("compute", compute_start, compute_time, "compute tile", str(j)))
    return Timeline(events, compute_end, overlap)


def total_time(n_tiles: int, load_time: float, compute_time: float, overlap: bool) -> float:
    """Closed form of :func:`simulate`'s finishing time.

    no overlap: n (t_load + t_compute)
    overlap:    t_load + (n - 1) max(t_load, t_compute) + t_compute
    """
    if not overlap:
        return n_tiles * (load_time + compute_time)
    return load_time + (n_tiles - 1) * max(load_time, compute_time) + compute_time
