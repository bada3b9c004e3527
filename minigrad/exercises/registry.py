"""Exercises and exam-style questions: what they are and where they live.

A coding exercise is a region of real library code fenced by
``# BEGIN SOLUTION <id>`` and ``# END SOLUTION``; its tests carry
``@pytest.mark.exercise("<id>", points=N)``. A question is answered in a
student's ``answers.toml`` and graded against a value the library computes.
Each chapter declares both in ``minigrad/exercises/chNN.py``.

A student release ships no ``chNN.py`` (their answer functions would give the
answers away): it ships ``catalog.json``, the same exercises and questions
with ``Question.answer = None`` and each choice question's options already in
that release's shuffled order (:func:`shuffled_choices`).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import pkgutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

QUESTION_KINDS = ("numeric", "choice", "expression")
CATALOG = Path(__file__).with_name("catalog.json")   # present only in a student release


@dataclass(frozen=True)
class Exercise:
    id: str
    title: str
    points: int
    statement: str = ""

    @property
    def chapter(self) -> int:
        return int(self.id.split(".")[0].removeprefix("ch"))


@dataclass(frozen=True)
class Question:
    """An exam-style question.

    kind ``numeric``: the answer is a number, right within ``rtol``/``atol``.
    kind ``choice``: the answer is one key of ``choices``.
    kind ``expression``: the answer is a formula in ``variables`` (Python
    arithmetic syntax, e.g. ``2*N**2*d``), right when it equals ``answer`` at
    several random points.

    ``answer`` is None in a student release, whose ``choices`` are then in the
    order drawn with ``shuffle_seed`` (None: the order written in chNN.py).
    ``formula`` (expression questions, instructor side only) is the formula the
    answer key writes; the suite checks it equals ``answer`` at random points.
    """

    id: str
    kind: str
    points: int
    prompt: str
    answer: Callable | None = None
    choices: dict = field(default_factory=dict)
    variables: tuple = ()
    rtol: float = 1e-2
    atol: float = 0.0
    shuffle_seed: int | None = None
    formula: str = ""

    def __post_init__(self):
        if self.kind not in QUESTION_KINDS:
            raise ValueError(f"Question {self.id}: kind must be one of {QUESTION_KINDS}, got {self.kind!r}")

    @property
    def chapter(self) -> int:
        return int(self.id.split(".")[0].removeprefix("ch"))


def chapter_modules():
    from .. import exercises

    names = sorted(m.name for m in pkgutil.iter_modules(exercises.__path__)
                   if m.name.startswith("ch") and m.name[2:4].isdigit())
    return [importlib.import_module(f"minigrad.exercises.{n}") for n in names]


@lru_cache(maxsize=1)
def _released_catalog():
    """(exercises, questions) read from a release's catalog.json."""
    data = json.loads(CATALOG.read_text())
    exercises = [Exercise(**e) for e in data["exercises"]]
    questions = [Question(**{**q, "variables": tuple(q["variables"])}) for q in data["questions"]]
    return exercises, questions


def all_exercises() -> list:
    if CATALOG.exists():
        return list(_released_catalog()[0])
    return [e for m in chapter_modules() for e in getattr(m, "EXERCISES", [])]


def all_questions() -> list:
    if CATALOG.exists():
        return list(_released_catalog()[1])
    return [q for m in chapter_modules() for q in getattr(m, "QUESTIONS", [])]


def shuffled_choices(q: Question, seed: int) -> dict:
    """The options of choice question ``q`` as the release made with ``seed`` shows
    them: letter -> text. The order is the options sorted by a hash of (seed, id,
    text), so it is the same on every machine and Python version, and a release's
    key letters carry no pattern from how the options were written.

    Raises:
        ValueError: ``q`` is not a choice question, or it is a released question
            whose options were already shuffled with another seed.
    """
    if q.kind != "choice":
        raise ValueError(f"shuffled_choices: {q.id} is a {q.kind} question, not a choice")
    if q.shuffle_seed is not None:  # a released question: already in its release's order
        if q.shuffle_seed != seed:
            raise ValueError(f"shuffled_choices: {q.id} was released with seed {q.shuffle_seed}, "
                             f"not {seed}")
        return dict(q.choices)

    def rank(text):
        return hashlib.sha256(f"{seed}\0{q.id}\0{text}".encode()).hexdigest()

    texts = sorted(q.choices.values(), key=rank)
    return {chr(ord("a") + i): t for i, t in enumerate(texts)}


def key_for(q: Question, seed: int) -> str:
    """The correct letter of choice question ``q`` in the order of the release made
    with ``seed``. Needs the reference's answer (the instructor's checkout).

    Raises:
        ValueError: ``q`` has no answer (a released question) or is not a choice.
    """
    if q.answer is None:
        raise ValueError(f"key_for: {q.id} has no answer here (a student release); "
                         f"make the key from the instructor's checkout")
    if q.kind != "choice":
        raise ValueError(f"key_for: {q.id} is a {q.kind} question, not a choice")
    letter = str(q.answer()).strip().lower()
    if letter not in q.choices:
        raise ValueError(f"key_for: {q.id}'s answer {letter!r} is not one of {sorted(q.choices)}")
    text = q.choices[letter]
    return next(k for k, t in shuffled_choices(q, seed).items() if t == text)


def answer_format(q: Question) -> str:
    """One line saying what a valid answer to ``q`` looks like (shown to students)."""
    if q.kind == "choice":
        return f"one letter: {', '.join(sorted(q.choices))}"
    if q.kind == "expression":
        return (f"a formula in {', '.join(q.variables)} (Python arithmetic, e.g. 2*N**2*d; "
                f"sqrt, log, exp, min, max allowed); right when it matches at several points "
                f"within {q.rtol:.3g} relative")
    if q.rtol == 0 and q.atol == 0:
        tol = "exactly"
    elif q.atol == 0:
        tol = f"within {q.rtol:.3g} relative"
    else:
        tol = f"within {q.rtol:.3g} relative plus {q.atol:.3g}"
    return f"a number, arithmetic allowed (e.g. 7e9 * 16); right {tol}"


def released_catalog_json(seed: int, chapters=None) -> str:
    """The catalog.json of a release made with ``seed``: every exercise and question
    (of ``chapters``, or all) without answers, choice options shuffled."""
    exercises = sorted((e for e in all_exercises() if chapters is None or e.chapter in chapters),
                       key=lambda e: (e.chapter, e.id))
    questions = []
    for q in sorted((q for q in all_questions() if chapters is None or q.chapter in chapters),
                    key=lambda q: (q.chapter, q.id)):
        d = asdict(q)
        d["answer"] = None
        d["formula"] = ""
        d["variables"] = list(q.variables)
        if q.kind == "choice":
            d["choices"] = shuffled_choices(q, seed)
            d["shuffle_seed"] = seed
        questions.append(d)
    data = {"exercises": [asdict(e) for e in exercises], "questions": questions}
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def get_exercise(exercise_id: str) -> Exercise:
    for e in all_exercises():
        if e.id == exercise_id:
            return e
    raise KeyError(f"no exercise with id {exercise_id!r}")


def show(chapter: int | None = None, file=None) -> None:
    """Print the exercises and questions (of one ``chapter``, or all) with their points:
    the last cell of every chapter notebook."""
    import sys

    file = file or sys.stdout
    rows = [(e.chapter, 0, e.id, e.points, "code", e.title) for e in all_exercises()]
    rows += [(q.chapter, 1, q.id, q.points, q.kind, q.prompt.strip().splitlines()[0][:70])
             for q in all_questions()]
    rows = sorted(r for r in rows if chapter is None or r[0] == chapter)
    w = max([len(r[2]) for r in rows] + [2])
    print(f"{'chapter':<7}  {'id':<{w}}  {'points':>6}  {'kind':<10}  title", file=file)
    for ch, _, i, p, kind, title in rows:
        print(f"{'ch' + str(ch):<7}  {i:<{w}}  {p:>6}  {kind:<10}  {title}", file=file)
    print(f"\n{sum(r[3] for r in rows)} points in {len(rows)} exercises and questions", file=file)
