"""Synthetic data sets: shapes, dtypes, the geometry each promises, seeding, bad input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad
from minigrad.data import (make_blobs, make_circles, make_moons, make_pairs, make_sine,
                           make_spirals, train_test_split)

CLASSIFIERS = [make_moons, make_circles, make_spirals, make_blobs]


@settings(max_examples=25, deadline=None)
@given(n=st.integers(3, 60), which=st.sampled_from(CLASSIFIERS))
def test_shapes_dtypes_and_balanced_classes(n, which):
    X, y = which(n, rng=np.random.default_rng(n))
    assert X.dtype == np.float32 and y.dtype == np.int64
    assert X.shape == (n, 2) and y.shape == (n,)
    counts = np.bincount(y)
    assert counts.max() - counts.min() <= 1, "classes differ in size by more than one"


def test_noise_free_moons_lie_on_their_half_circles():
    X, y = make_moons(101, noise=0.0)
    r0 = np.hypot(X[y == 0, 0], X[y == 0, 1])                 # centred at (0, 0)
    r1 = np.hypot(X[y == 1, 0] - 1, X[y == 1, 1] - 0.5)       # centred at (1, 0.5)
    np.testing.assert_allclose(r0, 1, atol=1e-6)
    np.testing.assert_allclose(r1, 1, atol=1e-6)
    assert np.all(X[y == 0, 1] >= -1e-6) and np.all(X[y == 1, 1] <= 0.5 + 1e-6)


def test_noise_free_circles_have_radius_one_and_factor():
    X, y = make_circles(80, noise=0.0, factor=0.3)
    r = np.hypot(X[:, 0], X[:, 1])
    np.testing.assert_allclose(r[y == 0], 1, atol=1e-6)
    np.testing.assert_allclose(r[y == 1], 0.3, atol=1e-6)


def test_spiral_radius_within_unit_disc_and_arms_rotated():
    X, y = make_spirals(300, noise=0.0, n_classes=3)
    assert np.all(np.hypot(X[:, 0], X[:, 1]) <= 1 + 1e-6)
    # the outermost point of arm k sits at angle 4 + 2 pi k / 3 (measured from the y axis)
    for k in range(3):
        pts = X[y == k]
        far = pts[np.argmax(np.hypot(pts[:, 0], pts[:, 1]))]
        theta = 4 + 2 * np.pi * k / 3
        np.testing.assert_allclose(far, [np.sin(theta), np.cos(theta)], atol=1e-6)


def test_blobs_cluster_around_their_centres():
    X, y = make_blobs(3000, noise=0.5, centers=3, n_features=4)
    assert X.shape == (3000, 4)
    for k in range(3):
        spread = X[y == k].std(axis=0)
        np.testing.assert_allclose(spread, 0.5, rtol=0.15)


def test_sine_regression_residual_has_the_noise_std():
    X, y = make_sine(4000, noise=0.2)
    assert X.shape == y.shape == (4000, 1) and y.dtype == np.float32
    assert X.min() >= -np.pi and X.max() <= np.pi
    np.testing.assert_allclose(np.std(y - np.sin(X)), 0.2, rtol=0.05)


def test_manual_seed_makes_data_reproducible_and_rng_overrides():
    minigrad.manual_seed(7)
    a = make_moons(50)
    minigrad.manual_seed(7)
    b = make_moons(50)
    np.testing.assert_array_equal(a[0], b[0])
    c = make_moons(50, rng=np.random.default_rng(1))
    d = make_moons(50, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(c[0], d[0])
    assert not np.array_equal(a[0], c[0])


def test_train_test_split_partitions_the_rows():
    X = np.arange(40, dtype=np.float32).reshape(20, 2)
    y = np.arange(20)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25)
    assert len(yte) == 5 and len(ytr) == 15
    assert sorted(np.concatenate([ytr, yte]).tolist()) == list(range(20))
    np.testing.assert_array_equal(Xtr[:, 0], 2 * ytr)          # rows stay paired with labels


def test_make_pairs_targets_match_the_labels():
    X, y = make_blobs(200, centers=4)
    X1, X2, t = make_pairs(X, y, 301)
    assert X1.shape == X2.shape == (301, 2) and t.dtype == np.int64
    assert (t == 1).sum() == 150 and (t == -1).sum() == 151
    label = {tuple(r): c for r, c in zip(X.tolist(), y.tolist())}
    same = np.array([label[tuple(a)] == label[tuple(b)] for a, b in zip(X1.tolist(), X2.tolist())])
    np.testing.assert_array_equal(same, t == 1)


@pytest.mark.parametrize("call, match", [
    (lambda: make_moons(1), "n_samples must be an integer >= 2"),
    (lambda: make_moons(10, noise=-1), "noise must be a real number >= 0"),
    (lambda: make_spirals(10, n_classes=1), "n_classes must be an integer >= 2"),
    (lambda: make_circles(10, factor=1.5), r"factor must be in \(0, 1\)"),
    (lambda: make_blobs(10, centers=0), "centers must be a positive integer"),
    (lambda: make_sine(2.5), "n_samples must be an integer"),
    (lambda: train_test_split(np.zeros((4, 1)), np.zeros(3)), "X has 4 rows but y has 3"),
    (lambda: train_test_split(np.zeros((4, 1)), np.zeros(4), test_size=1.0), "test_size"),
    (lambda: make_pairs(np.zeros((3, 2)), np.zeros(3), 5), "at least two classes"),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
