"""The code a student reads first stays readable: short functions, one meaning per
public name, one producer per figure (issue 14). Each test reads the source with
``ast`` (nothing is imported or run), so it costs milliseconds."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "minigrad"
MAX_FUNCTION_LINES = 60


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _length_without_docstring(fn) -> int:
    """Lines from ``def`` to the last statement, less the docstring's (documentation is welcome)."""
    lines = fn.end_lineno - fn.lineno + 1
    first = fn.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
            and isinstance(first.value.value, str):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def test_no_function_in_the_core_is_longer_than_a_screen():
    core = [LIB / "tensor.py", LIB / "functional.py",
            *sorted((LIB / "nn").glob("*.py")), *sorted((LIB / "flash").glob("*.py"))]
    long = [f"{p.relative_to(ROOT)}:{fn.lineno} {fn.name} ({_length_without_docstring(fn)} lines)"
            for p in core for fn in _functions(p)
            if _length_without_docstring(fn) > MAX_FUNCTION_LINES]
    assert not long, f"split these into named steps (max {MAX_FUNCTION_LINES} lines): {long}"


def test_the_line_count_sees_a_long_function():
    src = "def f():\n    '''doc\n    more'''\n" + "    x = 1\n" * 61
    (fn,) = ast.parse(src).body
    assert _length_without_docstring(fn) == 62
