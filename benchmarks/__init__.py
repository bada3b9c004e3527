"""Benchmarks: each ``bench_<topic>.py`` runs with ``python -m benchmarks.bench_<topic>``
and prints a table with ratios against the NumPy floor (and PyTorch CPU where
installed). Speed targets live here, never in timed tests."""
