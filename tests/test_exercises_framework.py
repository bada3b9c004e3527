"""The exercise framework itself: fences, the student release, answers, grading."""

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from minigrad.exercises import all_exercises, all_questions
from minigrad.exercises.answers import (
    AnswerError,
    evaluate,
    grade_question,
    load_answers,
    question_key,
)
from minigrad.exercises.fences import (
    FenceError,
    find_regions,
    region_body,
    replace_region,
    scan_package,
    strip_hidden,
    stub_text,
)
from minigrad.exercises.grade import grade, gradescope_json, report
from minigrad.exercises.registry import Question
from minigrad.exercises.release import check_catalog, release, source_root

ROOT = source_root()

CODE = '''def f(x):
    y = x + 1
    # BEGIN SOLUTION ch9.f
    z = y * 2
    return z
    # END SOLUTION


def g():
    # BEGIN SOLUTION ch9.g
    return 3
    # END SOLUTION
'''


# -- fences -----------------------------------------------------------------------

def test_regions_are_found_with_their_ids_and_bodies():
    regions = find_regions(CODE)
    assert [r.id for r in regions] == ["ch9.f", "ch9.g"]
    lines = CODE.splitlines(keepends=True)
    assert "".join(regions[0].body(lines)) == "    z = y * 2\n    return z\n"


def test_stubbing_replaces_each_body_and_keeps_the_markers():
    out = stub_text(CODE, {"ch9.f": "double it", "ch9.g": "three"})
    assert "z = y * 2" not in out and "return 3" not in out
    assert out.count("raise NotImplementedError") == 2
    assert 'raise NotImplementedError("ch9.f: double it")' in out
    assert [r.id for r in find_regions(out)] == ["ch9.f", "ch9.g"]
    ns = {}
    exec(compile(out, "stub", "exec"), ns)  # the stubbed code still parses and runs
    with pytest.raises(NotImplementedError, match="ch9.g"):
        ns["g"]()


def test_a_student_body_swapped_in_runs():
    body = region_body(CODE, "ch9.f")
    new = replace_region(stub_text(CODE, {"ch9.f": "t", "ch9.g": "t"}), "ch9.f", body)
    ns = {}
    exec(compile(new, "swap", "exec"), ns)
    assert ns["f"](1) == 4


@pytest.mark.parametrize("text, match", [
    ("# BEGIN SOLUTION ch1.a\n# BEGIN SOLUTION ch1.b\n# END SOLUTION\n", "inside the open region"),
    ("# BEGIN SOLUTION ch1.a\nx = 1\n", "no END SOLUTION"),
    ("x = 1\n# END SOLUTION\n", "without a BEGIN"),
])
def test_malformed_fences_are_reported_with_their_line(text, match):
    with pytest.raises(FenceError, match=match):
        find_regions(text)


def test_hidden_tests_are_stripped():
    text = "a = 1\n# BEGIN HIDDEN TESTS\ndef test_secret():\n    pass\n# END HIDDEN TESTS\nb = 2\n"
    assert strip_hidden(text) == "a = 1\nb = 2\n"
    with pytest.raises(FenceError):
        strip_hidden("# BEGIN HIDDEN TESTS\n")


# -- answers ---------------------------------------------------------------------------

def test_arithmetic_answers_evaluate_without_eval():
    assert evaluate("7e9 * 16") == 7e9 * 16
    assert evaluate("2*N**2*d", {"N": 3, "d": 5}) == 90
    assert evaluate("N^2", {"N": 4}) == 16
    for bad in ["__import__('os').system('true')", "N.real", "[1][0]", "lambda: 1", "open('x')"]:
        with pytest.raises(AnswerError):
            evaluate(bad, {"N": 1})


def test_huge_powers_are_an_error_not_a_hang():
    """Exponents are capped, and a power is taken in floats, so nesting capped powers
    overflows at once rather than building an integer that would hang the grader."""
    for bad in ["2**100000", "((9**999)**999)**999", "ceil(1e300)**999**1"]:
        with pytest.raises(AnswerError):
            evaluate(bad)
    assert evaluate("2**10") == 1024


def test_question_kinds_are_graded_against_the_computed_answer():
    num = Question("ch9.q.n", "numeric", 2, "p", answer=lambda: 1000.0, rtol=0.01)
    assert grade_question(num, "999.5").score == 2
    assert grade_question(num, 1200).score == 0
    assert grade_question(num, None).output == "no answer"
    ch = Question("ch9.q.c", "choice", 1, "p", answer=lambda: "b", choices={"a": "x", "b": "y"})
    assert grade_question(ch, "B").score == 1
    assert grade_question(ch, "a").score == 0
    assert "not one of" in grade_question(ch, "z").output
    ex = Question("ch9.q.e", "expression", 3, "p", answer=lambda N, d: 4 * N * d, variables=("N", "d"))
    assert grade_question(ex, "2*(N*d)*2").score == 3
    assert grade_question(ex, "4*N*N").score == 0
    assert grade_question(ex, "4*N*k").score == 0


def test_answers_file_reads_quoted_dotted_keys(tmp_path):
    p = tmp_path / "answers.toml"
    p.write_text('["ch1.q.a"]\nanswer = "2*3"\n["ch1.q.b"]\nanswer = 5\n')
    assert load_answers(p) == {"ch1.q.a": "2*3", "ch1.q.b": 5}
    p.write_text("not toml [")
    with pytest.raises(AnswerError):
        load_answers(p)


def test_an_answers_file_python_cannot_read_is_an_answer_error(tmp_path):
    """Each of these crashed the whole grade (every exercise's points with it): the
    grader catches AnswerError, and only that, around the answers."""
    p = tmp_path / "answers.toml"
    for data in ['["a"]\nanswer = "3" # caf\xe9\n'.encode("latin-1"),   # not UTF-8
                 b'["a"]\nanswer = ' + b"9" * 5000 + b"\n",            # past int's 4300 digits
                 b'["a"]\nanswer = ' + b"[" * 5000 + b"]" * 5000]:       # RecursionError
        p.write_bytes(data)
        with pytest.raises(AnswerError):
            load_answers(p)
    p.write_bytes(b'\xef\xbb\xbf["a"]\nanswer = 3\n')                 # Notepad's byte-order mark
    assert load_answers(p) == {"a": 3}
    num = Question("ch9.q.n", "numeric", 2, "p", answer=lambda: 1000.0)
    got = grade_question(num, int("9" * 400))                          # float() overflows
    assert got.score == 0 and "too large" in got.output


# -- the catalog and the release ---------------------------------------------------------

needs_exercises = pytest.mark.skipif(not all_exercises(), reason="no exercises declared yet")


def test_catalog_is_consistent():
    assert check_catalog(ROOT) == []


@pytest.fixture(scope="module")
def student_copy(tmp_path_factory):
    return release(tmp_path_factory.mktemp("release") / "student")


def _digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@needs_exercises
def test_release_is_deterministic(student_copy, tmp_path):
    again = release(tmp_path / "again")
    assert _digest(student_copy) == _digest(again)


@needs_exercises
def test_release_stubs_every_exercise_and_drops_hidden_tests(student_copy):
    regions = scan_package(student_copy)
    assert set(regions) == {e.id for e in all_exercises()}
    for ex_id, r in regions.items():
        body = "".join(r.body((student_copy / r.path).read_text().splitlines(keepends=True)))
        assert body.strip().startswith(f'raise NotImplementedError("{ex_id}:')
    for p in (student_copy / "tests").rglob("*.py"):
        assert "BEGIN HIDDEN TESTS" not in p.read_text()
    hidden = [p for p in (ROOT / "tests" / "exercises").glob("test_*.py") if "BEGIN HIDDEN" in p.read_text()]
    assert hidden, "every chapter's exercise tests should include hidden ones"
    assert (student_copy / "answers.toml").exists()
    assert (student_copy / "conftest.py").exists(), "the release runs its tests with the reference's setup"


@needs_exercises
def test_release_imports_cleanly_and_is_the_copy_that_imports(student_copy):
    out = subprocess.run([sys.executable, "-c", "import minigrad, minigrad.exercises.registry as r;"
                          "print(minigrad.__file__); print(len(r.all_exercises()))"],
                         cwd=student_copy, env={**os.environ, "PYTHONPATH": str(student_copy)},
                         capture_output=True, text=True, check=True)
    path, n = out.stdout.split()
    assert Path(path).resolve().is_relative_to(student_copy.resolve())
    assert int(n) == len(all_exercises())


@needs_exercises
def test_public_tests_of_the_release_fail_only_on_the_stubs(student_copy, tmp_path):
    points = tmp_path / "points.json"
    subprocess.run([sys.executable, "-m", "pytest", "tests/exercises", "-q", "-o", "addopts=",
                    "-p", "minigrad.exercises.pytest_plugin", "-p", "no:cacheprovider",
                    "--points-json", str(points)],
                   cwd=student_copy, env={**os.environ, "PYTHONPATH": str(student_copy)},
                   capture_output=True, text=True, timeout=600)
    records = json.loads(points.read_text())
    assert records, "the release's public tests did not run"
    for r in records:
        assert not r["passed"], f"{r['test']} passes against the stubs: it does not test the exercise"
        assert "NotImplementedError" in r["message"], f"{r['test']} failed for another reason: {r['message']}"


@needs_exercises
def test_untouched_release_scores_zero_with_every_stub_reported(student_copy):
    rows = grade(student_copy, progress=False)
    ex_rows = [r for r in rows if r.kind == "exercise"]
    assert len(ex_rows) == len(all_exercises())
    assert all(r.score == 0 and "NotImplementedError" in r.output for r in ex_rows)
    assert all(r.score == 0 and r.output == "no answer" for r in rows if r.kind == "question")


def _write_correct_answers(path: Path):
    lines = []
    for q in all_questions():
        if q.kind == "expression":
            continue  # formulas are checked in test_question_kinds...; numbers here
        key = question_key(q, 0)  # the letter in the release made with the default seed
        lines += [f'["{q.id}"]', f"answer = {json.dumps(key.get('letter', key.get('value')))}"]
    path.write_text("\n".join(lines) + "\n")


@needs_exercises
def test_reference_scores_full_marks(tmp_path):
    rows = grade(ROOT, reference=ROOT, progress=False)
    for r in rows:
        if r.kind == "exercise":
            assert r.score == r.max_score, f"{r.id}: {r.output}"
    text = report(rows, stream=open(os.devnull, "w"))
    assert "total" in text
    js = gradescope_json(rows)
    assert {"name", "score", "max_score", "output", "visibility"} <= set(js["tests"][0])


def test_correct_numeric_and_choice_answers_score_full(tmp_path):
    if not all_questions():
        pytest.skip("no questions declared yet")
    (tmp_path / "minigrad").mkdir()
    _write_correct_answers(tmp_path / "answers.toml")
    rows = grade(tmp_path, reference=ROOT, only=[q.id for q in all_questions()], progress=False)
    for r in rows:
        q = next(q for q in all_questions() if q.id == r.id)
        assert r.score == (0 if q.kind == "expression" else r.max_score), f"{r.id}: {r.output}"


@needs_exercises
def test_grading_is_contained_and_does_not_cascade(student_copy, tmp_path):
    import shutil

    sub = tmp_path / "sub"
    shutil.copytree(student_copy, sub)
    exercises = sorted(all_exercises(), key=lambda e: (e.chapter, e.id))
    looping, exiting, quitting, correct = exercises[0], exercises[1], exercises[2], exercises[-1]
    ref_regions = scan_package(ROOT)

    def put(ex, body_lines):
        r = ref_regions[ex.id]
        p = sub / r.path
        p.write_text(replace_region(p.read_text(), ex.id, body_lines, r.path))

    ind = ref_regions[looping.id].indent
    put(looping, [f"{ind}while True:\n", f"{ind}    pass\n"])
    ind = ref_regions[exiting.id].indent
    put(exiting, [f"{ind}import os\n", f"{ind}os._exit(3)\n"])           # kills the process
    ind = ref_regions[quitting.id].indent
    put(quitting, [f"{ind}import sys\n", f"{ind}sys.exit(0)\n"])          # a polite exit
    r = ref_regions[correct.id]
    put(correct, r.body((ROOT / r.path).read_text().splitlines(keepends=True)))

    # check_code=False: let the exits run, so the sandbox (not the syntax check) contains them
    rows = {x.id: x for x in grade(sub, reference=ROOT, timeout=15, check_code=False,
                                   only=[looping.id, exiting.id, quitting.id, correct.id],
                                   progress=False)}
    assert rows[looping.id].score == 0 and "timed out" in rows[looping.id].output
    assert rows[exiting.id].score == 0 and "exit code 3" in rows[exiting.id].output, rows[exiting.id].output
    assert rows[quitting.id].score == 0, rows[quitting.id].output
    # every other exercise in `sub` is still a stub, yet the correct one earns full points
    assert rows[correct.id].score == correct.points, rows[correct.id].output


def test_cli_grade_prints_the_table_and_writes_gradescope_json(tmp_path, capsys):
    from minigrad.cli import main

    if not all_questions():
        pytest.skip("no questions declared yet")
    q = next(q for q in all_questions() if q.kind == "numeric")
    wrong = next(x for x in all_questions() if x.kind == "numeric" and x.id != q.id)
    (tmp_path / "minigrad").mkdir()
    (tmp_path / "answers.toml").write_text(
        f'["{q.id}"]\nanswer = {question_key(q)["value"]!r}\n["{wrong.id}"]\nanswer = "-1"\n')
    out = tmp_path / "results.json"
    assert main(["grade", str(tmp_path), "--reference", str(ROOT), "--only", q.id, wrong.id,
                 "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert f"{q.points}/{q.points}" in table and f"0/{wrong.points}" in table
    assert re.search(rf"total\s+{q.points}/{q.points + wrong.points}", table)
    js = json.loads(out.read_text())
    assert js["score"] == q.points
    by_name = {t["name"].split(":")[0]: t for t in js["tests"]}
    assert set(by_name) == {q.id, wrong.id}
    for t in js["tests"]:
        assert {"name", "score", "max_score", "output", "visibility"} <= set(t)
    assert by_name[wrong.id]["score"] == 0 and "incorrect" in by_name[wrong.id]["output"]


def test_cli_lists_every_exercise_and_question():
    out = subprocess.run([sys.executable, "-m", "minigrad.cli", "exercises", "list"],
                         capture_output=True, text=True, check=True).stdout
    for item in list(all_exercises()) + list(all_questions()):
        assert item.id in out


def test_show_lists_one_chapter_only():
    import io

    from minigrad.exercises import show

    chapters = sorted({e.chapter for e in all_exercises()})
    if not chapters:
        pytest.skip("no exercises declared yet")
    buf = io.StringIO()
    show(chapters[0], file=buf)
    items = list(all_exercises()) + list(all_questions())
    for item in items:
        assert (item.id in buf.getvalue()) == (item.chapter == chapters[0])
