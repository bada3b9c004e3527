"""Exercises and exam-style questions: what they are and where they live.

A coding exercise is a region of real library code fenced by
``# BEGIN SOLUTION <id>`` and ``# END SOLUTION``; its tests carry
``@pytest.mark.exercise("<id>", points=N)``. A question is answered in a
student's ``answers.toml`` and graded against a value the library computes.
Each chapter declares both in ``minigrad/exercises/chNN.py``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field

QUESTION_KINDS = ("numeric", "choice", "expression")


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
    """

    id: str
    kind: str
    points: int
    prompt: str
    answer: Callable
    choices: dict = field(default_factory=dict)
    variables: tuple = ()
    rtol: float = 1e-2
    atol: float = 0.0

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


def all_exercises() -> list:
    return [e for m in chapter_modules() for e in getattr(m, "EXERCISES", [])]


def all_questions() -> list:
    return [q for m in chapter_modules() for q in getattr(m, "QUESTIONS", [])]


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
