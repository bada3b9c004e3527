"""``minigrad grade [PATH]``: score a student copy, exercise by exercise.

With the instructor's checkout installed (the reference), each attempted
exercise is graded in its own *hybrid*: a copy of the reference package with
only that exercise's region taken from the student. So a student who left
chapter 3 unfinished still earns chapter 4's points for chapter 4's work:
grading never cascades. Exercises whose region is identical to the
reference's are batched into one run; untouched stubs score 0 without a run.

From a student copy (no reference at hand) the public tests run against the
student's own package, one exercise per process.

Every run is a fresh ``python -m pytest`` subprocess (never a fork: numba's
OpenMP layer kills a child forked after a parallel region) in its own
session with a time limit, so an infinite loop, a crash or ``sys.exit``
costs only that exercise's points.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .answers import AnswerError, grade_question, load_answers
from .fences import FenceError, region_body, replace_region, scan_package, stub_line
from .registry import all_exercises, all_questions
from .release import CONFTESTS, EXERCISE_TESTS, PACKAGE, is_student_release, source_root

_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc", ".ipynb_checkpoints")


@dataclass
class Result:
    """One row of the grade: an exercise or a question."""

    id: str
    title: str
    score: float
    max_score: float
    output: str
    kind: str = "exercise"


@dataclass
class _Job:
    exercise_ids: list
    swap: tuple | None  # (relative path, region id, student body lines) or None
    timeout: float


def _copy_tree(src_root: Path, dst: Path) -> None:
    shutil.copytree(src_root / PACKAGE, dst / PACKAGE, ignore=_IGNORE)
    shutil.copytree(src_root / EXERCISE_TESTS, dst / EXERCISE_TESTS, ignore=_IGNORE)
    for conftest in CONFTESTS:
        if (src_root / conftest).exists():
            shutil.copy2(src_root / conftest, dst / conftest)
    (dst / "pytest.ini").write_text("[pytest]\n")  # stop pytest from finding another config


def _run_job(job: _Job, code_root: Path, workdir: Path) -> dict:
    """Run one job's tests in a fresh copy; return exercise id -> (earned, message)."""
    _copy_tree(code_root, workdir)
    if job.swap is not None:
        rel, ex_id, body = job.swap
        target = workdir / rel
        target.write_text(replace_region(target.read_text(), ex_id, body, rel))
    points_file = workdir / "points.json"
    cmd = [sys.executable, "-m", "pytest", str(workdir / EXERCISE_TESTS), "-q", "-p", "no:cacheprovider",
           "-p", "minigrad.exercises.pytest_plugin", "--points-json", str(points_file),
           "-o", "addopts=", "--tb=line"]
    for ex_id in job.exercise_ids:
        cmd += ["--exercise", ex_id]
    env = {**os.environ, "PYTHONPATH": str(workdir), "MPLBACKEND": "Agg",
           "PYTHONDONTWRITEBYTECODE": "1", "MINIGRAD_FIGURES": str(workdir / "figures")}
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, text=True)
    try:
        out, _ = proc.communicate(timeout=job.timeout)
        status = None
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole session: pytest and anything it started
        out, _ = proc.communicate()
        status = f"timed out after {job.timeout:g} s (an endless loop?)"
    records = []
    if points_file.exists():
        try:
            records = json.loads(points_file.read_text())
        except json.JSONDecodeError:
            records = []
    results = {}
    for ex_id in job.exercise_ids:
        mine = [r for r in records if r["exercise"] == ex_id]
        earned = sum(r["points"] for r in mine if r["passed"])
        failed = [r for r in mine if not r["passed"]]
        if status:
            results[ex_id] = (0, status)
        elif not mine:
            tail = " | ".join(out.strip().splitlines()[-3:]) if out else ""
            why = (f"crashed (exit code {proc.returncode})" if proc.returncode not in (0, 1, 5)
                   else "no test ran")
            results[ex_id] = (0, f"{why}: {tail}"[:400])
        elif failed:
            name = failed[0]["test"].split("::")[-1]
            results[ex_id] = (earned, f"{len(failed)} of {len(mine)} tests failed; {name}: "
                                      f"{failed[0]['message']}"[:400])
        else:
            results[ex_id] = (earned, f"all {len(mine)} tests passed")
    return results


def grade(path=".", timeout: float = 120.0, only=None, jobs: int = 2, progress: bool = True) -> list:
    """Grade the student copy at ``path``; return a list of :class:`Result`."""
    sub = Path(path).resolve()
    if not (sub / PACKAGE).is_dir():
        raise FileNotFoundError(f"grade: no {PACKAGE}/ package in {sub}")
    ref = source_root()
    reference_mode = not is_student_release(ref) and (ref / EXERCISE_TESTS).is_dir()
    code_root = ref if reference_mode else sub
    exercises = sorted(all_exercises(), key=lambda e: (e.chapter, e.id))
    if only:
        unknown = set(only) - {e.id for e in exercises} - {q.id for q in all_questions()}
        if unknown:
            raise KeyError(f"grade: unknown exercise ids {sorted(unknown)}")
        exercises = [e for e in exercises if e.id in only]
    regions = scan_package(code_root)

    results, batch, jobs_todo = {}, [], []
    for e in exercises:
        r = regions.get(e.id)
        if r is None:
            raise FenceError(f"grade: exercise {e.id} has no fenced region in {code_root}")
        student_file = sub / r.path
        body = region_body(student_file.read_text(), e.id, r.path) if student_file.exists() else None
        if body is None:
            results[e.id] = (0, f"no '# BEGIN SOLUTION {e.id}' region in {r.path}: keep the markers")
            continue
        if body == [stub_line(r.indent, e.id, e.title)]:
            results[e.id] = (0, "not attempted: still raises NotImplementedError")
            continue
        if reference_mode:
            ref_body = r.body((ref / r.path).read_text().splitlines(keepends=True))
            if body == ref_body:
                batch.append(e.id)
            else:
                jobs_todo.append(_Job([e.id], (r.path, e.id, body), timeout))
        else:
            jobs_todo.append(_Job([e.id], None, timeout))
    if batch:
        jobs_todo.insert(0, _Job(batch, None, timeout * len(batch)))  # each keeps its own limit

    with tempfile.TemporaryDirectory(prefix="minigrad-grade-") as tmp:
        def run(ij):
            i, job = ij
            return _run_job(job, code_root, Path(tmp) / f"job{i}")

        if jobs_todo:
            from tqdm import tqdm
            with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
                for res in tqdm(pool.map(run, enumerate(jobs_todo)), total=len(jobs_todo),
                                desc="grading", unit="run", file=sys.stderr, disable=not progress):
                    results.update(res)

    rows = [Result(e.id, e.title, *results[e.id][:1], e.points, results[e.id][1]) for e in exercises]
    answers_path = sub / "answers.toml"
    try:
        answers = load_answers(answers_path)
        bad_file = None
    except AnswerError as err:
        answers, bad_file = {}, str(err)
    for q in sorted(all_questions(), key=lambda q: (q.chapter, q.id)):
        if only and q.id not in only:
            continue
        if bad_file:
            rows.append(Result(q.id, q.prompt.splitlines()[0][:60], 0, q.points, bad_file, "question"))
            continue
        qr = grade_question(q, answers.get(q.id))
        rows.append(Result(q.id, q.prompt.splitlines()[0][:60], qr.score, qr.max_score, qr.output,
                           "question"))
    return rows


def report(rows, stream=None) -> str:
    """The per-exercise table and the total, as printed by ``minigrad grade``."""
    stream = stream or sys.stdout
    w = max([len(r.id) for r in rows] + [8])
    lines = [f"{'exercise':<{w}}  {'points':>7}  result", f"{'-' * w}  {'-' * 7}  ------"]
    for r in rows:
        lines.append(f"{r.id:<{w}}  {f'{r.score:g}/{r.max_score:g}':>7}  {r.output}")
    got, total = sum(r.score for r in rows), sum(r.max_score for r in rows)
    lines.append(f"{'total':<{w}}  {f'{got:g}/{total:g}':>7}")
    text = "\n".join(lines)
    print(text, file=stream)
    return text


def gradescope_json(rows) -> dict:
    """Gradescope's autograder results format (results.json)."""
    return {
        "score": sum(r.score for r in rows),
        "visibility": "visible",
        "stdout_visibility": "visible",
        "tests": [{"name": f"{r.id}: {r.title}", "score": r.score, "max_score": r.max_score,
                   "output": r.output, "visibility": "visible"} for r in rows],
    }


__all__ = ["Result", "grade", "gradescope_json", "report"]
