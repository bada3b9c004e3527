"""answers.toml against malformed and oversized input: each bad answer costs only its
own points, fails fast with a message, and feedback never shows an expected value."""

import time

import pytest

from minigrad.exercises import all_questions
from minigrad.exercises.answers import AnswerError, evaluate, grade_question, question_key
from minigrad.exercises.grade import grade
from minigrad.exercises.registry import Question
from minigrad.exercises.release import source_root

ROOT = source_root()


def _first(kind):
    return next(q for q in sorted(all_questions(), key=lambda q: q.id) if q.kind == kind)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """One answers.toml with a bad answer per question kind and one good answer."""
    if not all_questions():
        pytest.skip("no questions declared yet")
    num, expr = _first("numeric"), _first("expression")
    others = [q for q in all_questions() if q.kind == "numeric" and q.id != num.id]
    huge, good = others[0], others[1]
    sub = tmp_path_factory.mktemp("answers")
    terms = "+".join(["1"] * 5000)
    (sub / "answers.toml").write_text(
        f'["{num.id}"]\nanswer = true\n'
        f'["{expr.id}"]\nanswer = "{terms}"\n'
        f'["{huge.id}"]\nanswer = "{"1*" * 1_200_000}1"\n'
        f'["{good.id}"]\nanswer = {question_key(good)["value"]!r}\n'
        f'["{good.id[:-1]}"]\nanswer = 3\n')                      # a mistyped id
    t0 = time.perf_counter()
    rows = grade(sub, reference=ROOT, only=[num.id, expr.id, huge.id, good.id], progress=False)
    return {r.id: r for r in rows}, time.perf_counter() - t0, (num, expr, huge, good)


def test_each_bad_answer_costs_only_its_points(graded):
    rows, seconds, (num, expr, huge, good) = graded
    assert rows[good.id].score == good.points, rows[good.id].output
    assert rows[num.id].score == 0 and "true is not a number" in rows[num.id].output
    assert rows[expr.id].score == 0 and "characters long" in rows[expr.id].output
    assert rows[huge.id].score == 0 and "2,400,001 characters" in rows[huge.id].output
    assert seconds < 30, f"grading four answers took {seconds:.1f} s"


def test_a_mistyped_question_id_is_reported(graded):
    rows, _, (_, _, _, good) = graded
    note = rows[good.id[:-1]]
    assert note.kind == "note" and note.max_score == 0
    assert f"did you mean {good.id!r}" in note.output


def test_deep_or_long_expressions_fail_fast_with_a_message():
    for bad, why in [("+".join(["1"] * 300), "terms"), ("-" * 1500 + "1", "terms"),
                     ("(" * 300 + "1" + ")" * 300, "cannot read"), ("9" * 3000, "characters")]:
        t0 = time.perf_counter()
        with pytest.raises(AnswerError, match=why):
            evaluate(bad)
        assert time.perf_counter() - t0 < 1.0


def test_expression_feedback_never_shows_the_expected_value():
    q = Question("ch9.q.e", "expression", 2, "p", answer=lambda N, d: 4 * N * d, variables=("N", "d"))
    key = question_key(q)
    out = grade_question(q, "5*N*d", key=key).output
    assert "incorrect" in out
    for _, want in key["at"]:
        assert f"{want:.6g}" not in out, out
    assert grade_question(q, "2*(N*d)*2", key=key).score == 2


def test_a_released_question_is_only_checked_for_form():
    q = Question("ch9.q.n", "numeric", 1, "p", answer=None)
    assert grade_question(q, "7e9 * 16").output == "answer reads as 1.12e+11; graded by the instructor"
    assert "not allowed" in grade_question(q, "open('x')").output
    stubbed = Question("ch9.q.s", "numeric", 1, "p", answer=lambda: (_ for _ in ()).throw(
        NotImplementedError("ch9.x: not done")))
    out = grade_question(stubbed, "3").output
    assert "NotImplementedError" in out and "graded by the instructor" in out


def test_the_answer_key_scores_every_question(tmp_path):
    """The instructor's key (``minigrad exercises key``), graded with the reference and
    the release's seed, earns every question's points: key and grader agree."""
    release = pytest.importorskip("minigrad.exercises.release")
    if not hasattr(release, "answer_key"):
        pytest.skip("this checkout has no answer key writer")
    (tmp_path / "answers.toml").write_text(release.answer_key(7))
    ids = [q.id for q in all_questions()]
    rows = grade(tmp_path, reference=ROOT, only=ids, release_seed=7, progress=False)
    for r in rows:
        assert r.score == r.max_score, f"{r.id}: {r.output}"
    assert len(rows) == len(ids)
