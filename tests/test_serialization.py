"""minigrad.save / minigrad.load: exact round trip, atomic writes, and clear
errors for files that are truncated, foreign, or would need pickle."""

import os
import pickle
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
