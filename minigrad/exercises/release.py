"""``minigrad exercises release OUT [--chapters 3] [--seed S]``: the student copy.

The copy holds the project's tracked files (``git ls-files``, or the list in
``release-manifest.txt`` outside a git checkout), so an editor backup or a
stray notebook never ships: the package, the exercise tests without their
hidden parts, the notebooks, a blank ``answers.toml``,
``minigrad/exercises/catalog.json`` (the questions without their answers, in
place of ``chNN.py``) and ``minigrad/exercises/release_info.json`` (which
marks it as a student copy). Any other file is copied as it is, so one holding
a fence marker (a committed ``optim.py.orig``, a notebook script with a fenced
solution) stops the release instead of shipping its solution or hidden tests.

A release is cut for an assignment. ``--chapters 3`` (or ``1,3``, ``1-4``)
names the assigned chapters: they are stubbed, every chapter after the last
assigned one is stubbed too (its notebook runs up to its first stub), and the
others ship solved, as a course hands out the solutions once a deadline has
passed, so the assigned chapter's notebook runs to its end once its own
exercises are solved. No ``--chapters``: everything stubbed.

Choice options are shuffled with ``seed`` (recorded in release_info.json);
``minigrad exercises key`` writes the answers in that order. Files are
written in sorted order with fixed contents, so the same source and seed
always give byte-identical files.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path

from .answers import answers_template
from .fences import FenceError, scan_package, strip_hidden
from .fences import release_text as _release_text
from .registry import (CATALOG, Question, all_exercises, all_questions, key_for,
                       released_catalog_json, shuffled_choices)

PACKAGE = "minigrad"
RELEASE_INFO = Path(PACKAGE) / "exercises" / "release_info.json"
RELEASE_CATALOG = Path(PACKAGE) / "exercises" / CATALOG.name
EXERCISE_TESTS = Path("tests") / "exercises"
CONFTESTS = (Path("conftest.py"), Path("tests") / "conftest.py")
MANIFEST = "release-manifest.txt"
_SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints"}
_SKIP_SUFFIXES = {".pyc", ".nbi", ".nbc", ".so"}
_FENCE_MARKER = re.compile(r"^[ \t]*# BEGIN (?:SOLUTION|KERNEL|HIDDEN TESTS)\b.*$", re.M)


def source_root() -> Path:
    """The folder holding the running ``minigrad`` package (a checkout or a release)."""
    return Path(__file__).resolve().parents[2]


def is_student_release(root: Path) -> bool:
    return (Path(root) / RELEASE_INFO).exists()


def exercise_mark(node) -> tuple | None:
    """(exercise id, points) of a ``pytest.mark.exercise(id, points=N)`` call node, read
    without importing the test; None for any other node. Points default to 1."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "exercise" and node.args
            and isinstance(node.args[0], ast.Constant)):
        return None
    points = 1
    for kw in node.keywords:
        if kw.arg == "points" and isinstance(kw.value, ast.Constant):
            points = kw.value.value
    if len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
        points = node.args[1].value
    return node.args[0].value, points


def marked_points(root: Path) -> dict:
    """exercise id -> total points of its tests (public and hidden), read from the
    ``@pytest.mark.exercise(id, points=N)`` decorators without importing the tests."""
    totals = {}
    for path in sorted((Path(root) / EXERCISE_TESTS).glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            mark = exercise_mark(node)
            if mark is not None:
                totals[mark[0]] = totals.get(mark[0], 0) + mark[1]
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


def parse_chapters(spec) -> list:
    """Chapter numbers from ``"3"``, ``"1,3"``, ``"1-4"`` or ``"1-3,6"`` (sorted, unique)."""
    chapters = set()
    for part in str(spec).replace(" ", "").split(","):
        lo, sep, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ValueError(f"--chapters: expected numbers like 3, 1,3 or 1-4, got {spec!r}") from None
        if first < 1 or last < first:
            raise ValueError(f"--chapters: {part!r} is not a chapter range (1-based, low-high)")
        chapters.update(range(first, last + 1))
    return sorted(chapters)


def release_plan(assigned, chapters) -> tuple:
    """(stubbed, solved) chapters of a release for the ``assigned`` chapters, out
    of all ``chapters``: the assigned ones and every later one are stubbed, the
    earlier unassigned ones ship solved. ``assigned=None``: all stubbed."""
    chapters = sorted(set(chapters))
    if assigned is None:
        return chapters, []
    if not assigned:
        raise ValueError("release: chapters is empty; pass None to stub every chapter")
    last = max(assigned)
    stubbed = [c for c in chapters if c in assigned or c > last]
    return stubbed, [c for c in chapters if c not in stubbed]


def notebook_chapters(root: Path) -> dict:
    """chapter number -> its notebook ``notebooks/NN_<topic>.ipynb`` under ``root``."""
    return {int(p.name[:2]): p for p in sorted((Path(root) / "notebooks").glob("[0-9][0-9]_*.ipynb"))}


def tracked_files(root: Path) -> list:
    """The project's files as the repository knows them, relative to ``root``:
    ``git ls-files`` in a git checkout, else the lines of ``release-manifest.txt``
    (made with ``git ls-files > release-manifest.txt``). Untracked files (editor
    backups, merge leftovers, notebook scratch) are never released."""
    root = Path(root)
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True,
                             check=True, timeout=60).stdout.decode()
        names = [n for n in out.split("\0") if n]
    except (OSError, subprocess.SubprocessError):
        names = None
    if names is None or not names:
        manifest = root / MANIFEST
        if not manifest.exists():
            raise FileNotFoundError(f"release: {root} is not a git checkout and has no {MANIFEST}; "
                                    f"write one with `git ls-files > {MANIFEST}`")
        names = [n.strip() for n in manifest.read_text().splitlines() if n.strip()]
    return sorted(Path(n) for n in names if (root / n).is_file())


def _released(rel: Path) -> bool:
    """Whether tracked file ``rel`` belongs in a student copy."""
    if _SKIP_DIRS & set(rel.parts) or rel.suffix in _SKIP_SUFFIXES:
        return False
    if rel in (RELEASE_INFO, RELEASE_CATALOG):
        return False
    if rel.parent == Path(PACKAGE) / "exercises" and rel.name[:2] == "ch" and rel.name[2:4].isdigit():
        return False  # the chapter catalogs hold the answers; catalog.json replaces them
    top = rel.parts[0]
    return (top == PACKAGE or rel.is_relative_to(EXERCISE_TESTS) or top == "notebooks"
            or rel in CONFTESTS or rel == Path("pyproject.toml"))


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)


def released_questions(seed: int, chapters=None) -> list:
    """The questions as a release made with ``seed`` holds them (no answers,
    shuffled options), of ``chapters`` or all."""
    data = json.loads(released_catalog_json(seed, chapters))
    return [Question(**{**q, "variables": tuple(q["variables"])}) for q in data["questions"]]


def release(out_dir, root: Path | None = None, chapters=None, seed: int = 0) -> Path:
    """Write the student copy of the project at ``root`` into ``out_dir``.

    Args:
        chapters: the assigned chapter numbers (see :func:`release_plan`); None
            stubs every chapter.
        seed: shuffles the options of choice questions.

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
    seed = int(seed)
    all_ex = sorted(all_exercises(), key=lambda e: (e.chapter, e.id))
    known = {e.chapter for e in all_ex} | set(notebook_chapters(root))
    unknown = sorted(set(chapters or ()) - known)
    if unknown:
        raise ValueError(f"release: chapter(s) {unknown} have no exercises and no notebook; "
                         f"chapters are {sorted(known)}")
    stubbed, solved = release_plan(chapters, {e.chapter for e in all_ex})
    exercises = [e for e in all_ex if e.chapter in stubbed]
    titles = {e.id: e.title for e in all_ex}
    stubbed_ids = {e.id for e in exercises}
    for sub in (PACKAGE, "tests", "notebooks"):
        shutil.rmtree(out / sub, ignore_errors=True)

    for rel in tracked_files(root):
        if not _released(rel):
            continue
        src = root / rel
        if rel.parts[0] == PACKAGE and rel.suffix == ".py":
            _write(out / rel, _release_text(src.read_text(), titles, stubbed_ids, rel))
        elif rel.is_relative_to(EXERCISE_TESTS) and rel.suffix == ".py":
            _write(out / rel, strip_hidden(src.read_text(), rel))
        else:
            data = src.read_bytes()
            marker = _FENCE_MARKER.search(data.decode("utf-8", "replace"))
            if marker:  # copied as it is, it would ship the solution or the hidden tests
                raise FenceError(f"cannot release: {rel} holds '{marker[0].strip()}' but is "
                                 f"copied verbatim (only {PACKAGE}/**.py and "
                                 f"{EXERCISE_TESTS}/**.py are stubbed); untrack it or move "
                                 f"the code into the package")
            _write(out / rel, data)
    _write(out / RELEASE_CATALOG, released_catalog_json(seed, stubbed))
    questions = released_questions(seed, stubbed)
    _write(out / "answers.toml", answers_template(questions))
    _write(out / "README.md", _student_readme(exercises, questions))
    info = {
        "seed": seed,
        "chapters": stubbed,
        "assigned": sorted(chapters) if chapters is not None else stubbed,
        "solved": solved,
        "exercises": [{"id": e.id, "title": e.title, "points": e.points} for e in exercises],
        "questions": [{"id": q.id, "kind": q.kind, "points": q.points} for q in questions],
    }
    _write(out / RELEASE_INFO, json.dumps(info, indent=1, sort_keys=True) + "\n")
    return out


def release_info(root: Path) -> dict:
    """The release_info.json of the student copy at ``root``."""
    return json.loads((Path(root) / RELEASE_INFO).read_text())


def answer_key(seed: int, chapters=None) -> str:
    """The instructor's filled answers.toml for the release made with ``seed``
    whose stubbed chapters are ``chapters`` (None: all): choice letters in that
    release's order, numbers as the reference computes them, formulas as
    ``Question.formula`` states them (checked against the answer function by
    the suite). Needs the instructor's checkout (the answers)."""
    lines = [f"# Answer key of the release made with seed {seed}: keep it away from students.", ""]
    for q in sorted(all_questions(), key=lambda q: (q.chapter, q.id)):
        if chapters is not None and q.chapter not in chapters:
            continue
        if q.answer is None:
            raise FenceError("answer_key: this is a student release; make the key from the "
                             "instructor's checkout")
        if q.kind == "choice":
            value = key_for(q, seed)
            shown = shuffled_choices(q, seed)[value]
            lines.append(f"# {value}) {shown}")
        elif q.kind == "numeric":
            value = repr(float(q.answer()))
        else:
            if not q.formula:
                raise FenceError(f"answer_key: expression question {q.id} has no formula")
            value = q.formula
        lines += [f'["{q.id}"]', f"answer = {json.dumps(value)}", ""]
    return "\n".join(lines)


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
