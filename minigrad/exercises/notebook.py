"""Notebooks in a student release: a cell that reaches a stub says which
exercise to write, and the notebook goes on.

nbclient (and so nbmake and "Run all") stops at the first cell whose
execution reply has status "error", and IPython's custom exception handlers
do not change that status. So the guard works one step earlier: an IPython
AST transformer (``InteractiveShell.ast_transformers``, public API) wraps
each cell as

    try:
        <the cell's statements>
        _minigrad_cell_value = <its last expression>   # still displayed
    except Exception as _minigrad_error:
        _minigrad_cell_value = None
        if not absorb(_minigrad_error, <names the cell binds>): raise
    _minigrad_cell_value

:func:`absorb` swallows the error only when it is a release stub's
``NotImplementedError("<exercise id>: <title>")``, printing the exercise's
id, title and file; or, once a stub has been reached, any later error,
printed in one line with the exercise that most likely caused it (a name the
skipped cell would have defined, a gradient it never computed), so the
cells that need an unfinished result say so instead of stopping the
notebook. Before any stub is reached, every error is raised as before: a
notebook whose exercises are solved fails on a real bug as it always did. ``import minigrad`` installs the guard when it runs in a release
inside IPython; the instructor's checkout has no stubs and no guard.
"""

from __future__ import annotations

import ast
import re
import sys
import traceback
from pathlib import Path

_STUB = re.compile(r"^(?P<id>ch\d+\.[\w.]+): (?P<title>.+)$")
_VALUE = "_minigrad_cell_value"
_ERROR = "_minigrad_error"
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]

_skipped: dict = {}   # name a skipped cell would have bound -> the exercise that stopped it
_reached: list = []   # the exercises whose stubs this kernel has reached, in order


def stub_of(error: BaseException):
    """(exercise id, title) when ``error`` is a release stub, else None."""
    if type(error) is not NotImplementedError or len(error.args) != 1:
        return None
    m = _STUB.match(str(error.args[0]))
    if m is None:
        return None
    from .registry import all_exercises

    ids = {e.id for e in all_exercises()}
    return (m["id"], m["title"]) if m["id"] in ids else None


def _stub_file(error: BaseException) -> str:
    """The package file whose fenced stub raised ``error``, relative to the project."""
    frames = traceback.extract_tb(error.__traceback__)
    for frame in reversed(frames):
        path = Path(frame.filename).resolve()
        if path.is_relative_to(_PACKAGE_ROOT):
            return f"{path.relative_to(_PACKAGE_ROOT.parent)}:{frame.lineno}"
    return "the package"


def absorb(error: BaseException, names=(), file=None) -> bool:
    """Report ``error`` and return True when it comes from an unfinished exercise
    (see the module docstring); return False for any other error."""
    file = file or sys.stdout
    stub = stub_of(error)
    if stub is not None:
        ex_id, title = stub
        print(f"Exercise {ex_id} is not implemented yet: {title}.\n"
              f"Write it between '# BEGIN SOLUTION {ex_id}' and '# END SOLUTION' in "
              f"{_stub_file(error)}, then run the notebook again. The rest of this cell "
              f"was skipped; the notebook goes on.", file=file)
    elif isinstance(error, NameError) and getattr(error, "name", None) in _skipped:
        ex_id = _skipped[error.name]
        print(f"Skipped: this cell needs {error.name!r}, which an earlier cell could not "
              f"compute until exercise {ex_id} is implemented.", file=file)
    elif _reached:
        ex_id = _reached[0]
        print(f"Skipped: this cell failed ({type(error).__name__}: {str(error)[:200]}), most "
              f"likely because an earlier cell stopped at exercise {ex_id}, not implemented "
              f"yet.", file=file)
    else:
        return False
    if stub is not None and ex_id not in _reached:
        _reached.append(ex_id)
    for name in names:
        _skipped.setdefault(name, ex_id)
    return True


def _bound_names(stmts) -> list:
    """Names the top-level statements ``stmts`` assign, define or import."""
    names = set()
    for node in ast.walk(ast.Module(body=list(stmts), type_ignores=[])):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
    return sorted(names - {_VALUE, _ERROR})


class StubGuard(ast.NodeTransformer):
    """Wraps a cell so that reaching an exercise stub is reported, not raised."""

    def visit_Module(self, node):
        body = list(node.body)
        if not body or any(isinstance(s, ast.ImportFrom) and s.module == "__future__" for s in body):
            return node
        last = body[-1]
        if isinstance(last, ast.Expr):
            body[-1] = ast.Assign(targets=[ast.Name(_VALUE, ast.Store())], value=last.value)
        else:
            body.append(ast.Assign(targets=[ast.Name(_VALUE, ast.Store())],
                                   value=ast.Constant(None)))
        absorb_call = ast.Call(
            func=ast.Attribute(
                value=ast.Call(func=ast.Name("__import__", ast.Load()),
                               args=[ast.Constant(__name__)],
                               keywords=[ast.keyword("fromlist", ast.List([ast.Constant("absorb")],
                                                                          ast.Load()))]),
                attr="absorb", ctx=ast.Load()),
            args=[ast.Name(_ERROR, ast.Load()),
                  ast.Tuple([ast.Constant(n) for n in _bound_names(node.body)], ast.Load())],
            keywords=[])
        handler = ast.ExceptHandler(
            type=ast.Name("Exception", ast.Load()), name=_ERROR,
            body=[ast.Assign(targets=[ast.Name(_VALUE, ast.Store())], value=ast.Constant(None)),
                  ast.If(test=ast.UnaryOp(ast.Not(), absorb_call), body=[ast.Raise()], orelse=[])])
        guarded = ast.Try(body=body, handlers=[handler], orelse=[], finalbody=[])
        new = ast.Module(body=[guarded, ast.Expr(ast.Name(_VALUE, ast.Load()))],
                         type_ignores=node.type_ignores)
        # the new nodes point at the cell's last statement (tracebacks still show the
        # user's own lines); the try spans the whole cell
        for n in ast.walk(new):
            if "lineno" in n._attributes and not hasattr(n, "lineno"):
                ast.copy_location(n, last)
        guarded.lineno, guarded.col_offset = node.body[0].lineno, node.body[0].col_offset
        return new


def install(shell=None) -> bool:
    """Add the guard to the running IPython shell (once); False outside IPython."""
    if shell is None:
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return False
    if not any(isinstance(t, StubGuard) for t in shell.ast_transformers):
        shell.ast_transformers.append(StubGuard())
    return True
