"""pipeline, per rank: `python -m minigrad.distributed.examples.pipeline` (4 simulated ranks), or
`minigrad launch -n 4 --backend mpi -m minigrad.distributed.examples.pipeline` (4 processes).

Trains chapter 2's MLP with the same per-rank code on either backend and checks
it against one process on the whole batch (see :mod:`.common`).
"""

from .common import run_example

if __name__ == "__main__":
    run_example(("gpipe", "1f1b"))
