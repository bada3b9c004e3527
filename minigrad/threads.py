"""Running ``nogil`` numba kernels on several cores from Python threads.

A kernel compiled with ``@njit(nogil=True)`` releases the GIL while it runs,
so Python threads run calls of it truly in parallel. minigrad uses this
instead of ``parallel=True`` where the parallel loop would call large jitted
functions (flash attention's heads, the ring's segments): numba's parfor
compiles those callees a second time, tens of seconds on a cold cache.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

__all__ = ["run_parallel"]

_pool: ThreadPoolExecutor | None = None


def run_parallel(calls) -> list:
    """Run ``[(fn, args), ...]`` at once, one thread each; their results, in order.

    One call runs in the calling thread. The pool is made once and grows to
    the largest number of calls seen.
    """
    global _pool
    if len(calls) == 1:
        fn, args = calls[0]
        return [fn(*args)]
    if _pool is None or _pool._max_workers < len(calls):
        _pool = ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="minigrad")
    futures = [_pool.submit(fn, *args) for fn, args in calls]
    return [f.result() for f in futures]
