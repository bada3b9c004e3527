"""Root pytest setup, seen by tests/ and by the notebooks nbmake executes:
figures go to a temporary folder and matplotlib draws off-screen."""

import os
import tempfile

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("MINIGRAD_FIGURES", tempfile.mkdtemp(prefix="minigrad-figures-"))
