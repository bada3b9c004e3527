"""``minigrad exercises gradescope OUT.zip``: the autograder Gradescope runs.

Gradescope unpacks the zip into ``/autograder/source``, runs ``setup.sh`` once
to build the image, and for every submission runs ``/autograder/run_autograder``
as root with the student's upload in ``/autograder/submission``; the score is
what that leaves in ``/autograder/results/results.json``.

The zip holds the reference (the package with its solutions, the exercise
tests with the hidden ones, the conftests, pyproject.toml), ``setup.sh`` (the
dependencies into a virtual environment; the reference itself is never
installed, so no copy of it lands where a job could read it), ``run_autograder``
(makes the reference and the submission private to root, then runs
``minigrad grade SUBMISSION --reference SOURCE --json results.json``, with the
release's seed from ``grade_args``) and ``grade_args``. The zip is built from
sorted files with fixed timestamps, so the same checkout gives the same bytes.
``MINIGRAD_AUTOGRADER_ROOT`` (instead of ``/autograder``),
``MINIGRAD_AUTOGRADER_PYTHON`` and ``MINIGRAD_GRADE_ARGS`` let a test run the
bundle in a fake tree.
"""

from __future__ import annotations

import ast
import subprocess
import zipfile
from pathlib import Path

from .release import CONFTESTS, EXERCISE_TESTS, PACKAGE, is_student_release, source_root

_SKIP_PARTS = {"__pycache__", ".ipynb_checkpoints"}
_SKIP_SUFFIXES = {".pyc", ".nbi", ".nbc", ".so", ".orig", ".rej", ".bak", ".swp"}

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, to build the autograder's image.
set -euo pipefail
ROOT="${MINIGRAD_AUTOGRADER_ROOT:-/autograder}"
if ! command -v python3 >/dev/null || ! python3 -m venv --help >/dev/null 2>&1; then
    apt-get update && apt-get install -y python3 python3-venv python3-pip
fi
python3 -m venv "$ROOT/venv"
"$ROOT/venv/bin/pip" install --no-cache-dir __REQUIREMENTS__
chmod -R a+rX "$ROOT/venv"   # the graded code runs as another user and needs the libraries
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this as root for every submission.
set -uo pipefail
ROOT="${MINIGRAD_AUTOGRADER_ROOT:-/autograder}"
PY="${MINIGRAD_AUTOGRADER_PYTHON:-$ROOT/venv/bin/python}"
mkdir -p "$ROOT/results"
# the solutions, the hidden tests and the submission: readable by root only, so the
# code being graded (run as another user) cannot read or change them
chmod -R go-rwx "$ROOT/source" "$ROOT/submission"
chmod go+x "$ROOT"
cd "$ROOT/source"
PYTHONPATH="$ROOT/source" "$PY" -m minigrad.cli grade "$ROOT/submission" \\
    --reference "$ROOT/source" --json "$ROOT/results/results.json" \\
    $(cat "$ROOT/source/grade_args") ${MINIGRAD_GRADE_ARGS:-}
status=$?
if [ $status -ne 0 ] && [ ! -s "$ROOT/results/results.json" ]; then
    printf '{"score": 0, "output": "The autograder failed (exit %s); tell the instructor.", "tests": []}\\n' \\
        "$status" > "$ROOT/results/results.json"
fi
"""


def _requirements(root: Path) -> list:
    """The runtime dependencies in pyproject.toml, plus what the tests need."""
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    deps = [d.split(";")[0].strip() for d in deps if "python_version" not in d]
    return deps + ["pytest>=7.4", "hypothesis>=6.80"]


def _files(root: Path) -> list:
    """The reference's files the autograder needs: git's tracked files when it is a
    checkout (no editor backups or merge leftovers), else every plain file."""
    wanted = [root / PACKAGE, root / EXERCISE_TESTS]
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--", PACKAGE, str(EXERCISE_TESTS)],
                             cwd=root, capture_output=True, check=True)
        listed = [root / p for p in out.stdout.decode().split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        listed = [p for d in wanted for p in d.rglob("*")]
    files = [p for p in listed if p.is_file() and not (_SKIP_PARTS & set(p.parts))
             and p.suffix not in _SKIP_SUFFIXES and not p.name.endswith("~")
             and p.name not in ("catalog.json", "release_info.json")]
    files += [root / c for c in CONFTESTS if (root / c).is_file()]
    return sorted(set(files))


def _entry(zf: zipfile.ZipFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.external_attr = (0o100000 | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


def write_bundle(out_zip, root: Path | None = None, release_seed: int | None = None) -> Path:
    """Write the Gradescope autograder zip for the reference at ``root``."""
    root = Path(root or source_root()).resolve()
    if is_student_release(root) or not (root / EXERCISE_TESTS).is_dir():
        raise ValueError(f"gradescope: {root} is not the instructor's checkout (it needs the "
                         f"solutions and {EXERCISE_TESTS}/ with the hidden tests)")
    for p in (root / EXERCISE_TESTS).glob("test_*.py"):
        ast.parse(p.read_text())  # a broken test file fails here, not on every submission
    out = Path(out_zip)
    out.parent.mkdir(parents=True, exist_ok=True)
    requirements = " ".join(f"'{r}'" for r in _requirements(root))
    args = f"--release-seed {release_seed}\n" if release_seed is not None else "\n"
    with zipfile.ZipFile(out, "w") as zf:
        _entry(zf, "setup.sh", SETUP_SH.replace("__REQUIREMENTS__", requirements).encode(), 0o755)
        _entry(zf, "run_autograder", RUN_AUTOGRADER.encode(), 0o755)
        _entry(zf, "grade_args", args.encode())
        _entry(zf, "pyproject.toml", (root / "pyproject.toml").read_bytes())
        for p in _files(root):
            _entry(zf, p.relative_to(root).as_posix(), p.read_bytes())
    return out


__all__ = ["write_bundle"]
