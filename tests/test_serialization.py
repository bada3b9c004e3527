"""minigrad.save / minigrad.load: exact round trip, atomic writes, and clear
errors for files that are truncated, foreign, or would need pickle."""

import os
import pickle
import stat
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn


def test_round_trip_is_exact(tmp_path):
    sd = OrderedDict([("a.weight", np.arange(6, dtype=np.float32).reshape(2, 3)),
                      ("b", np.array([1.5, -2.0], np.float64)), ("ids", np.array([3, 1])),
                      ("file", np.zeros(1, np.float16)),  # a key np.savez could not take
                      ("scalar", np.array(2.5)), ("t", mg.tensor([1.0, 2.0]))])
    path = tmp_path / "ck.npz"
    mg.save(sd, path)
    back = mg.load(path)
    assert list(back) == list(sd)
    for k, v in sd.items():
        v = v.data if isinstance(v, mg.Tensor) else v
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        np.testing.assert_array_equal(back[k], v)


def test_model_round_trip(tmp_path):
    a, b = nn.MLP([3, 5, 2]), nn.MLP([3, 5, 2])
    mg.save(a.state_dict(), tmp_path / "m.npz")
    b.load_state_dict(mg.load(tmp_path / "m.npz"))
    x = mg.randn(4, 3)
    np.testing.assert_array_equal(a(x).data, b(x).data)


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ck.npz"
    mg.save({"w": np.ones(3)}, path)
    assert os.listdir(tmp_path) == ["ck.npz"]  # no temporary file left behind
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(np.lib.format, "write_array", boom)  # fail mid-write
    with pytest.raises(OSError, match="disk full"):
        mg.save({"w": np.zeros(3)}, path)
    assert path.read_bytes() == before          # the target is untouched
    assert os.listdir(tmp_path) == ["ck.npz"]   # and the temporary file is gone


def test_bad_values_are_rejected_before_writing(tmp_path):
    with pytest.raises(TypeError, match="value for 'x' is not a numeric array"):
        mg.save({"x": np.array([{"a": 1}], dtype=object)}, tmp_path / "o.npz")
    with pytest.raises(ValueError, match="keys must be strings"):
        mg.save({1: np.ones(1)}, tmp_path / "o.npz")
    assert os.listdir(tmp_path) == []


def test_truncated_file(tmp_path):
    path = tmp_path / "ck.npz"
    mg.save({"w": np.ones(1000)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or not an .npz"):
        mg.load(path)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="truncated or not an .npz"):
        mg.load(path)


def test_foreign_files(tmp_path):
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, w=np.ones(2))  # a valid .npz, but not written by minigrad.save
    with pytest.raises(ValueError, match="not a minigrad checkpoint"):
        mg.load(foreign)
    npy = tmp_path / "a.npy"
    np.save(npy, np.ones(2))
    with pytest.raises(ValueError, match="single array, not a minigrad checkpoint"):
        mg.load(npy)
    with zipfile.ZipFile(tmp_path / "z.npz", "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="not a minigrad checkpoint"):
        mg.load(tmp_path / "z.npz")
    with pytest.raises(FileNotFoundError):
        mg.load(tmp_path / "missing.npz")


def test_files_that_need_pickle(tmp_path):
    pkl = tmp_path / "model.pt"
    pkl.write_bytes(pickle.dumps({"w": np.ones(2)}))
    with pytest.raises(ValueError, match="needs pickle"):
        mg.load(pkl)
    obj = tmp_path / "obj.npz"
    np.savez(obj, __minigrad_format__=np.array("minigrad-state-dict-v1"),
             w=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(ValueError, match="needs pickle"):
        mg.load(obj)


# ----------------------------------------------------------------------------
# keys, permissions, symlinks, crashes and durability (issue 12)
# ----------------------------------------------------------------------------

def test_a_key_ending_in_npy_loads_its_own_data(tmp_path):
    # members "w.npy" (key w) and "w.npy.npy" (key w.npy): np.load's archive would
    # answer z["w.npy"] with key w's member
    sd = {"w": np.zeros(2), "w.npy": np.ones(3), "v.npy": np.full(1, 7.0)}
    mg.save(sd, tmp_path / "k.npz")
    back = mg.load(tmp_path / "k.npz")
    assert set(back) == set(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(back[k], v)


@pytest.mark.parametrize("key", ["a/b", "../evil", "a..b", "", "x\\y", "/abs"])
def test_path_like_keys_are_rejected(tmp_path, key):
    with pytest.raises(ValueError, match="save: key"):
        mg.save({key: np.ones(1)}, tmp_path / "p.npz")
    assert os.listdir(tmp_path) == []


def test_load_rejects_a_file_with_path_like_member_names(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, __minigrad_format__=np.array("minigrad-state-dict-v1"))
    with zipfile.ZipFile(bad, "a") as z:
        with z.open("../x.npy", "w") as m:
            np.lib.format.write_array(m, np.ones(1))
    with pytest.raises(ValueError, match="load: key"):
        mg.load(bad)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_file_mode_follows_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        mg.save({"w": np.ones(1)}, tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o666 & ~umask


def test_saving_through_a_symlink_writes_its_target(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    target = real / "ck.npz"
    mg.save({"w": np.zeros(2)}, target)
    link = tmp_path / "latest.npz"
    link.symlink_to(target)
    mg.save({"w": np.ones(2)}, link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    np.testing.assert_array_equal(mg.load(target)["w"], np.ones(2))
    assert sorted(os.listdir(tmp_path)) == ["latest.npz", "real"]
    assert os.listdir(real) == ["ck.npz"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_save_killed_midway_leaves_no_temporary_for_good(tmp_path):
    path = tmp_path / "ck.npz"
    pid = os.fork()
    if pid == 0:  # the child dies inside save, after the bytes and before the rename
        try:
            os.fsync = lambda fd: os._exit(0)
            mg.save({"w": np.ones(4)}, path)
        finally:
            os._exit(1)
    os.waitpid(pid, 0)
    left = os.listdir(tmp_path)
    assert len(left) == 1 and left[0].startswith(".ck.npz") and not path.exists()
    # a temporary of a live process (a save in progress) is never touched
    live = tmp_path / f".ck.npz.minigrad-tmp-{os.getppid()}-abcd"
    live.write_bytes(b"")
    mg.save({"w": np.zeros(4)}, path)
    assert sorted(os.listdir(tmp_path)) == sorted(["ck.npz", live.name])
    np.testing.assert_array_equal(mg.load(path)["w"], np.zeros(4))


def test_fsync_of_the_file_before_the_rename_and_of_the_folder_after(tmp_path, monkeypatch):
    events, sizes = [], []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        events.append(("fsync", "dir" if stat.S_ISDIR(st.st_mode) else "file"))
        sizes.append(st.st_size)  # what the disk gets: Python's buffer must be flushed first
        real_fsync(fd)

    def replace(a, b):
        events.append(("replace", os.path.getsize(a)))
        real_replace(a, b)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    mg.save({"w": np.ones(8)}, tmp_path / "d.npz")
    kinds = [e[0] if e[0] == "replace" else e[1] for e in events]
    assert kinds == ["file", "replace", "dir"]
    assert events[1][1] == sizes[0] == (tmp_path / "d.npz").stat().st_size  # complete when synced


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_save_and_load_leave_no_file_descriptor_open(tmp_path):
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        mg.save({"w": np.ones(2)}, tmp_path / "f.npz")
        mg.load(tmp_path / "f.npz")
    assert len(os.listdir("/proc/self/fd")) == before


def test_load_rejects_duplicate_members_and_a_foreign_format_marker(tmp_path):
    dup = tmp_path / "dup.npz"
    mg.save({"w": np.ones(2)}, dup)
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(dup, "a") as z:
        with z.open("w.npy", "w") as m:
            np.lib.format.write_array(m, np.zeros(2))
    with pytest.raises(ValueError, match="not a minigrad checkpoint"):
        mg.load(dup)
    other = tmp_path / "other.npz"
    np.savez(other, __minigrad_format__=np.array("minigrad-state-dict-v9"), w=np.ones(1))
    with pytest.raises(ValueError, match="format marker"):
        mg.load(other)


def test_errors_about_a_foreign_file_say_what_it_is_not_that_it_needs_pickle(tmp_path):
    foreign = tmp_path / "f.npz"
    np.savez(foreign, w=np.ones(2))
    with pytest.raises(ValueError) as e:
        mg.load(foreign)
    assert str(e.value).startswith(f"load: {foreign} is not a minigrad checkpoint")
    assert "pickle" not in str(e.value)
