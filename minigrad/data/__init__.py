"""Synthetic data sets minigrad makes itself (no downloads), seeded by
``minigrad.manual_seed`` or an explicit ``rng``."""

from .toy import (make_blobs, make_circles, make_moons, make_pairs, make_sine,  # noqa: F401
                  make_spirals, train_test_split)
from .addition import IGNORE_INDEX, AdditionTask, CharTokenizer  # noqa: F401
