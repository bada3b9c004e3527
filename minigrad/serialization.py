"""Saving and loading state dicts as ``.npz`` files: atomic, durable, and never pickle.

A pickle file runs code when loaded; an ``.npz`` of plain arrays read with
``allow_pickle=False`` cannot. The bytes go to a temporary file in the target's
folder, are fsynced, and the temporary is renamed over the target (then the
folder is fsynced, so the rename itself survives a power cut): a crash never
leaves a half-written checkpoint under the real name. A temporary left by a
process that was killed mid-save is removed by the next save into that folder.

The layout is NumPy's ``.npz`` (a zip with one ``<key>.npy`` member per
entry), read back member by member: ``np.load``'s archive lets ``z["w.npy"]``
mean the member of key ``"w"``, so a key ending in ``.npy`` would read
another key's data.
"""

from __future__ import annotations

import os
import secrets
import zipfile
from collections import OrderedDict

import numpy as np

from .tensor import Tensor

_MAGIC_KEY = "__minigrad_format__"
_FORMAT = np.array("minigrad-state-dict-v1")
_TMP_MARK = ".minigrad-tmp-"


def _check_key(k, fn: str) -> None:
    if not isinstance(k, str) or not k or k == _MAGIC_KEY:
        raise ValueError(f"{fn}: keys must be strings, non-empty and other than "
                         f"{_MAGIC_KEY!r}, got {k!r}")
    if "/" in k or "\\" in k or ".." in k or "\x00" in k:
        raise ValueError(f"{fn}: key {k!r} contains '/', '\\\\', '..' or NUL; a key names a "
                         f"member of the archive, never a path")


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform that cannot open folders (Windows): nothing to sync
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale_temps(folder: str, name: str) -> None:
    """Delete temporaries of ``name`` whose writing process no longer exists."""
    prefix = f".{name}{_TMP_MARK}"
    for entry in os.listdir(folder):
        if not entry.startswith(prefix):
            continue
        pid = entry[len(prefix):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
            continue              # alive: maybe saving right now; leave its file alone
        except ProcessLookupError:
            pass
        except PermissionError:   # alive, owned by someone else
            continue
        try:
            os.unlink(os.path.join(folder, entry))
        except FileNotFoundError:
            pass


def save(state_dict, path) -> None:
    """Write ``state_dict`` (name -> ndarray or Tensor) to ``path`` atomically.

    A symlink at ``path`` is followed: its target is replaced and the link
    stays. The new file's mode follows the umask, as ``open(path, "w")`` would.
    """
    arrays = {}
    for k, v in state_dict.items():
        _check_key(k, "save")
        arr = np.asarray(v.data if isinstance(v, Tensor) else v)
        if arr.dtype == object:
            raise TypeError(f"save: value for {k!r} is not a numeric array (dtype object)")
        arrays[k] = arr
    arrays[_MAGIC_KEY] = _FORMAT
    path = os.path.realpath(os.fspath(path))  # through a symlink to the file it names
    folder, name = os.path.split(path)
    _remove_stale_temps(folder, name)
    tmp = os.path.join(folder, f".{name}{_TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
    # os.open with 0o666 lets the umask decide the mode (mkstemp would force 0600)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            # the .npz layout written directly, rather than np.savez(**arrays),
            # where a key named "file" would clash with savez's own argument
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                for k, arr in arrays.items():
                    with zf.open(k + ".npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, arr, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
        _fsync_dir(folder)        # and the rename is on disk before save returns
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path) -> OrderedDict[str, np.ndarray]:
    """Read a file written by :func:`save`; a truncated or foreign file raises ValueError."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(6)
    if head.startswith(b"\x93NUMPY"):
        raise ValueError(f"load: {path} is a single array, not a minigrad checkpoint (.npz)")
    if head[:1] == b"\x80":
        raise ValueError(f"load: {path} holds data that needs pickle (a pickle file); "
                         f"minigrad never unpickles")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            keys = [n[:-len(".npy")] for n in names if n.endswith(".npy")]
            if len(keys) != len(names) or len(set(keys)) != len(keys) or _MAGIC_KEY not in keys:
                raise ValueError(f"load: {path} is not a minigrad checkpoint (no format "
                                 f"marker, or members that are not one .npy per key)")
            out = OrderedDict()
            for k, member in zip(keys, names):
                with zf.open(member) as m:
                    out[k] = np.lib.format.read_array(m, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise ValueError(f"load: {path} is truncated or not an .npz file ({e})") from None
    except ValueError as e:
        if str(e).startswith("load:"):
            raise
        raise ValueError(f"load: {path} holds data that needs pickle or is corrupt ({e})") from None
    if str(out.pop(_MAGIC_KEY)) != str(_FORMAT):
        raise ValueError(f"load: {path} is not a minigrad checkpoint (format marker "
                         f"{_MAGIC_KEY!r} is not {str(_FORMAT)!r})")
    for k in out:
        _check_key(k, "load")
    return out
