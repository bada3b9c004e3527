"""Synthetic data sets minigrad makes itself (no downloads), seeded by
``minigrad.manual_seed`` or an explicit ``rng``."""
