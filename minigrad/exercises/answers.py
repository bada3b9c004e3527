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
import time
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


MAX_ANSWER_CHARS = 2000   # the longest formula a question needs is under 100 characters
MAX_NODES = 400           # operations and numbers in one answer
MAX_SECONDS = 1.0         # evaluating one answer (all its test points)


class AnswerError(ValueError):
    """An answer that cannot be read (bad syntax, an unknown name, a forbidden operation,
    too long, too slow)."""


def _parse(expr: str) -> ast.Expression:
    """The syntax tree of ``expr``, refusing oversized input before the parser sees it."""
    text = str(expr).strip()
    if len(text) > MAX_ANSWER_CHARS:
        raise AnswerError(f"answer is {len(text):,} characters long; at most {MAX_ANSWER_CHARS:,}")
    try:
        tree = ast.parse(text.replace("^", "**"), mode="eval")
    except SyntaxError as e:
        raise AnswerError(f"cannot read {_short(text)}: {e.msg}") from None
    except (RecursionError, MemoryError):
        raise AnswerError(f"cannot read {_short(text)}: nested too deeply") from None
    n = sum(1 for _ in ast.walk(tree))
    if n > MAX_NODES:
        raise AnswerError(f"answer has {n:,} terms and operations; at most {MAX_NODES}")
    return tree


def _short(text: str) -> str:
    return repr(text) if len(text) <= 60 else repr(text[:57] + "...")


def evaluate(expr: str, variables: dict | None = None, deadline: float | None = None) -> float:
    """Value of the arithmetic expression ``expr`` with ``variables`` bound.

    At most MAX_ANSWER_CHARS characters and MAX_NODES syntax nodes, so neither the
    parser nor the walk can recurse deeply or run long; ``deadline`` (a
    ``time.perf_counter()`` value) stops a slow evaluation with an AnswerError.
    """
    variables = variables or {}
    tree = _parse(expr)
    shown = _short(str(expr).strip())

    def walk(node):
        if deadline is not None and time.perf_counter() > deadline:
            raise AnswerError(f"evaluating {shown} took more than {MAX_SECONDS:g} s")
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow):
                if abs(right) > 1000:
                    raise AnswerError(f"exponent {right} too large in {shown}")
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
            raise AnswerError(f"unknown name {node.id!r} in {shown}; allowed: "
                              f"{sorted(variables) + ['pi', 'e']}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in _FUNCS and not node.keywords:
            return _FUNCS[node.func.id](*[walk(a) for a in node.args])
        raise AnswerError(f"{type(node).__name__} is not allowed in {shown} "
                          f"(numbers, + - * / // % **, and {sorted(_FUNCS)} only)")

    try:
        return float(walk(tree))
    except (ZeroDivisionError, OverflowError, ValueError, TypeError) as e:
        if isinstance(e, AnswerError):
            raise
        raise AnswerError(f"cannot evaluate {shown}: {e}") from None


@dataclass
class QuestionResult:
    id: str
    score: float
    max_score: float
    output: str


def _close(got: float, want: float, rtol: float, atol: float) -> bool:
    return math.isfinite(got) and abs(got - want) <= atol + rtol * abs(want)


def expression_points(q) -> list:
    """The test points at which an expression answer is compared with the formula:
    fixed per question, so the grader and the key agree."""
    rng = np.random.default_rng(zlib.crc32(q.id.encode()))
    return [{v: float(rng.integers(2, 200)) for v in q.variables} for _ in range(6)]


def question_key(q, seed=None) -> dict:
    """What a correct answer to ``q`` must match, as plain data (computed from the
    reference; the grader needs no answer function, the submission never sees it).

    numeric: ``{"value": x}``; choice: ``{"letter": "b"}`` (the letter in the release
    made with ``seed``; None: as chNN.py writes the options); expression:
    ``{"at": [[point, value], ...]}``.
    """
    if q.kind == "numeric":
        return {"value": float(q.answer())}
    if q.kind == "choice":
        return {"letter": _key_letter(q, seed)}
    return {"at": [[p, float(q.answer(**p))] for p in expression_points(q)]}


def _key_letter(q, seed) -> str:
    """The right letter as chNN.py writes the options (``seed`` None), or as the release
    made with ``seed`` shuffled them."""
    if seed is None:
        return str(q.answer()).strip().lower()
    try:
        from .registry import key_for
    except ImportError:  # a registry without shuffled releases
        return str(q.answer()).strip().lower()
    return str(key_for(q, seed)).strip().lower()


def _letters(q, seed=None) -> list:
    return sorted(str(k).lower() for k in q.choices)


def _read_number(answer) -> float:
    if isinstance(answer, bool):  # TOML true/false: int subclasses, but not numbers
        raise AnswerError(f"{str(answer).lower()} is not a number")
    if isinstance(answer, (int, float)):
        try:
            return float(answer)
        except OverflowError:  # a TOML integer of hundreds of digits
            raise AnswerError(f"{_short(str(answer))} is too large a number") from None
    if isinstance(answer, str):
        return evaluate(answer, deadline=time.perf_counter() + MAX_SECONDS)
    raise AnswerError(f"expected a number or arithmetic, got a TOML {type(answer).__name__}")


def check_format(q, answer, seed=None) -> str:
    """Raise AnswerError unless ``answer`` has the form ``q`` asks for; return it shown."""
    if q.kind == "choice":
        if not isinstance(answer, str):
            raise AnswerError(f"expected one letter of {_letters(q, seed)}, got {answer!r}")
        got = answer.strip().lower()
        if got not in _letters(q, seed):
            raise AnswerError(f"{_short(answer)} is not one of {_letters(q, seed)}")
        return got
    if q.kind == "numeric":
        return f"{_read_number(answer):.6g}"
    if not isinstance(answer, str):
        if isinstance(answer, (int, float)) and not isinstance(answer, bool):
            answer = str(answer)  # a constant is a formula too
        else:
            raise AnswerError(f"expected a formula in {', '.join(q.variables)}, got {answer!r}")
    deadline = time.perf_counter() + MAX_SECONDS
    for p in expression_points(q)[:1]:
        evaluate(answer, p, deadline)
    return "a formula"


def grade_question(q, answer, key: dict | None = None, seed=None) -> QuestionResult:
    """Grade one answer (the raw TOML value, or None when missing).

    With ``key`` (from :func:`question_key`, computed by the grader from the
    reference) the answer is marked right or wrong. Without it, the answer is
    marked against ``q.answer`` when the question still has one; a question as
    released (``q.answer`` None) is only checked for form: "graded by the instructor".
    """
    if answer is None or (isinstance(answer, str) and not answer.strip()):
        return QuestionResult(q.id, 0, q.points, "no answer")
    try:
        shown = check_format(q, answer, seed)
        if key is None:
            if getattr(q, "answer", None) is None:
                return QuestionResult(q.id, 0, q.points,
                                      f"answer reads as {shown}; graded by the instructor")
            try:
                key = question_key(q, seed)
            except Exception as e:  # noqa: BLE001 - a stub the question depends on, say
                why = f"{type(e).__name__}: {str(e)[:120]}"
                return QuestionResult(q.id, 0, q.points, f"answer reads as {shown}; cannot be "
                                      f"checked here ({why}); graded by the instructor")
        if q.kind == "choice":
            ok = shown == key["letter"]
            return QuestionResult(q.id, q.points if ok else 0, q.points,
                                  "correct" if ok else f"answered {shown!r}: incorrect")
        if q.kind == "numeric":
            got, want = _read_number(answer), key["value"]
            ok = _close(got, want, q.rtol, q.atol)
            return QuestionResult(q.id, q.points if ok else 0, q.points,
                                  "correct" if ok else f"answered {got:.6g}: incorrect "
                                  f"(tolerance {q.rtol:.0%} relative)")
        # expression: equal to the reference formula at the fixed test points; the
        # expected value is never shown, so a resubmission cannot be fitted to it
        deadline = time.perf_counter() + MAX_SECONDS
        text = str(answer)
        for point, want in key["at"]:
            got = evaluate(text, point, deadline)
            if not _close(got, want, q.rtol, q.atol):
                at = ", ".join(f"{k}={v:g}" for k, v in point.items())
                return QuestionResult(q.id, 0, q.points,
                                      f"incorrect: the formula gives {got:.6g} at {at}, "
                                      f"which is not the expected value")
        return QuestionResult(q.id, q.points, q.points, "correct")
    except AnswerError as e:
        return QuestionResult(q.id, 0, q.points, str(e))


def load_answers(path: Path) -> dict:
    """``{question id: answer}`` from an answers.toml (``["ch1.q.x"] answer = ...`` tables)."""
    path = Path(path)
    if not path.exists():
        return {}
    try:  # utf-8-sig: Windows editors start the file with a byte-order mark
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise AnswerError(f"{path.name}: not UTF-8 text (byte {e.start}); save it as "
                          f"UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise AnswerError(f"{path.name}: not valid TOML ({e})") from None
    except (ValueError, RecursionError, MemoryError) as e:
        # an integer past Python's 4300 digits, arrays nested thousands deep
        why = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:80]
        raise AnswerError(f"{path.name}: cannot be read ({why})") from None
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
