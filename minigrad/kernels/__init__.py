"""The library's one switch between readable NumPy references and fast kernels.

Every hot loop in minigrad is written twice: a NumPy reference for reading
(what the notebooks show, where the exercise fences sit) and a numba kernel
with the same signature that a test holds equal to it. Which one runs is
decided here, for the whole library at once::

    import minigrad
    minigrad.kernels.use("reference")      # every operation in NumPy, for teaching
    minigrad.kernels.use("numba")          # the fast kernels (the default)
    with minigrad.kernels.use("reference"):
        ...                                # only inside the block
    minigrad.kernels.backend()             # -> "numba" or "reference"

The environment variable ``MINIGRAD_KERNELS=reference`` sets the default at
import. This module never imports numba: a package imports its kernels
lazily, when :func:`fast` first says they are wanted.
"""

from __future__ import annotations

import os

BACKENDS = ("numba", "reference")

__all__ = ["BACKENDS", "backend", "fast", "use"]


def _initial() -> str:
    value = os.environ.get("MINIGRAD_KERNELS", "numba")
    if value not in BACKENDS:
        raise ValueError(f"MINIGRAD_KERNELS must be one of {BACKENDS}, got {value!r}")
    return value


_backend = _initial()


def backend() -> str:
    """The kernels in use: ``"numba"`` (fast) or ``"reference"`` (NumPy)."""
    return _backend


def fast() -> bool:
    """True when the fast (numba) kernels should run."""
    return _backend == "numba"


class use:
    """Switch every operation to ``backend``; as a context manager, only inside the block.

    Args:
        backend: ``"numba"`` (the fast kernels) or ``"reference"`` (NumPy).
    """

    def __init__(self, backend: str):
        global _backend
        if backend not in BACKENDS:
            raise ValueError(f"kernels.use: backend must be one of {BACKENDS}, got {backend!r}")
        self._previous = _backend
        _backend = backend

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _backend
        _backend = self._previous
        return False
