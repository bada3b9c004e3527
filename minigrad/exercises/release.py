"""``minigrad exercises release OUT``: the student copy.

The copy holds the whole package with every solution region stubbed, the
exercise tests without their hidden parts, the notebooks, a blank
``answers.toml`` and ``minigrad/exercises/release_info.json`` (which marks
it as a student copy). Files are written in sorted order with fixed
contents, so the same source always gives byte-identical files.
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

from .answers import answers_template
from .fences import FenceError, scan_package, strip_hidden, stub_text
from .registry import all_exercises, all_questions

PACKAGE = "minigrad"
RELEASE_INFO = Path(PACKAGE) / "exercises" / "release_info.json"
EXERCISE_TESTS = Path("tests") / "exercises"
CONFTESTS = (Path("conftest.py"), Path("tests") / "conftest.py")
_SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints"}
_SKIP_SUFFIXES = {".pyc", ".nbi", ".nbc", ".so"}


def source_root() -> Path:
    """The folder holding the running ``minigrad`` package (a checkout or a release)."""
    return Path(__file__).resolve().parents[2]


def is_student_release(root: Path) -> bool:
    return (Path(root) / RELEASE_INFO).exists()


def marked_points(root: Path) -> dict:
    """exercise id -> total points of its tests (public and hidden), read from the
    ``@pytest.mark.exercise(id, points=N)`` decorators without importing the tests."""
    totals = {}
    for path in sorted((Path(root) / EXERCISE_TESTS).glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            if not (isinstance(f, ast.Attribute) and f.attr == "exercise"):
                continue
            if not node.args or not isinstance(node.args[0], ast.Constant):
                continue
            points = 1
            for kw in node.keywords:
                if kw.arg == "points" and isinstance(kw.value, ast.Constant):
                    points = kw.value.value
            if len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                points = node.args[1].value
            totals[node.args[0].value] = totals.get(node.args[0].value, 0) + points
    return totals


def check_catalog(root: Path | None = None) -> list:
    """Problems that would make a broken release: exercises without a fenced region
    or without tests, regions without an exercise, points that do not add up."""
    root = Path(root or source_root())
    problems = []
    exercises = {e.id: e for e in all_exercises()}
    try:
        regions = scan_package(root)
    except FenceError as e:
        return [str(e)]
    points = marked_points(root)
    for ex_id, e in exercises.items():
        if ex_id not in regions:
            problems.append(f"{ex_id}: declared but no '# BEGIN SOLUTION {ex_id}' region in {PACKAGE}/")
        if ex_id not in points:
            problems.append(f"{ex_id}: no test marked @pytest.mark.exercise({ex_id!r}, ...)")
        elif points[ex_id] != e.points:
            problems.append(f"{ex_id}: tests carry {points[ex_id]} points, the exercise says {e.points}")
    for ex_id, r in regions.items():
        if ex_id not in exercises:
            problems.append(f"{ex_id}: fenced in {r.path} but not declared in minigrad/exercises/ch*.py")
    for ex_id in points:
        if ex_id not in exercises:
            problems.append(f"{ex_id}: tests are marked for it but it is not declared")
    ids = [q.id for q in all_questions()] + list(exercises)
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        problems.append(f"ids used twice: {dup}")
    return problems


def _files(folder: Path):
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not (_SKIP_DIRS & set(p.parts)) and p.suffix not in _SKIP_SUFFIXES:
            yield p


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)


def release(out_dir, root: Path | None = None) -> Path:
    """Write the student copy of the package at ``root`` into ``out_dir``.

    Raises:
        FenceError: the catalog and the fenced regions disagree (see check_catalog).
        FileExistsError: ``out_dir`` exists and is not an earlier release.
    """
    root = Path(root or source_root())
    out = Path(out_dir)
    if is_student_release(root):
        raise FenceError(f"{root} is itself a student release: release from the instructor's checkout")
    problems = check_catalog(root)
    if problems:
        raise FenceError("cannot release:\n  " + "\n  ".join(problems))
    if out.exists() and any(out.iterdir()) and not is_student_release(out):
        raise FileExistsError(f"release: {out} exists and is not an earlier student release; "
                              f"choose an empty folder")
    for sub in (PACKAGE, "tests", "notebooks"):
        shutil.rmtree(out / sub, ignore_errors=True)

    exercises = sorted(all_exercises(), key=lambda e: (e.chapter, e.id))
    questions = sorted(all_questions(), key=lambda q: (q.chapter, q.id))
    titles = {e.id: e.title for e in exercises}

    for p in _files(root / PACKAGE):
        rel = p.relative_to(root)
        if rel == RELEASE_INFO:
            continue
        _write(out / rel, stub_text(p.read_text(), titles, rel) if p.suffix == ".py" else p.read_bytes())
    for p in _files(root / EXERCISE_TESTS):
        rel = p.relative_to(root)
        _write(out / rel, strip_hidden(p.read_text(), rel) if p.suffix == ".py" else p.read_bytes())
    for conftest in CONFTESTS:  # the same test setup the reference runs with
        if (root / conftest).exists():
            _write(out / conftest, (root / conftest).read_bytes())
    if (root / "notebooks").is_dir():
        for p in _files(root / "notebooks"):
            _write(out / p.relative_to(root), p.read_bytes())
    _write(out / "pyproject.toml", (root / "pyproject.toml").read_bytes())
    _write(out / "answers.toml", answers_template(questions))
    _write(out / "README.md", _student_readme(exercises, questions))
    info = {
        "exercises": [{"id": e.id, "title": e.title, "points": e.points} for e in exercises],
        "questions": [{"id": q.id, "kind": q.kind, "points": q.points} for q in questions],
    }
    _write(out / RELEASE_INFO, json.dumps(info, indent=1, sort_keys=True) + "\n")
    return out


def _student_readme(exercises, questions) -> str:
    total = sum(e.points for e in exercises) + sum(q.points for q in questions)
    lines = [
        "# minigrad: student copy",
        "",
        "The library is complete except for the exercises: each one is a function body",
        "between `# BEGIN SOLUTION <id>` and `# END SOLUTION` that now raises",
        "`NotImplementedError`. Write your code between the markers (keep the markers).",
        "Answer the exam-style questions in `answers.toml`.",
        "",
        "```",
        'python3 -m venv .venv && .venv/bin/pip install -e ".[dev]"',
        ".venv/bin/minigrad exercises list      # what to do",
        ".venv/bin/minigrad grade               # your score so far",
        "```",
        "",
        "Your local grade runs the public tests only; an exercise that builds on one you",
        "have not finished may fail here too. The official grade uses the reference",
        "for everything except the exercise being graded, so it never cascades.",
        "",
        f"{len(exercises)} coding exercises and {len(questions)} questions, {total} points.",
        "",
        "| id | points | title |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {e.id} | {e.points} | {e.title} |" for e in exercises]
    return "\n".join(lines) + "\n"
