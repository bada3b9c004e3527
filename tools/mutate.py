"""Mutation testing with the standard library only: does the suite notice a planted bug?

Each mutant is one small AST-level change to one source file (a comparison
flipped, ``+`` swapped for ``-``, a constant off by one, a statement such as
``os.fsync(fd)`` dropped, a ``.copy()`` or a keyword argument removed, ``and``
for ``or``). The script writes the mutant over the file, runs the pytest
selection given for that file with a timeout, restores the file byte for byte
(and its mtime, so neither Python's bytecode cache nor numba's cache is left
stale), and reports the mutant KILLED (some test failed or timed out) or
SURVIVED (every test passed: the suite cannot see that bug). Only the text of
the mutated node is replaced, so comments, exercise fences and line numbers
stay as they were.

Usage:
    python tools/mutate.py [--sample N | --per-file N] [--seed S] [--timeout SEC] [--list] \\
        [--at FILE:LINE ...] [--tests "PYTEST ARGS"] [--json OUT.json] FILE[=TEST[,TEST...]] ...

    python tools/mutate.py --sample 40 --seed 0 \\
        minigrad/serialization.py=tests/test_serialization.py \\
        minigrad/optim.py=tests/test_optim.py,tests/test_training.py

``FILE=TESTS`` gives the tests run for mutants of FILE (comma-separated pytest
paths or node ids); a FILE without ``=`` uses ``--tests``. ``--sample N``
draws N mutants (seeded) from all sites in all files, spread over the files
in proportion to their sites, ``--per-file N`` draws N from each; ``--list`` only prints the sites. Each pytest
run is ``python -m pytest -x -q -p no:cacheprovider`` from the repository
root, with PYTHONPATH set to it, PYTHONDONTWRITEBYTECODE=1 and a private
NUMBA_CACHE_DIR (the real caches are never touched). Exit status 0; the kill
rate is the last line.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_COMPARE_SWAPS = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
    ast.In: ast.NotIn, ast.NotIn: ast.In,
}
_BINOP_SWAPS = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult,
    ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd,
}
_SYMBOL = {
    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
    ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in",
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
    ast.Mod: "%", ast.Pow: "**", ast.BitAnd: "&", ast.BitOr: "|",
    ast.And: "and", ast.Or: "or",
}


@dataclass
class Mutant:
    file: str
    line: int
    kind: str      # compare, binop, augassign, boolop, constant, unary, drop-stmt, drop-copy, drop-kwarg
    what: str      # human-readable: "< -> <=", "drop os.fsync(...)"
    start: int     # byte offsets of the replaced source segment
    end: int
    new: str       # replacement text
    status: str = ""
    seconds: float = 0.0


# ----------------------------------------------------------------------------
# finding mutation sites
# ----------------------------------------------------------------------------

def _offsets(src: bytes):
    starts = [0]
    for i, b in enumerate(src):
        if b == 0x0A:
            starts.append(i + 1)
    return starts


def _span(node, starts) -> tuple[int, int]:
    return (starts[node.lineno - 1] + node.col_offset,
            starts[node.end_lineno - 1] + node.end_col_offset)


def _skipped_lines(src: str) -> set:
    return {i + 1 for i, line in enumerate(src.splitlines()) if "pragma: no mutate" in line}


def _is_docstring(stmt) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str))


def _protected(tree) -> set:
    """ids of nodes never mutated: f-strings (error messages), __all__, docstrings,
    decorators and type annotations."""
    keep = set()

    def mark(n):
        for sub in ast.walk(n):
            keep.add(id(sub))
    for n in ast.walk(tree):
        if isinstance(n, ast.JoinedStr):
            mark(n)
        elif isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__"
                                               for t in n.targets):
            mark(n)
        elif _is_docstring(n):
            mark(n)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for d in n.decorator_list:
                mark(d)
            if not isinstance(n, ast.ClassDef):
                if n.returns is not None:
                    mark(n.returns)
                for a in n.args.args + n.args.kwonlyargs + n.args.posonlyargs:
                    if a.annotation is not None:
                        mark(a.annotation)
        elif isinstance(n, ast.AnnAssign):
            mark(n.annotation)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            mark(n)
    return keep


def _replace_expr(node, starts, new_node) -> tuple[int, int, str]:
    a, b = _span(node, starts)
    return a, b, "(" + ast.unparse(new_node) + ")"


def _copy(node):
    return ast.parse(ast.unparse(node), mode="eval").body if isinstance(node, ast.expr) else None


def find_mutants(path: str) -> list[Mutant]:
    rel = os.path.relpath(path, ROOT)
    with open(path, "rb") as f:
        raw = f.read()
    text = raw.decode()
    tree = ast.parse(text)
    starts = _offsets(raw)
    keep = _protected(tree)
    skip = _skipped_lines(text)
    out: list[Mutant] = []

    def add(node, kind, what, span_new):
        if node.lineno in skip:
            return
        a, b, new = span_new
        out.append(Mutant(rel, node.lineno, kind, what, a, b, new))

    for node in ast.walk(tree):
        if id(node) in keep or not hasattr(node, "lineno"):
            continue
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                swap = _COMPARE_SWAPS.get(type(op))
                if swap is None:
                    continue
                m = _copy(node)
                m.ops[i] = swap()
                add(node, "compare", f"{_SYMBOL[type(op)]} -> {_SYMBOL[swap]}",
                    _replace_expr(node, starts, m))
        elif isinstance(node, ast.BinOp):
            swap = _BINOP_SWAPS.get(type(node.op))
            if swap is not None:
                m = _copy(node)
                m.op = swap()
                add(node, "binop", f"{_SYMBOL[type(node.op)]} -> {_SYMBOL[swap]}",
                    _replace_expr(node, starts, m))
        elif isinstance(node, ast.AugAssign):
            swap = _BINOP_SWAPS.get(type(node.op))
            if swap is not None:
                m = ast.parse(ast.unparse(node)).body[0]
                m.op = swap()
                a, b = _span(node, starts)
                add(node, "augassign", f"{_SYMBOL[type(node.op)]}= -> {_SYMBOL[swap]}=",
                    (a, b, ast.unparse(m)))
        elif isinstance(node, ast.BoolOp):
            m = _copy(node)
            m.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
            add(node, "boolop", f"{_SYMBOL[type(node.op)]} -> {_SYMBOL[type(m.op)]}",
                _replace_expr(node, starts, m))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
            a, b = _span(node, starts)
            add(node, "unary", f"drop {'-' if isinstance(node.op, ast.USub) else 'not '}",
                (a, b, "(" + ast.unparse(node.operand) + ")"))
        elif isinstance(node, ast.Constant) and type(node.value) in (bool, int, float):
            v = node.value
            if isinstance(v, bool):
                new = repr(not v)
            elif isinstance(v, int):
                new = repr(v + 1)
            else:
                new = repr(v * 2 if v else 1.0)
            a, b = _span(node, starts)
            add(node, "constant", f"{v!r} -> {new}", (a, b, "(" + new + ")"))
        elif isinstance(node, ast.Call):
            f = node.func
            if (isinstance(f, ast.Attribute) and f.attr == "copy" and not node.args
                    and not node.keywords):
                a, b = _span(node, starts)
                add(node, "drop-copy", "drop .copy()", (a, b, "(" + ast.unparse(f.value) + ")"))
            for i, kw in enumerate(node.keywords):
                if kw.arg is None:
                    continue
                m = _copy(node)
                del m.keywords[i]
                add(node, "drop-kwarg", f"drop {kw.arg}=", _replace_expr(node, starts, m))
        # statements dropped: only bodies where `pass` keeps the block valid
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if not isinstance(body, list):
                continue
            for stmt in body:
                if (id(stmt) in keep or _is_docstring(stmt)
                        or not isinstance(stmt, (ast.Expr, ast.Assign, ast.AugAssign,
                                                 ast.Raise, ast.Return, ast.If, ast.For,
                                                 ast.AnnAssign))):
                    continue
                if isinstance(stmt, ast.Return) and stmt.value is None:
                    continue
                a, b = _span(stmt, starts)
                first = ast.unparse(stmt).splitlines()[0]
                add(stmt, "drop-stmt", f"drop `{first[:60]}`", (a, b, "pass"))
    out.sort(key=lambda m: (m.line, m.start, m.kind, m.what))
    return [m for m in out if _compiles(raw, m)]


def _compiles(raw: bytes, m: Mutant) -> bool:
    try:
        compile(_apply(raw, m), m.file, "exec")
    except SyntaxError:
        return False
    return True


# ----------------------------------------------------------------------------
# running
# ----------------------------------------------------------------------------

def _apply(raw: bytes, m: Mutant) -> bytes:
    return raw[:m.start] + m.new.encode() + raw[m.end:]


def _pytest(tests: list[str], timeout: float, env: dict) -> str:
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
           "-o", "addopts=-p minigrad.exercises.pytest_plugin", *tests]
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)  # our own child's process group only
        p.wait()
        return "timeout"
    return "survived" if rc == 0 else ("killed" if rc in (1, 2, 3) else f"error(rc={rc})")


def run(mutants: list[Mutant], tests_for: dict, timeout: float, env: dict) -> None:
    originals = {}

    def restore_all(*_):
        for path, (raw, st) in originals.items():
            with open(path, "wb") as f:
                f.write(raw)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        if _:
            sys.exit(130)
    old = {s: signal.signal(s, restore_all) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for k, m in enumerate(mutants, 1):
            path = os.path.join(ROOT, m.file)
            if path not in originals:
                with open(path, "rb") as f:
                    originals[path] = (f.read(), os.stat(path))
            raw, st = originals[path]
            with open(path, "wb") as f:
                f.write(_apply(raw, m))
            # a distinct mtime per mutant: a same-size mutant written in the same second
            # would otherwise be taken for the source of a cached .pyc
            fake = st.st_mtime_ns + (1000 + k) * 1_000_000_000
            os.utime(path, ns=(fake, fake))
            t0 = time.perf_counter()
            try:
                m.status = _pytest(tests_for[m.file], timeout, env)
            finally:
                with open(path, "wb") as f:
                    f.write(raw)
                os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
            m.seconds = time.perf_counter() - t0
            mark = "SURVIVED" if m.status == "survived" else m.status.upper()
            print(f"[{k}/{len(mutants)}] {mark:9s} {m.file}:{m.line}  {m.kind}: {m.what}"
                  f"  ({m.seconds:.1f}s)", flush=True)
    finally:
        restore_all()
        for s, h in old.items():
            signal.signal(s, h)


def _sample(by_file: dict, n: int, seed: int) -> list[Mutant]:
    """n mutants spread over files in proportion to their sites (at least one each)."""
    rng = random.Random(seed)
    total = sum(len(v) for v in by_file.values())
    if n >= total:
        return [m for v in by_file.values() for m in v]
    picked = []
    for v in by_file.values():
        k = max(1, round(n * len(v) / total)) if v else 0
        picked += rng.sample(v, min(k, len(v)))
    return sorted(picked, key=lambda m: (m.file, m.line, m.start))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("targets", nargs="+", metavar="FILE[=TESTS]")
    ap.add_argument("--tests", default="", help="pytest args for files given without =TESTS")
    ap.add_argument("--sample", type=int, default=0, help="mutants to draw (0: all)")
    ap.add_argument("--per-file", type=int, default=0,
                    help="draw this many mutants from each file instead (seeded)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per pytest run")
    ap.add_argument("--at", action="append", default=[], metavar="FILE:LINE",
                    help="only the mutants on this line (repeatable): re-run survivors")
    ap.add_argument("--list", action="store_true", help="print the sites, run nothing")
    ap.add_argument("--json", default="", help="write every mutant and its status here")
    args = ap.parse_args(argv)

    by_file, tests_for = {}, {}
    for t in args.targets:
        path, _, tests = t.partition("=")
        full = os.path.abspath(path)
        rel = os.path.relpath(full, ROOT)
        tests_for[rel] = tests.split(",") if tests else args.tests.split()
        if not tests_for[rel] and not args.list:
            ap.error(f"no tests for {path}: give {path}=TESTS or --tests")
        by_file[rel] = find_mutants(full)
    if args.at:
        at = {(os.path.relpath(os.path.abspath(a.rpartition(":")[0]), ROOT),
               int(a.rpartition(":")[2])) for a in args.at}
        by_file = {f: [m for m in v if (f, m.line) in at] for f, v in by_file.items()}
    if args.per_file:
        mutants = [m for v in by_file.values()
                   for m in _sample({0: v}, args.per_file, args.seed)]
    elif args.sample:
        mutants = _sample(by_file, args.sample, args.seed)
    else:
        mutants = [m for v in by_file.values() for m in v]
    if args.list:
        for m in mutants:
            print(f"{m.file}:{m.line}  {m.kind}: {m.what}")
        print(f"{len(mutants)} mutants of {sum(len(v) for v in by_file.values())} sites")
        return 0

    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cache = tempfile.mkdtemp(prefix="mutate-numba-")
    env["NUMBA_CACHE_DIR"] = cache
    try:
        for tests in sorted({tuple(t) for t in tests_for.values()}):
            status = _pytest(list(tests), args.timeout * 3, env)
            if status != "survived":
                print(f"baseline: {' '.join(tests)} fails unmutated ({status}); fix it first")
                return 2
        run(mutants, tests_for, args.timeout, env)
    finally:
        shutil.rmtree(cache, ignore_errors=True)

    survivors = [m for m in mutants if m.status == "survived"]
    killed = len(mutants) - len(survivors)
    print("\nsurvivors:")
    for m in survivors:
        print(f"  {m.file}:{m.line}  {m.kind}: {m.what}")
    per_file = {}
    for m in mutants:
        k, n = per_file.get(m.file, (0, 0))
        per_file[m.file] = (k + (m.status != "survived"), n + 1)
    for f, (k, n) in sorted(per_file.items()):
        print(f"  {f}: {k}/{n} killed")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(m) for m in mutants], f, indent=1)
    print(f"kill rate: {killed}/{len(mutants)} = {100 * killed / max(len(mutants), 1):.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
