"""The plain value of what a student's region returns.

The grader rewrites every ``return X`` in a graded region into
``return plain(X)``, so the tests compare built-in numbers, tuples, lists,
dicts and base ``np.ndarray`` objects: a ``float`` subclass whose ``__eq__``
and ``__lt__`` always say yes (or an ``ndarray`` subclass doing the same)
cannot decide a comparison. Named tuples keep their type (with plain
fields); values of other types (a Tensor, None) pass through unchanged.
"""

from __future__ import annotations

import numpy as np

_EXACT = (bool, int, float, complex, str, bytes, type(None))


def plain(x):
    """``x`` with every subclass of a built-in number, container or ndarray replaced by
    its base type holding the same value."""
    t = type(x)
    if t in _EXACT or (issubclass(t, np.generic) and t.__module__ == "numpy"):
        return x
    if isinstance(x, np.ndarray):
        x = np.asarray(x) if t is not np.ndarray else x
        if x.dtype == object:  # its elements are values too: an object array of lying floats
            out = np.empty(x.shape, dtype=object)
            for i, v in np.ndenumerate(x):
                out[i] = plain(v)
            return out
        return x
    if isinstance(x, bool):
        return bool.__bool__(x)
    if isinstance(x, int):
        return int.__int__(x)
    if isinstance(x, float):
        return float.__float__(x)
    if isinstance(x, complex):
        return complex.__complex__(x) if hasattr(complex, "__complex__") else complex(x.real, x.imag)
    if isinstance(x, str):
        return str.__str__(x)
    if isinstance(x, tuple):
        fields = tuple(plain(v) for v in tuple.__iter__(x))
        # a named tuple of the library's (MaxResult, FloatFields) keeps its names; any
        # other tuple subclass, one with a ``_fields`` and a lying ``__eq__`` included,
        # becomes a tuple (built without calling its own __new__)
        return tuple.__new__(t, fields) if _is_named_tuple(t) else fields
    if isinstance(x, list):
        return [plain(v) for v in list.__iter__(x)]
    if isinstance(x, dict):
        return {plain(k): plain(v) for k, v in dict.items(x)}
    return x


_TUPLE_METHODS = ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__hash__",
                  "__getitem__", "__iter__", "__len__", "__contains__", "__getattribute__")


def _is_named_tuple(t: type) -> bool:
    """A class ``namedtuple`` or ``typing.NamedTuple`` made: a direct tuple subclass that
    keeps tuple's comparisons and access, with its fields read by index."""
    fields = getattr(t, "_fields", None)
    return (t.__bases__ == (tuple,) and isinstance(fields, tuple)
            and all(getattr(t, m) is getattr(tuple, m) for m in _TUPLE_METHODS)
            and all(type(t.__dict__.get(f)).__name__ == "_tuplegetter" for f in fields))


__all__ = ["plain"]
