"""Every chapter notebook, executed once, in the student release of its own
chapter: earlier chapters shipped solved, the chapter's own regions filled
with the reference's code (what a student who finished it has), later ones
still stubbed. It must run to its end without reaching a stub. A release with
nothing solved must report its stubs and go on, not stop.

These runs replace executing the notebooks in place (nbmake): each notebook
is executed once in the whole suite, in its release variant."""

import json
import os
from pathlib import Path

import pytest

from minigrad.exercises import all_exercises
from minigrad.exercises.fences import replace_region, scan_package
from minigrad.exercises.release import notebook_chapters, release, source_root

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = source_root()
NOTEBOOKS = notebook_chapters(ROOT)
STUB_REACHED = "is not implemented yet"
SKIPPED = "Skipped: this cell needs"


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


def execute(notebook: Path, copy: Path, tmp_path: Path, timeout: int = 180):
    """Run ``notebook`` with the kernel importing ``copy``'s package; return the
    executed notebook and all its text output. Raises CellExecutionError at the
    first cell that ends in an error, as nbmake would."""
    nb = nbformat.read(notebook, as_version=4)
    env = {**os.environ, "PYTHONPATH": str(copy), "MPLBACKEND": "Agg",
           "MINIGRAD_FIGURES": str(tmp_path / "figures"), "PYTHONDONTWRITEBYTECODE": "1"}
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
    copy = release(tmp_path / "release", chapters=[chapter])
    if has_exercises:
        assert fill_with_reference(copy, chapter)
    info = json.loads((copy / "minigrad" / "exercises" / "release_info.json").read_text())
    assert all(c < chapter for c in info["solved"])
    _, text = execute(copy / "notebooks" / NOTEBOOKS[chapter].name, copy, tmp_path)
    assert STUB_REACHED not in text and SKIPPED not in text, \
        f"notebook {chapter} reached a stub in its own chapter's release:\n{text[-2000:]}"
