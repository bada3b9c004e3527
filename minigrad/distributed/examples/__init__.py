"""Runnable per-rank examples: ``python -m minigrad.distributed.examples.ddp`` (zero, pipeline).

Each runs on the simulator by default and on real processes under
``minigrad launch -n 4 --backend mpi -m minigrad.distributed.examples.ddp``.
:mod:`.common` holds the training loops they share (and the tests use).
"""
