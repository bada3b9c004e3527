"""Finding and replacing the fenced regions that make exercises.

A solution region (inside library code) is the lines between a comment
line ``# BEGIN SOLUTION <exercise id>`` and a comment line ``# END SOLUTION``.
In the student release its body becomes, between the same two markers,
``raise NotImplementedError("ch4.online_softmax: <title>")``. Hidden-test
regions (inside test files), ``# BEGIN HIDDEN TESTS`` ... ``# END HIDDEN
TESTS``, are dropped from the release. The markers stay in the student copy
so the grader can find the student's answer again.

A kernel region, ``# BEGIN KERNEL <exercise id>`` ... ``# END KERNEL``, holds
a fast version (numba) of what a solution region computes. A release that
stubs the exercise drops the region, markers and all, and the dispatcher
beside it then runs the readable version, the one holding the student's
fence; a release that ships the chapter solved keeps the code without the
markers.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN SOLUTION (?P<id>ch\d+\.[\w.]+)[ \t]*$")
END = re.compile(r"^[ \t]*# END SOLUTION[ \t]*$")
HIDDEN_BEGIN = re.compile(r"^[ \t]*# BEGIN HIDDEN TESTS[ \t]*$")
HIDDEN_END = re.compile(r"^[ \t]*# END HIDDEN TESTS[ \t]*$")
KERNEL_BEGIN = re.compile(r"^[ \t]*# BEGIN KERNEL (?P<id>ch\d+\.[\w.]+)[ \t]*$")
KERNEL_END = re.compile(r"^[ \t]*# END KERNEL[ \t]*$")


class FenceError(ValueError):
    """A fence is malformed: unterminated, nested, or an id used twice."""


@dataclass(frozen=True)
class Region:
    id: str
    path: Path      # relative to the package root's parent (e.g. minigrad/tensor.py)
    begin: int      # index of the BEGIN line
    end: int        # index of the END line
    indent: str

    def body(self, lines) -> list:
        return lines[self.begin + 1:self.end]


def find_regions(text: str, path: Path = Path("?")) -> list:
    """Every solution region of a file, in order."""
    lines = text.splitlines(keepends=True)
    regions, open_ = [], None
    for i, line in enumerate(lines):
        m = BEGIN.match(line.rstrip("\n"))
        if m:
            if open_ is not None:
                raise FenceError(f"{path}:{i + 1}: BEGIN SOLUTION {m['id']} inside the open "
                                 f"region {open_[1]} (line {open_[0] + 1})")
            open_ = (i, m["id"], m["indent"])
        elif END.match(line.rstrip("\n")):
            if open_ is None:
                raise FenceError(f"{path}:{i + 1}: END SOLUTION without a BEGIN")
            regions.append(Region(open_[1], path, open_[0], i, open_[2]))
            open_ = None
    if open_ is not None:
        raise FenceError(f"{path}:{open_[0] + 1}: region {open_[1]} has no END SOLUTION")
    return regions


def stub_line(indent: str, exercise_id: str, title: str) -> str:
    message = f"{exercise_id}: {title}".replace("\\", "\\\\").replace('"', '\\"')
    return f'{indent}raise NotImplementedError("{message}")\n'


def stub_text(text: str, titles: dict, path: Path = Path("?")) -> str:
    """``text`` with each solution region's body replaced by a NotImplementedError stub."""
    lines = text.splitlines(keepends=True)
    out, last = [], 0
    for r in find_regions(text, path):
        if r.id not in titles:
            raise FenceError(f"{path}:{r.begin + 1}: region {r.id} has no Exercise in "
                             f"minigrad/exercises/ch*.py")
        out += lines[last:r.begin + 1]
        out.append(stub_line(r.indent, r.id, titles[r.id]))
        last = r.end
    out += lines[last:]
    return "".join(out)


def find_kernel_regions(text: str, path: Path = Path("?")) -> list:
    """(exercise id, BEGIN line index, END line index) of every kernel region of a file."""
    found, open_ = [], None
    for i, line in enumerate(text.splitlines()):
        m = KERNEL_BEGIN.match(line)
        if m:
            if open_ is not None:
                raise FenceError(f"{path}:{i + 1}: BEGIN KERNEL {m['id']} inside the open "
                                 f"kernel region {open_[1]} (line {open_[0] + 1})")
            open_ = (i, m["id"])
        elif KERNEL_END.match(line):
            if open_ is None:
                raise FenceError(f"{path}:{i + 1}: END KERNEL without a BEGIN")
            found.append((open_[1], open_[0], i))
            open_ = None
    if open_ is not None:
        raise FenceError(f"{path}:{open_[0] + 1}: kernel region {open_[1]} has no END KERNEL")
    return found


def release_text(text: str, titles: dict, stubbed: set, path: Path = Path("?")) -> str:
    """``text`` as a release ships it: the solution regions of the ``stubbed``
    exercise ids replaced by stubs (markers kept), their kernel regions dropped;
    every other region's code kept without its markers (a chapter shipped solved).

    Args:
        titles: exercise id -> title, for every exercise of the catalog.
        stubbed: the ids whose solutions the release hides.
    """
    text = drop_kernels(text, stubbed, path)     # the stubbed ones' kernels, and their exports
    lines = text.splitlines(keepends=True)
    drop, stub_after = set(), {}
    for r in find_regions(text, path):
        if r.id not in titles:
            raise FenceError(f"{path}:{r.begin + 1}: region {r.id} has no Exercise in "
                             f"minigrad/exercises/ch*.py")
        if r.id in stubbed:
            stub_after[r.begin] = stub_line(r.indent, r.id, titles[r.id])
            drop.update(range(r.begin + 1, r.end))
        else:
            drop.update((r.begin, r.end))
    for ex_id, begin, end in find_kernel_regions(text, path):   # the solved ones': markers go
        if ex_id not in titles:
            raise FenceError(f"{path}:{begin + 1}: kernel region {ex_id} has no Exercise in "
                             f"minigrad/exercises/ch*.py")
        drop.update((begin, end))
    out = []
    for i, line in enumerate(lines):
        if i not in drop:
            out.append(line)
        if i in stub_after:
            out.append(stub_after[i])
    return "".join(out)


# a name a module defines at its top level: def f, class C, NAME = ...
TOP_LEVEL_NAME = re.compile(r"^(?:def|class)[ \t]+(\w+)|^(\w+)[ \t]*(?::[^=\n]*)?=(?!=)", re.M)


def _without_exports(text: str, gone: set) -> str:
    """``text`` with the names in ``gone`` taken out of its ``__all__ = [...]`` list, so that
    a star import of a release never asks for a kernel the release dropped."""
    if not gone:
        return text
    for node in ast.parse(text).body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and getattr(node.targets[0], "id", None) == "__all__"
                and isinstance(node.value, (ast.List, ast.Tuple))):
            names = [e.value for e in node.value.elts]
            kept = [n for n in names if n not in gone]
            if kept == names:
                return text
            lines = text.splitlines(keepends=True)
            listed = textwrap.fill(", ".join(f'"{n}"' for n in kept), 88,
                                   initial_indent="__all__ = [", subsequent_indent=" " * 11,
                                   break_on_hyphens=False, break_long_words=False)
            return "".join(lines[:node.lineno - 1]) + listed + "]\n" + "".join(lines[node.end_lineno:])
    return text


def drop_kernels(text: str, exercise_ids, path: Path = Path("?")) -> str:
    """``text`` without the kernel regions of ``exercise_ids``, markers and code, and
    without their names in ``__all__``, as a release that stubs those exercises ships
    it. The grader drops them too from the copy that grades one of them: there the
    kernel would be that exercise's solution, a call away from the student's region."""
    lines = text.splitlines(keepends=True)
    drop, gone = set(), set()
    for ex_id, begin, end in find_kernel_regions(text, path):
        if ex_id in exercise_ids:
            drop.update(range(begin, end + 1))
            gone.update(a or b for a, b in TOP_LEVEL_NAME.findall("".join(lines[begin:end + 1])))
    if not drop:
        return text
    return _without_exports("".join(ln for i, ln in enumerate(lines) if i not in drop), gone)


def strip_hidden(text: str, path: Path = Path("?")) -> str:
    """``text`` without its hidden-test regions (markers included)."""
    out, hidden_from = [], None
    for i, line in enumerate(text.splitlines(keepends=True)):
        if HIDDEN_BEGIN.match(line.rstrip("\n")):
            if hidden_from is not None:
                raise FenceError(f"{path}:{i + 1}: nested BEGIN HIDDEN TESTS")
            hidden_from = i
        elif HIDDEN_END.match(line.rstrip("\n")):
            if hidden_from is None:
                raise FenceError(f"{path}:{i + 1}: END HIDDEN TESTS without a BEGIN")
            hidden_from = None
        elif hidden_from is None:
            out.append(line)
    if hidden_from is not None:
        raise FenceError(f"{path}:{hidden_from + 1}: BEGIN HIDDEN TESTS has no END")
    return "".join(out)


def replace_region(text: str, exercise_id: str, new_body: list, path: Path = Path("?")) -> str:
    """``text`` with the body of region ``exercise_id`` replaced by ``new_body`` lines."""
    lines = text.splitlines(keepends=True)
    for r in find_regions(text, path):
        if r.id == exercise_id:
            return "".join(lines[:r.begin + 1] + list(new_body) + lines[r.end:])
    raise FenceError(f"{path}: no region {exercise_id}")


def region_body(text: str, exercise_id: str, path: Path = Path("?")):
    """The body lines of region ``exercise_id``, or None when the file has no such region."""
    lines = text.splitlines(keepends=True)
    for r in find_regions(text, path):
        if r.id == exercise_id:
            return r.body(lines)
    return None


def scan_package(root: Path, package: str = "minigrad") -> dict:
    """id -> Region for every solution region under ``root/package``; ids must be unique."""
    found = {}
    for p in sorted((root / package).rglob("*.py")):
        if "__pycache__" in p.parts:
            continue
        rel = p.relative_to(root)
        for r in find_regions(p.read_text(), rel):
            if r.id in found:
                raise FenceError(f"exercise {r.id} is fenced twice: {found[r.id].path} and {rel}")
            found[r.id] = r
    return found
