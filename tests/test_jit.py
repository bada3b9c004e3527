"""minigrad.kernels.jit: no kernel runs stale machine code after an edit to a kernel it calls.

numba keys a cached kernel by its own file; a kernel that calls one in another
file has that callee compiled into it. The test builds that case in a folder
of its own: with numba's keying the caller would keep returning the callee's
old value (it does, as of numba 0.68); keyed by all kernel sources it recompiles.
"""

import importlib
import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba")
from numba.core import caching  # noqa: E402
from numba.core.dispatcher import Dispatcher  # noqa: E402

from minigrad.kernels import jit  # noqa: E402

CALLEE = "from numba import njit\n\n@njit(cache=True)\ndef g():\n    return {}\n"
CALLER = "from numba import njit\nfrom callee import g\n\n@njit(cache=True)\ndef f():\n    return g()\n"
IMPL = caching.CacheImpl if hasattr(caching, "CacheImpl") else caching._CacheImpl


def _fresh_f(folder):
    """Import ``caller`` anew, as a new process would, and return its kernel ``f``."""
    for name in ("callee", "caller"):
        sys.modules.pop(name, None)
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module("caller").f
    finally:
        sys.path.remove(str(folder))


def test_an_edit_to_a_callees_file_recompiles_its_caller(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    (tmp_path / "callee.py").write_text(CALLEE.format(1))
    (tmp_path / "caller.py").write_text(CALLER)
    monkeypatch.setattr(IMPL, "_locator_classes", list(IMPL._locator_classes))
    jit.key_caches_by_sources(tmp_path)

    f = _fresh_f(tmp_path)
    assert f() == 1 and sum(f.stats.cache_misses.values()) == 1       # compiled and saved
    f = _fresh_f(tmp_path)
    assert f() == 1 and sum(f.stats.cache_hits.values()) == 1         # unchanged: loaded
    (tmp_path / "callee.py").write_text(CALLEE.format(20))
    f = _fresh_f(tmp_path)
    assert f() == 20 and sum(f.stats.cache_misses.values()) == 1      # the callee moved
    f = _fresh_f(tmp_path)
    assert f() == 20 and sum(f.stats.cache_hits.values()) == 1        # and is cached again


def test_kernels_outside_the_keyed_folder_keep_numbas_keying(tmp_path, monkeypatch):
    monkeypatch.setattr(IMPL, "_locator_classes", list(IMPL._locator_classes))
    keyed = jit.key_caches_by_sources(tmp_path / "elsewhere")
    (tmp_path / "callee.py").write_text(CALLEE.format(3))
    (tmp_path / "caller.py").write_text(CALLER)
    f = _fresh_f(tmp_path)
    assert f() == 3 and type(f._cache._impl.locator) not in keyed


def test_every_minigrad_kernel_is_keyed_by_all_kernel_sources():
    import minigrad.distributed.kernels as dk
    modules = [importlib.import_module(f"minigrad.{m}") for m in
               ("kernels.attention", "kernels.cross_entropy", "kernels.embedding",
                "kernels.functional", "kernels.optim", "flash.kernels", "quant.kernels")]
    dispatchers = [v for m in modules for v in vars(m).values() if isinstance(v, Dispatcher)]
    dispatchers += list(dk._jit().values())
    assert len(dispatchers) > 40
    stamp = jit.kernel_sources_stamp()
    for d in dispatchers:
        if d._cache.__class__.__name__ == "NullCache":        # cache=False: nothing on disk
            continue
        locator = d._cache._impl.locator
        assert type(locator).__name__.startswith("SourcesKeyed"), d.py_func.__qualname__
        assert locator.get_source_stamp() == stamp


def test_kernel_files_take_njit_from_minigrad_kernels_jit():
    package = Path(jit.__file__).parent.parent
    direct = [str(f.relative_to(package)) for f in package.rglob("*.py") if f.name != "jit.py"
              and re.search(r"^\s*from numba import .*\b(njit|jit)\b", f.read_text(), re.M)]
    assert direct == [], f"import njit from minigrad.kernels.jit instead: {direct}"


def test_the_stamp_moves_with_any_kernel_file(tmp_path):
    (tmp_path / "a.py").write_text("import numba\nX = 1\n")
    (tmp_path / "b.py").write_text("X = 1  # no kernels here\n")
    first = jit.kernel_sources_stamp(tmp_path)
    assert jit.kernel_sources_stamp(tmp_path) == first
    (tmp_path / "b.py").write_text("X = 22  # still no kernels\n")
    assert jit.kernel_sources_stamp(tmp_path) == first
    (tmp_path / "a.py").write_text("import numba\nX = 22\n")
    assert jit.kernel_sources_stamp(tmp_path) != first
