"""`minigrad tour`: every chapter plugs in, runs in quick mode, and writes figures."""

import io
import re
from pathlib import Path

from minigrad.cli import main
from minigrad.tour import chapters, run_tour


def test_every_tour_section_declares_a_title_and_a_run():
    mods = chapters()
    assert mods, "no tour sections found"
    names = [m.__name__.rsplit(".", 1)[-1] for m in mods]
    assert names == sorted(names) and all(re.match(r"ch\d\d_", n) for n in names)
    for m in mods:
        assert isinstance(m.TITLE, str) and callable(m.run)


def test_quick_tour_runs_every_chapter_and_writes_its_figures(tmp_path):
    buf = io.StringIO()
    rows = run_tour(tmp_path, quick=True, stream=buf)
    text = buf.getvalue()
    for m in chapters():
        assert m.TITLE in text, f"{m.TITLE} is missing from the summary"
        assert sum(1 for r in rows if r[0] == m.TITLE and r[1] != "time") >= 1
    assert len(list(tmp_path.glob("*.png"))) >= len(chapters())
    # the README's picture is one the tour writes, and it is committed
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name in re.findall(r"\(figures/([\w.-]+\.png)\)", readme):
        assert (tmp_path / name).exists(), f"the tour no longer writes {name}"
        assert (Path(__file__).resolve().parents[1] / "figures" / name).exists()


def test_cli_tour_only_selects_chapters(tmp_path, capsys):
    first = chapters()[0].__name__.rsplit(".", 1)[-1][:4]
    assert main(["tour", "--quick", "--only", first, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert chapters()[0].TITLE in out
    assert all(m.TITLE not in out for m in chapters()[1:])
