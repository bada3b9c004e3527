"""Notebooks are kept as jupytext percent scripts (clean diffs) beside the
.ipynb that test_release_notebooks.py executes. These tests keep the pairs
in sync and the notebooks free of outputs."""

from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SCRIPTS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
IPYNBS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def test_every_notebook_has_its_script_twin():
    assert {p.stem for p in SCRIPTS} == {p.stem for p in IPYNBS}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_ipynb_matches_its_script(script):
    jupytext = pytest.importorskip("jupytext")
    nbformat = pytest.importorskip("nbformat")
    expected = jupytext.read(script)
    actual = nbformat.read(script.with_suffix(".ipynb"), as_version=4)
    want = [(c.cell_type, c.source.strip()) for c in expected.cells]
    got = [(c.cell_type, c.source.strip()) for c in actual.cells]
    assert got == want, (f"{script.name} and its .ipynb differ: run "
                         f"`jupytext --update --to ipynb {script.relative_to(NOTEBOOKS.parent)}`")


@pytest.mark.parametrize("ipynb", IPYNBS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(ipynb):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(ipynb, as_version=4)
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code":
            assert not c.get("outputs") and c.get("execution_count") is None, \
                f"{ipynb.name} cell {i} holds outputs; strip them"


@pytest.mark.parametrize("ipynb", IPYNBS, ids=lambda p: p.stem)
def test_notebook_opens_with_a_title_and_ends_with_its_exercises(ipynb):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(ipynb, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.lstrip().startswith("#")
    tail = "\n".join(c.source for c in nb.cells[-3:])
    assert "minigrad grade" in tail, f"{ipynb.name} should end with its exercises and `minigrad grade`"
