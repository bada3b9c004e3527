"""Timing and table printing shared by the benchmarks."""

from __future__ import annotations

import gc
import time


def best_of(fn, repeat: int = 7, number: int = 1, warmup: int = 2) -> float:
    """Best wall time of ``number`` calls of ``fn``, over ``repeat`` tries, in seconds per call.

    The minimum is the least noisy estimate on a shared machine: noise only
    ever adds time. Warm-up calls fill caches, JIT-compile numba kernels and
    fault in freshly allocated pages before anything is timed.
    """
    for _ in range(warmup):
        fn()
    best = float("inf")
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            best = min(best, (time.perf_counter() - t0) / number)
    finally:
        if gc_was:
            gc.enable()
    return best


def interleaved_best(fns: dict, rounds: int) -> dict:
    """Best wall time (s) of each of ``fns`` (name -> no-argument function), timing them in
    turn in every round, so a neighbour's load hits all of them alike. One warm-up call
    each first (numba compile or cache load, page faults); garbage collection off."""
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, float("inf"))
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - t0)
    finally:
        if gc_was:
            gc.enable()
    return best


_torch_threads_set = False


def torch_or_none():
    """PyTorch if installed (an optional comparison, never a dependency), on 2 threads the
    first time it is asked for; a thread count a benchmark sets afterwards is kept."""
    global _torch_threads_set
    try:
        import torch
    except ImportError:
        return None
    if not _torch_threads_set:
        torch.set_num_threads(2)
        _torch_threads_set = True
    return torch


def print_table(title: str, headers, rows, file=None) -> str:
    """Print a plain-text table (and return it) with right-aligned numeric columns."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(cells[0], widths)),
             "  ".join("-" * w for w in widths)]
    for r in cells[1:]:
        lines.append("  ".join(c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(r, widths)))
    text = "\n".join(lines)
    print(text, file=file, flush=True)
    return text


def _fmt(c) -> str:
    if isinstance(c, float):
        if c == 0:
            return "0"
        return f"{c:.3g}" if abs(c) < 1000 else f"{c:,.0f}"
    return "-" if c is None else str(c)


def _numeric(s: str) -> bool:
    try:
        float(s.replace(",", "").rstrip("x%"))
        return True
    except ValueError:
        return False
