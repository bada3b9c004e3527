"""Exam-style answers: a student's ``answers.toml``, and grading it.

Numbers may be written as arithmetic (``7e9 * 16``); formulas use the
question's variables (``2*N**2*d``). Both are evaluated by walking the syntax
tree with a short list of allowed operations, never with ``eval``, so an
answers file cannot run code.
"""

from __future__ import annotations

import ast
import math
import operator
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow, ast.FloorDiv: operator.floordiv,
           ast.Mod: operator.mod}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCS = {"sqrt": math.sqrt, "log": math.log, "log2": math.log2, "log10": math.log10,
          "exp": math.exp, "ceil": math.ceil, "floor": math.floor, "min": min, "max": max,
          "abs": abs}


class AnswerError(ValueError):
    """An answer that cannot be read (bad syntax, an unknown name, a forbidden operation)."""


def evaluate(expr: str, variables: dict | None = None) -> float:
    """Value of the arithmetic expression ``expr`` with ``variables`` bound."""
    variables = variables or {}
    try:
        tree = ast.parse(str(expr).strip().replace("^", "**"), mode="eval")
    except SyntaxError as e:
        raise AnswerError(f"cannot read {expr!r}: {e.msg}") from None

    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow):
                if abs(right) > 1000:
                    raise AnswerError(f"exponent {right} too large in {expr!r}")
                # in floats, so (9**999)**999 overflows at once instead of building a
                # billion-digit integer that would hang the grader
                left, right = float(left), float(right)
            return _BINOPS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](walk(node.operand))
        if isinstance(node, ast.Name):
            if node.id in variables:
                return variables[node.id]
            if node.id in ("pi", "e"):
                return getattr(math, node.id)
            raise AnswerError(f"unknown name {node.id!r} in {expr!r}; allowed: "
                              f"{sorted(variables) + ['pi', 'e']}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in _FUNCS and not node.keywords:
            return _FUNCS[node.func.id](*[walk(a) for a in node.args])
        raise AnswerError(f"{type(node).__name__} is not allowed in {expr!r} "
                          f"(numbers, + - * / // % **, and {sorted(_FUNCS)} only)")

    try:
        return float(walk(tree))
    except (ZeroDivisionError, OverflowError, ValueError, TypeError) as e:
        if isinstance(e, AnswerError):
            raise
        raise AnswerError(f"cannot evaluate {expr!r}: {e}") from None


@dataclass
class QuestionResult:
    id: str
    score: float
    max_score: float
    output: str


def _close(got: float, want: float, rtol: float, atol: float) -> bool:
    return math.isfinite(got) and abs(got - want) <= atol + rtol * abs(want)


def grade_question(q, answer) -> QuestionResult:
    """Grade one answer (the raw TOML value, or None when missing)."""
    if answer is None or (isinstance(answer, str) and not answer.strip()):
        return QuestionResult(q.id, 0, q.points, "no answer")
    try:
        if q.kind == "choice":
            want = str(q.answer()).strip().lower()
            got = str(answer).strip().lower()
            if got not in {str(k).lower() for k in q.choices}:
                return QuestionResult(q.id, 0, q.points, f"{answer!r} is not one of {sorted(q.choices)}")
            ok = got == want
            return QuestionResult(q.id, q.points if ok else 0, q.points,
                                  "correct" if ok else f"answered {got!r}: incorrect")
        if q.kind == "numeric":
            got = float(answer) if isinstance(answer, (int, float)) else evaluate(answer)
            want = float(q.answer())
            ok = _close(got, want, q.rtol, q.atol)
            return QuestionResult(q.id, q.points if ok else 0, q.points,
                                  "correct" if ok else f"answered {got:.6g}: incorrect "
                                  f"(tolerance {q.rtol:.0%} relative)")
        # expression: equal to the library's formula at several random points
        rng = np.random.default_rng(zlib.crc32(q.id.encode()))
        for _ in range(6):
            point = {v: float(rng.integers(2, 200)) for v in q.variables}
            got = evaluate(answer, point)
            want = float(q.answer(**point))
            if not _close(got, want, q.rtol, q.atol):
                at = ", ".join(f"{k}={v:g}" for k, v in point.items())
                return QuestionResult(q.id, 0, q.points,
                                      f"formula gives {got:.6g} at {at}; expected {want:.6g}")
        return QuestionResult(q.id, q.points, q.points, "correct")
    except AnswerError as e:
        return QuestionResult(q.id, 0, q.points, str(e))


def load_answers(path: Path) -> dict:
    """``{question id: answer}`` from an answers.toml (``["ch1.q.x"] answer = ...`` tables)."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise AnswerError(f"{path}: not valid TOML ({e})") from None
    out = {}
    for key, value in data.items():
        out[key] = value.get("answer") if isinstance(value, dict) else value
    return out


def answers_template(questions) -> str:
    """The blank answers.toml handed to students, one table per question."""
    parts = ["# Answers to minigrad's exam-style questions.",
             "# Numbers may be arithmetic (\"7e9 * 16\"); formulas use the variables named;",
             "# multiple choice takes the letter. Grade with: minigrad grade", ""]
    for q in questions:
        parts.append(f'["{q.id}"]')
        for line in q.prompt.strip().splitlines():
            parts.append(f"# {line}")
        if q.kind == "choice":
            for k, v in q.choices.items():
                parts.append(f"#   {k}) {v}")
        if q.kind == "expression":
            parts.append(f"# a formula in: {', '.join(q.variables)}")
        parts.append('answer = ""')
        parts.append("")
    return "\n".join(parts)
