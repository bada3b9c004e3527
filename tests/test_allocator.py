"""minigrad.allocator: freed memory stays in the process, so a step's arrays reuse pages."""

import os
import subprocess
import sys
import textwrap

import pytest

from minigrad import allocator

GLIBC = sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION") is not None


def _faults_of_rewriting(setting: str) -> tuple:
    """(minor page faults of writing three 16 MiB arrays again after freeing them, pages)."""
    code = textwrap.dedent("""
        import resource, numpy as np
        import minigrad
        def fill():
            a = np.empty(4 << 20, np.float32)      # 16 MiB
            a[:] = 1.0                              # touch every page
            return a
        for _ in range(3):                          # let the heap reach its size
            a, b, c = fill(), fill(), fill(); del a, b, c
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):                          # a step: three activations made and freed
            a, b, c = fill(), fill(), fill(); del a, b, c
        print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """)
    env = dict(os.environ, MINIGRAD_MALLOC=setting)
    env.pop("MALLOC_MMAP_THRESHOLD_", None), env.pop("MALLOC_TRIM_THRESHOLD_", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    return int(out), 5 * 3 * (16 << 20) // 4096


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's")
def test_a_freed_array_is_rewritten_without_page_faults():
    kept, pages = _faults_of_rewriting("keep")
    assert kept < 0.01 * pages, (kept, pages)
    # glibc's defaults give part of the 48 MiB back every round (its trim threshold follows
    # its mmap threshold, 2 x 16 MiB): the setting, not the loop, saves the faults
    system, _ = _faults_of_rewriting("system")
    assert system > 10 * max(kept, 100), (system, kept)
    assert allocator.keep_freed_memory() is True


def test_thresholds_are_checked_and_the_environment_setting_is_named():
    with pytest.raises(ValueError, match="mmap_threshold must be an int"):
        allocator.keep_freed_memory(mmap_threshold=-1)
    with pytest.raises(ValueError, match="trim_threshold must be an int"):
        allocator.keep_freed_memory(trim_threshold=1 << 40)
    env = dict(os.environ, MINIGRAD_MALLOC="jemalloc")
    r = subprocess.run([sys.executable, "-c", "import minigrad"], env=env, capture_output=True,
                       text=True)
    assert r.returncode != 0 and "MINIGRAD_MALLOC must be 'keep' or 'system'" in r.stderr
