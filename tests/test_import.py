"""`import minigrad` stays light: no numba, matplotlib, scipy or torch at import
(each costs tenths of a second; they load on first use)."""

import subprocess
import sys


def test_import_pulls_no_heavy_modules():
    code = ("import sys, minigrad, minigrad.nn, minigrad.optim, minigrad.functional; "
            "print(' '.join(m for m in ('numba', 'matplotlib', 'scipy', 'torch') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_names_exist():
    import minigrad
    missing = [n for n in minigrad.__all__ if not hasattr(minigrad, n)]
    assert missing == []
