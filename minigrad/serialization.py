"""Saving and loading state dicts as ``.npz`` files: atomic, and never pickle.

A pickle file runs code when loaded; an ``.npz`` of plain arrays read with
``allow_pickle=False`` cannot. The file is written to a temporary name in the
same folder and renamed over the target, so a crash mid-write never leaves a
half-written checkpoint under the real name.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections import OrderedDict

import numpy as np

from .tensor import Tensor

_MAGIC_KEY = "__minigrad_format__"
_FORMAT = np.array("minigrad-state-dict-v1")


def save(state_dict, path) -> None:
    """Write ``state_dict`` (name -> ndarray or Tensor) to ``path`` atomically."""
    path = os.fspath(path)
    arrays = {}
    for k, v in state_dict.items():
        if not isinstance(k, str) or k == _MAGIC_KEY:
            raise ValueError(f"save: keys must be strings other than {_MAGIC_KEY!r}, got {k!r}")
        arr = np.asarray(v.data if isinstance(v, Tensor) else v)
        if arr.dtype == object:
            raise TypeError(f"save: value for {k!r} is not a numeric array (dtype object)")
        arrays[k] = arr
    arrays[_MAGIC_KEY] = _FORMAT
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            # the .npz layout (a zip of one .npy per key) written directly, rather
            # than np.savez(**arrays), where a key named "file" would clash
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                for k, arr in arrays.items():
                    with zf.open(k + ".npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, arr, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path) -> OrderedDict[str, np.ndarray]:
    """Read a file written by :func:`save`; a truncated or foreign file raises ValueError."""
    path = os.fspath(path)
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):  # a bare .npy array, not an archive
            raise ValueError(f"load: {path} is a single array, not a minigrad checkpoint (.npz)")
        with z:
            if _MAGIC_KEY not in z.files or str(z[_MAGIC_KEY]) != str(_FORMAT):

                raise ValueError(f"load: {path} is not a minigrad checkpoint (no format marker)")
            return OrderedDict((k, z[k]) for k in z.files if k != _MAGIC_KEY)
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"load: {path} is truncated or not an .npz file ({e})") from None
    except ValueError as e:
        if str(e).startswith("load:"):
            raise
        raise ValueError(f"load: {path} holds data that needs pickle or is corrupt ({e})") from None
