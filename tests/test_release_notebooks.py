"""Every chapter notebook, executed once, in the student release of its own
chapter: earlier chapters shipped solved, the chapter's own regions filled
with the reference's code (what a student who finished it has), later ones
still stubbed. It must run to its end without reaching a stub. A release with
nothing solved must report its stubs and go on, not stop.

These runs replace executing the notebooks in place (nbmake): each notebook
is executed once in the whole suite, in its release variant."""

import hashlib
import json
import os
import tempfile
from pathlib import Path

import pytest

from minigrad.exercises import all_exercises
from minigrad.exercises.fences import replace_region, scan_package
from minigrad.exercises.release import notebook_chapters, release, source_root

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = source_root()
NOTEBOOKS = notebook_chapters(ROOT)
# Releases for notebooks are written to the same folder on every run, and numba keeps its
# cache beside them: a kernel's cache is found by its file's path and (mtime, size), so
# with stable paths and mtimes a notebook does not recompile every kernel it calls
# (15 s for the quantization kernels alone) each time the suite runs.
STABLE = Path(tempfile.gettempdir()) / (
    "minigrad-release-notebooks-" + hashlib.sha1(str(ROOT).encode()).hexdigest()[:10])
STUB_REACHED = "is not implemented yet"
SKIPPED = "Skipped: this cell"


def fill_with_reference(copy: Path, chapter: int) -> list:
    """Put the reference's solution of every exercise of ``chapter`` into ``copy``."""
    ref = scan_package(ROOT)
    filled = []
    for e in all_exercises():
        if e.chapter != chapter:
            continue
        r = ref[e.id]
        body = r.body((ROOT / r.path).read_text().splitlines(keepends=True))
        target = copy / r.path
        target.write_text(replace_region(target.read_text(), e.id, body, r.path))
        filled.append(e.id)
    return filled


def keep_source_mtimes(copy: Path) -> None:
    """Give each released package file the mtime of its source, so numba's cache of a
    kernel stays valid from one run to the next until its source changes."""
    for p in (copy / "minigrad").rglob("*.py"):
        src = ROOT / p.relative_to(copy)
        if src.exists():
            st = src.stat()
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


def execute(notebook: Path, copy: Path, tmp_path: Path, timeout: int = 180):
    """Run ``notebook`` with the kernel importing ``copy``'s package; return the
    executed notebook and all its text output. Raises CellExecutionError at the
    first cell that ends in an error, as nbmake would."""
    nb = nbformat.read(notebook, as_version=4)
    env = {**os.environ, "PYTHONPATH": str(copy), "MPLBACKEND": "Agg",
           "MINIGRAD_FIGURES": str(tmp_path / "figures"),
           "NUMBA_CACHE_DIR": str(STABLE / "numba-cache")}
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(notebook.parent)}})
    client.execute(env=env, cwd=str(notebook.parent))
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text.append(out["text"])
            elif "data" in out and "text/plain" in out["data"]:
                text.append(out["data"]["text/plain"])
    return nb, "".join(text)


@pytest.mark.slow
@pytest.mark.parametrize("chapter", sorted(NOTEBOOKS), ids=lambda c: NOTEBOOKS[c].stem)
def test_notebook_runs_to_its_end_once_its_chapter_is_solved(chapter, tmp_path):
    has_exercises = chapter in {e.chapter for e in all_exercises()}
    copy = release(STABLE / f"ch{chapter:02d}", chapters=[chapter])
    if has_exercises:
        assert fill_with_reference(copy, chapter)
    keep_source_mtimes(copy)
    info = json.loads((copy / "minigrad" / "exercises" / "release_info.json").read_text())
    assert all(c < chapter for c in info["solved"])
    _, text = execute(copy / "notebooks" / NOTEBOOKS[chapter].name, copy, tmp_path)
    assert STUB_REACHED not in text and SKIPPED not in text, \
        f"notebook {chapter} reached a stub in its own chapter's release:\n{text[-2000:]}"


@pytest.fixture(scope="module")
def nothing_solved(tmp_path_factory):
    return release(tmp_path_factory.mktemp("stubbed") / "release")


def _cell_outputs(nb):
    return ["".join(o.get("text", "") for o in c.get("outputs", []))
            for c in nb.cells if c.cell_type == "code"]


def _write_notebook(path: Path, cells) -> Path:
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]),
                   path)
    return path


def test_a_stub_reached_in_a_notebook_is_reported_and_the_notebook_goes_on(nothing_solved, tmp_path):
    """The guard reports the stub and what it left undone, the cell's display still
    shows; before any stub is reached, a real error still stops the notebook."""
    folder = nothing_solved / "notebooks"
    bug = _write_notebook(folder / "bug_check.ipynb", ["import minigrad", "1 / 0"])
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="ZeroDivisionError"):
        execute(bug, nothing_solved, tmp_path)
    cells = ["import numpy as np\nimport minigrad\nfrom minigrad.quant import quantize_blockwise",
             "q, state = quantize_blockwise(np.ones(8, np.float32))\nprint('after the stub')",
             "print(q.sum())",                               # needs the skipped cell's result
             "x = 2\nprint('still running')\nx * 21",        # runs; its last value is displayed
             "x.grad.item()"]                                # fails later on, as a cascade does
    done, text = execute(_write_notebook(folder / "guard_check.ipynb", cells), nothing_solved,
                         tmp_path)
    out = _cell_outputs(done)
    assert "Exercise ch6.blockwise_absmax is not implemented yet" in out[1]
    assert "minigrad/quant/blockwise.py:" in out[1] and "after the stub" not in out[1]
    assert "Skipped: this cell needs 'q'" in out[2] and "ch6.blockwise_absmax" in out[2]
    assert "still running" in out[3] and "42" in text
    assert "AttributeError" in out[4] and "ch6.blockwise_absmax" in out[4]


def test_a_notebook_with_nothing_solved_reaches_its_first_stub_and_ends(nothing_solved, tmp_path):
    first = min(NOTEBOOKS)
    nb, text = execute(nothing_solved / "notebooks" / NOTEBOOKS[first].name, nothing_solved, tmp_path)
    assert f"Exercise ch{first}." in text and STUB_REACHED in text
    assert "minigrad grade" in nb.cells[-1].source or "minigrad grade" in nb.cells[-2].source
