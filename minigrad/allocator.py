"""Keep freed memory in the process, for the next step to reuse.

A training step allocates and frees the same large arrays every step:
activations, their gradients, the temporaries of each op. glibc's malloc
serves an array above its mmap threshold (dynamic, from 128 KiB) with fresh
pages from the kernel, and gives the top of its heap back to the kernel once
more than its trim threshold lies free there. So a step that frees a few MB of
activations returns them, and the next step pays a page fault for every 4 KiB
it writes again: about 15% of a TinyGPT step on a 2-core machine
(``benchmarks/bench_gpt.py``), spent in the kernel and not in the math.

PyTorch's GPU caching allocator exists for the same reason. Here the fix is
two of glibc's own settings, made at ``import minigrad``:

    M_MMAP_THRESHOLD = 32 MiB    arrays up to 32 MiB come from the heap
    M_TRIM_THRESHOLD = 256 MiB   the heap keeps up to 256 MiB free at its top

The process's resident memory then stays near its peak instead of falling
between steps (what :mod:`minigrad.memory` measures, through tracemalloc, is
unchanged). ``MINIGRAD_MALLOC=system`` leaves glibc's defaults; on other C
libraries (macOS, Windows, musl) nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["keep_freed_memory", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


def keep_freed_memory(mmap_threshold: int = MMAP_THRESHOLD,
                      trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Set glibc's mmap and trim thresholds (bytes); True if this C library took them."""
    for name, value in (("mmap_threshold", mmap_threshold), ("trim_threshold", trim_threshold)):
        if not isinstance(value, int) or not 0 <= value < 1 << 31:
            raise ValueError(f"keep_freed_memory: {name} must be an int in [0, 2**31), "
                             f"got {value!r}")
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc: its own allocator, its own policy
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))


def _at_import() -> None:
    setting = os.environ.get("MINIGRAD_MALLOC", "keep")
    if setting not in ("keep", "system"):
        raise ValueError(f"MINIGRAD_MALLOC must be 'keep' or 'system', got {setting!r}")
    if setting == "keep":
        keep_freed_memory()
