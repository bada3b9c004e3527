"""The grader's modes: a student's local check in a release, the official grade with
--reference, and the Gradescope bundle run in a fake /autograder tree."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from minigrad.exercises import all_exercises, all_questions
from minigrad.exercises.answers import question_key
from minigrad.exercises.fences import replace_region, scan_package, stub_line
from minigrad.exercises.grade import grade
from minigrad.exercises.gradescope import write_bundle
from minigrad.exercises.release import release, source_root

ROOT = source_root()
REGIONS = scan_package(ROOT)
EX = "ch1.unbroadcast"
pytestmark = pytest.mark.skipif(EX not in REGIONS, reason="chapter 1's exercises are not declared")


def _ref_body(ex_id):
    r = REGIONS[ex_id]
    return r.body((ROOT / r.path).read_text().splitlines(keepends=True))


def _put(root: Path, ex_id: str, body) -> None:
    r = REGIONS[ex_id]
    p = root / r.path
    p.write_text(replace_region(p.read_text(), ex_id, body, r.path))


def test_local_grade_in_a_release_runs_public_tests_and_says_hidden_ones_exist(tmp_path):
    student = release(tmp_path / "student")
    _put(student, EX, _ref_body(EX))
    wrong = "ch1.matmul_backward"  # off by a factor: numpy's mismatch report is the feedback
    body = _ref_body(wrong)
    _put(student, wrong, [ln.replace("return ga, gb", "return 2 * ga if ga is not None else ga, gb")
                          for ln in body])
    rows = {r.id: r for r in grade(student, only=[EX, wrong, *[q.id for q in all_questions()]],
                                   progress=False)}
    assert rows[wrong].score == 0
    assert "Mismatched elements" in rows[wrong].output and "Max absolute difference" in rows[wrong].output
    assert len(rows[wrong].output.splitlines()) <= 14
    ex = next(e for e in all_exercises() if e.id == EX)
    public = [t for t in rows[EX].tests if not t.hidden]
    assert public and all(t.score == t.max_score for t in public)
    assert rows[EX].score == sum(t.max_score for t in public) < ex.points
    assert rows[EX].output == (f"public tests {len(public)}/{len(public)} passed; "
                               f"hidden tests are graded by the instructor")
    # questions are never marked against the student's own (possibly stubbed) library
    for q in all_questions():
        assert rows[q.id].score == 0 and rows[q.id].output == "no answer"


def test_official_results_need_a_reference(tmp_path, capsys):
    from minigrad.cli import main

    (tmp_path / "answers.toml").write_text("")
    assert main(["grade", str(tmp_path), "--json", str(tmp_path / "r.json")]) == 2
    assert "--reference" in capsys.readouterr().err and not (tmp_path / "r.json").exists()
    assert main(["grade", str(tmp_path), "--reference", str(tmp_path)]) == 2
    assert "instructor's checkout" in capsys.readouterr().err


def _autograde(tree: Path, submission: Path) -> dict:
    sub = tree / "submission"
    shutil.rmtree(sub, ignore_errors=True)
    shutil.copytree(submission, sub)
    shutil.rmtree(tree / "results", ignore_errors=True)
    q = next(q for q in all_questions() if q.kind == "numeric")
    env = {**os.environ, "MINIGRAD_AUTOGRADER_ROOT": str(tree),
           "MINIGRAD_AUTOGRADER_PYTHON": sys.executable,
           "MINIGRAD_GRADE_ARGS": f"--only {EX} {q.id}"}
    env.pop("PYTHONPATH", None)
    subprocess.run(["bash", str(tree / "run_autograder")], env=env, capture_output=True,
                   timeout=300, check=True)
    return json.loads((tree / "results" / "results.json").read_text())


def test_gradescope_bundle_grades_a_fake_autograder_tree(tmp_path):
    bundle = write_bundle(tmp_path / "autograder.zip")
    assert write_bundle(tmp_path / "again.zip").read_bytes() == bundle.read_bytes()
    tree = tmp_path / "autograder"
    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
        assert {"setup.sh", "run_autograder", "pyproject.toml"} <= names
        assert "tests/exercises/test_ch01.py" in names and "minigrad/tensor.py" in names
        assert "BEGIN HIDDEN TESTS" in zf.read("tests/exercises/test_ch01.py").decode()
        zf.extractall(tree / "source")
    shutil.copy2(tree / "source" / "run_autograder", tree / "run_autograder")  # as Gradescope does

    q = next(q for q in all_questions() if q.kind == "numeric")
    r, ex = REGIONS[EX], next(e for e in all_exercises() if e.id == EX)
    solved, unsolved = tmp_path / "solved", tmp_path / "unsolved"
    for sub, body, answer in [(solved, _ref_body(EX), repr(question_key(q)["value"])),
                              (unsolved, [stub_line(r.indent, EX, ex.title)], '""')]:
        (sub / r.path).parent.mkdir(parents=True)
        shutil.copy2(ROOT / r.path, sub / r.path)
        _put(sub, EX, body)
        (sub / "answers.toml").write_text(f'["{q.id}"]\nanswer = {answer}\n')

    good = _autograde(tree, solved)
    assert good["score"] == ex.points + q.points
    assert good["execution_time"] > 0
    tests = {t["name"]: t for t in good["tests"]}
    ex_tests = [t for n, t in tests.items() if n.startswith(EX + ": ")]
    assert sum(t["max_score"] for t in ex_tests) == ex.points
    assert {t["visibility"] for t in ex_tests} == {"visible", "after_published"}
    assert all(t["output"] == "passed" for t in ex_tests)

    bad = _autograde(tree, unsolved)
    assert bad["score"] == 0
    assert all("not attempted" in t["output"] for t in bad["tests"] if t["name"].startswith(EX))
    assert any(t["output"] == "no answer" for t in bad["tests"])
