"""Running ``nogil`` numba kernels on several cores from Python threads.

A kernel compiled with ``@njit(nogil=True)`` releases the GIL while it runs,
so Python threads run calls of it truly in parallel. minigrad uses this
instead of ``parallel=True`` where the parallel loop would call large jitted
functions (flash attention's heads, the ring's segments): numba's parfor
compiles those callees a second time, tens of seconds on a cold cache.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

__all__ = ["run_parallel", "split", "split_work", "MAX_THREADS"]

# the most threads a kernel's calls are split over (the machines minigrad is timed on have 2
# cores); how much work pays for a thread is each kernel module's _MIN_PER_THREAD: below it
# the pool's hand-off costs more, and inside a training step the BLAS library's idle threads,
# spinning for ~0.1 s after every matrix product, hold the other cores anyway
MAX_THREADS = 2

_pool: ThreadPoolExecutor | None = None


def run_parallel(calls) -> list:
    """Run ``[(fn, args), ...]`` at once; their results, in order.

    The first call runs in the calling thread while the pool's threads run
    the rest (one thread each), so one call costs no hand-off at all. The
    pool is made once and grows to the largest number of calls seen.
    """
    global _pool
    (fn, args), rest = calls[0], calls[1:]
    if not rest:
        return [fn(*args)]
    if _pool is None or _pool._max_workers < len(rest):
        _pool = ThreadPoolExecutor(max_workers=len(rest), thread_name_prefix="minigrad")
    futures = [_pool.submit(f, *a) for f, a in rest]
    first = fn(*args)
    return [first] + [f.result() for f in futures]


def split(n: int, parts: int) -> list:
    """``range(n)`` cut into ``parts`` contiguous ``(lo, hi)`` pieces, as even as integers allow
    (at least one, at most ``n``): the ranges a kernel's calls take, one per thread."""
    parts = max(1, min(parts, n))
    return [(n * i // parts, n * (i + 1) // parts) for i in range(parts)]


def split_work(n: int, work_per_item: int, min_per_thread: int) -> list:
    """``range(n)`` split as the work pays: one piece per ``min_per_thread`` units of
    ``n * work_per_item``, at most :data:`MAX_THREADS` (see :func:`split`)."""
    return split(n, min(MAX_THREADS, n * work_per_item // min_per_thread))
