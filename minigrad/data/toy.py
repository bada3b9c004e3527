"""Small synthetic data sets for chapters 1-2, made on the spot (no downloads).

Each ``make_*`` function takes ``n_samples``, a ``noise`` level and an
``rng`` (``None`` means :func:`minigrad.get_rng`, so ``manual_seed`` makes
them reproducible) and returns ``(X, y)`` as NumPy arrays: ``X`` float32 of
shape (n_samples, n_features); ``y`` int64 class labels of shape
(n_samples,), or float32 targets of shape (n_samples, 1) for regression.

The shapes follow scikit-learn's generators of the same names (two moons,
concentric circles, Gaussian blobs) plus the classic interleaved spirals of
Karpathy's CS231n notes, which a linear classifier cannot separate.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..tensor import get_rng

__all__ = ["make_moons", "make_circles", "make_spirals", "make_blobs", "make_sine",
           "train_test_split", "make_pairs"]


def _check(fn: str, n_samples, noise, min_samples: int = 1):
    if not isinstance(n_samples, numbers.Integral) or isinstance(n_samples, bool) \
            or n_samples < min_samples:
        raise ValueError(f"{fn}: n_samples must be an integer >= {min_samples}, got {n_samples!r}")
    if not isinstance(noise, numbers.Real) or not noise >= 0:
        raise ValueError(f"{fn}: noise must be a real number >= 0, got {noise!r}")


def _rng(rng):
    return get_rng() if rng is None else rng


def _split_counts(n: int, k: int) -> list:
    """n samples over k classes as evenly as possible (the first n % k get one more)."""
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def make_moons(n_samples: int = 200, noise: float = 0.1, rng=None):
    """Two interleaving half circles (scikit-learn's ``make_moons``).

    Class 0: (cos t, sin t); class 1: (1 - cos t, 0.5 - sin t), t in [0, pi],
    plus Gaussian noise of standard deviation ``noise`` on each coordinate.

    Returns:
        X: (n_samples, 2) float32; y: (n_samples,) int64 in {0, 1}.
    """
    _check("make_moons", n_samples, noise, 2)
    rng = _rng(rng)
    n0, n1 = _split_counts(n_samples, 2)
    t0, t1 = np.linspace(0, np.pi, n0), np.linspace(0, np.pi, n1)
    X = np.concatenate([np.stack([np.cos(t0), np.sin(t0)], 1),
                        np.stack([1 - np.cos(t1), 0.5 - np.sin(t1)], 1)])
    y = np.concatenate([np.zeros(n0, np.int64), np.ones(n1, np.int64)])
    X = X + noise * rng.standard_normal(X.shape)
    perm = rng.permutation(n_samples)
    return X[perm].astype(np.float32), y[perm]


def make_circles(n_samples: int = 200, noise: float = 0.05, factor: float = 0.5, rng=None):
    """A small circle (class 1, radius ``factor``) inside a large one (class 0, radius 1).

    Returns:
        X: (n_samples, 2) float32; y: (n_samples,) int64 in {0, 1}.
    """
    _check("make_circles", n_samples, noise, 2)
    if not 0 < factor < 1:
        raise ValueError(f"make_circles: factor must be in (0, 1), got {factor!r}")
    rng = _rng(rng)
    n0, n1 = _split_counts(n_samples, 2)
    t0 = np.linspace(0, 2 * np.pi, n0, endpoint=False)
    t1 = np.linspace(0, 2 * np.pi, n1, endpoint=False)
    X = np.concatenate([np.stack([np.cos(t0), np.sin(t0)], 1),
                        factor * np.stack([np.cos(t1), np.sin(t1)], 1)])
    y = np.concatenate([np.zeros(n0, np.int64), np.ones(n1, np.int64)])
    X = X + noise * rng.standard_normal(X.shape)
    perm = rng.permutation(n_samples)
    return X[perm].astype(np.float32), y[perm]


def make_spirals(n_samples: int = 300, noise: float = 0.2, n_classes: int = 3, rng=None):
    """``n_classes`` interleaved spiral arms (CS231n's spiral data).

    Arm k: radius r in [0, 1], angle theta = 4 r + 2 pi k / n_classes plus
    Gaussian angle noise of standard deviation ``noise`` (radians);
    point (r sin theta, r cos theta).

    Returns:
        X: (n_samples, 2) float32; y: (n_samples,) int64 in [0, n_classes).
    """
    if not isinstance(n_classes, numbers.Integral) or n_classes < 2:
        raise ValueError(f"make_spirals: n_classes must be an integer >= 2, got {n_classes!r}")
    _check("make_spirals", n_samples, noise, n_classes)
    rng = _rng(rng)
    Xs, ys = [], []
    for k, n in enumerate(_split_counts(n_samples, n_classes)):
        r = np.linspace(0.0, 1.0, n)
        theta = 4 * r + 2 * np.pi * k / n_classes + noise * rng.standard_normal(n)
        Xs.append(np.stack([r * np.sin(theta), r * np.cos(theta)], 1))
        ys.append(np.full(n, k, np.int64))
    X, y = np.concatenate(Xs), np.concatenate(ys)
    perm = rng.permutation(n_samples)
    return X[perm].astype(np.float32), y[perm]


def make_blobs(n_samples: int = 200, noise: float = 1.0, centers: int = 3, n_features: int = 2,
               center_box: float = 10.0, rng=None):
    """Isotropic Gaussian blobs: ``centers`` centres uniform in [-center_box, center_box]^n_features,
    each point a centre plus N(0, noise^2) per coordinate.

    Returns:
        X: (n_samples, n_features) float32; y: (n_samples,) int64 in [0, centers).
    """
    _check("make_blobs", n_samples, noise, 1)
    for name, v in (("centers", centers), ("n_features", n_features)):
        if not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"make_blobs: {name} must be a positive integer, got {v!r}")
    rng = _rng(rng)
    mu = rng.uniform(-center_box, center_box, size=(centers, n_features))
    y = np.concatenate([np.full(n, k, np.int64)
                        for k, n in enumerate(_split_counts(n_samples, centers))])
    X = mu[y] + noise * rng.standard_normal((n_samples, n_features))
    perm = rng.permutation(n_samples)
    return X[perm].astype(np.float32), y[perm]


def make_sine(n_samples: int = 200, noise: float = 0.1, rng=None):
    """A 1-D regression set: x ~ U(-pi, pi), y = sin(x) + N(0, noise^2).

    Returns:
        X: (n_samples, 1) float32; y: (n_samples, 1) float32.
    """
    _check("make_sine", n_samples, noise, 1)
    rng = _rng(rng)
    x = rng.uniform(-np.pi, np.pi, size=(n_samples, 1))
    y = np.sin(x) + noise * rng.standard_normal(x.shape)
    return x.astype(np.float32), y.astype(np.float32)


def train_test_split(X, y, test_size: float = 0.25, rng=None):
    """Shuffle, then hold out a fraction ``test_size`` of the rows for testing.

    Returns:
        X_train, X_test, y_train, y_test (scikit-learn's order).
    """
    X, y = np.asarray(X), np.asarray(y)
    if len(X) != len(y):
        raise ValueError(f"train_test_split: X has {len(X)} rows but y has {len(y)}")
    if not 0 < test_size < 1:
        raise ValueError(f"train_test_split: test_size must be in (0, 1), got {test_size!r}")
    n_test = int(round(len(X) * test_size))
    if not 0 < n_test < len(X):
        raise ValueError(f"train_test_split: test_size={test_size} of {len(X)} rows leaves an "
                         f"empty train or test set")
    perm = _rng(rng).permutation(len(X))
    test, train = perm[:n_test], perm[n_test:]
    return X[train], X[test], y[train], y[test]


def make_pairs(X, y, n_pairs: int, rng=None):
    """Random pairs of rows for a contrastive/cosine embedding loss.

    Half the pairs (rounded down) share a class (target +1), the rest come
    from different classes (target -1), the convention of
    ``F.cosine_embedding_loss``.

    Returns:
        X1, X2: (n_pairs, n_features); target: (n_pairs,) int64 in {-1, +1}.
    """
    X, y = np.asarray(X), np.asarray(y)
    if not isinstance(n_pairs, numbers.Integral) or n_pairs < 1:
        raise ValueError(f"make_pairs: n_pairs must be a positive integer, got {n_pairs!r}")
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError("make_pairs: y needs at least two classes")
    rng = _rng(rng)
    by_class = {c: np.flatnonzero(y == c) for c in classes}
    i1, i2 = np.empty(n_pairs, np.int64), np.empty(n_pairs, np.int64)
    target = np.where(np.arange(n_pairs) < n_pairs // 2, 1, -1).astype(np.int64)
    for k in range(n_pairs):
        a = rng.integers(len(y))
        i1[k] = a
        if target[k] == 1:
            i2[k] = rng.choice(by_class[y[a]])
        else:
            i2[k] = rng.choice(np.flatnonzero(y != y[a]))
    perm = rng.permutation(n_pairs)
    return X[i1[perm]], X[i2[perm]], target[perm]
