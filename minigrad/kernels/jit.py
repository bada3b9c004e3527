"""numba's ``njit``, with every minigrad kernel's on-disk cache keyed by all kernel sources.

``@njit(cache=True)`` saves a kernel's machine code beside its source and
reuses it while that one file is unchanged. A kernel that calls a kernel of
another file (attention's softmax calls chapter 4's exp, in
``minigrad/flash/kernels.py``) has the callee compiled into it, so after an
edit to the callee's file alone, numba would go on running the old machine
code: a student who fills in an exercise fence there, or anyone after a
``git pull``, could see the old numbers (or zeros). Importing ``njit`` from
here instead keys the cache of every kernel under the package by one hash of
all its kernel files (the ``.py`` files that mention numba): any edit to any
of them recompiles every kernel once, and nothing stale runs.

Kernels outside the package, and numba's own defaults, are left alone.
This module imports numba; :mod:`minigrad.kernels` itself does not.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numba
from numba import njit, prange
from numba.core import caching

__all__ = ["njit", "prange", "numba", "kernel_files", "kernel_sources_stamp", "key_caches_by_sources"]

PACKAGE = Path(__file__).resolve().parent.parent

_files: dict = {}
_stamps: dict = {}


def kernel_files(root=PACKAGE) -> list:
    """The ``.py`` files under ``root`` that mention numba (found once per process)."""
    root = Path(root)
    if root not in _files:
        _files[root] = [f for f in sorted(root.rglob("*.py")) if b"numba" in f.read_bytes()]
    return _files[root]


def kernel_sources_stamp(root=PACKAGE) -> str:
    """One SHA-256 of the path and bytes of every file of :func:`kernel_files`.

    Read again only when one of them changes size or modification time, so an edit
    followed by ``importlib.reload`` is seen, as numba sees an edit to a kernel's own file.
    """
    root = Path(root)
    files = kernel_files(root)
    key = (root, tuple((s.st_mtime_ns, s.st_size) for s in map(Path.stat, files)))
    if key not in _stamps:
        h = hashlib.sha256()
        for f in files:
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
        _stamps[key] = h.hexdigest()
    return _stamps[key]


def _numba_class(*names):
    for name in names:            # numba >= 0.60 dropped the leading underscores
        if hasattr(caching, name):
            return getattr(caching, name)
    raise ImportError(f"numba.core.caching has none of {names}")


def key_caches_by_sources(root) -> list:
    """Put locators first in numba's list that key the caches of kernels under ``root`` by
    :func:`kernel_sources_stamp` (same cache folders as numba's own). Returns them, so a
    caller can take them out again."""
    root = Path(root).resolve()

    def keyed(base):
        class Locator(base):
            @classmethod
            def from_function(cls, py_func, py_file):
                if not Path(py_file).resolve().is_relative_to(root):
                    return None
                return super().from_function(py_func, py_file)

            def get_source_stamp(self):
                return kernel_sources_stamp(root)

        Locator.__name__ = Locator.__qualname__ = f"SourcesKeyed{base.__name__.lstrip('_')}"
        return Locator

    bases = [_numba_class("UserProvidedCacheLocator", "_UserProvidedCacheLocator"),
             _numba_class("InTreeCacheLocator", "_InTreeCacheLocator"),
             _numba_class("UserWideCacheLocator", "_UserWideCacheLocator")]
    locators = [keyed(b) for b in bases]
    impl = _numba_class("CacheImpl", "_CacheImpl")
    impl._locator_classes = locators + list(impl._locator_classes)
    return locators


def _install():
    impl = _numba_class("CacheImpl", "_CacheImpl")
    if not any(getattr(c, "_minigrad", False) for c in impl._locator_classes):
        for c in key_caches_by_sources(PACKAGE):
            c._minigrad = True


_install()
