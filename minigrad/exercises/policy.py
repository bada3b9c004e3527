"""What a solution region may contain: checked on its syntax tree before it runs.

A solution computes: it takes arrays and shapes and returns arrays, or updates
the tensors it is handed. It has no business opening files, importing the
operating system, reaching into interpreter internals, defining classes (a
``float`` subclass whose ``__eq__`` is always true is a forged answer) or
rewriting modules (``np.testing.assert_allclose = ...``, ``json.dump = ...``),
nor building ndarray subclasses (``np.ma.masked_all(n)`` compares equal to
anything under ``np.testing``). A forbidden module stays forbidden however it
is named (``import numpy.ctypeslib as c``, ``from numpy.ctypeslib import ...``),
and so do private ones (``numpy.lib._datasource`` has an ``open``).
The grader refuses such a region with a message naming the line, and the region
scores 0 without running. This is the first wall; the sandbox (another user,
limits, a read-only copy, signed results) is the second, for whatever a
static check misses.
"""

from __future__ import annotations

import ast
import functools
import importlib
import types

ALLOWED_IMPORTS = {"numpy", "math", "cmath", "itertools", "functools", "operator", "collections",
                   "heapq", "bisect", "typing", "numbers", "dataclasses", "minigrad"}
FORBIDDEN_NAMES = {"__import__", "eval", "exec", "compile", "open", "globals", "locals", "vars",
                   "getattr", "setattr", "delattr", "breakpoint", "input", "help", "exit", "quit",
                   "memoryview", "type", "property", "classmethod", "staticmethod", "__builtins__",
                   "__loader__", "__spec__", "__file__"}
# numpy's file access and test helpers, and ctypes: a solution never needs them
FORBIDDEN_ATTRS = {"fromfile", "tofile", "load", "loadtxt", "genfromtxt", "fromregex", "save",
                   "savez", "savez_compressed", "savetxt", "memmap", "open_memmap", "DataSource",
                   "npyio", "testing", "ctypeslib", "ctypes", "f2py", "distutils", "open", "dump",
                   # ndarray subclasses: np.testing passes a fully masked array against any
                   # expected value, whatever the test compares it with
                   "ma", "matrix", "asmatrix", "bmat", "rec", "recarray", "char", "chararray",
                   "recfunctions", "user_array"}


def _root_name(node):
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _module_aliases(tree: ast.Module, package: str) -> dict:
    """name -> module name, for every ``import`` in the file (at any level)."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            for a in node.names:
                aliases[a.asname or a.name] = f"{base}.{a.name}" if base else a.name
    return aliases


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = parts[:len(parts) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


_MISSING = object()


def _resolve(dotted: str):
    """The object ``dotted`` (``numpy.random``, ``minigrad.functional.softmax``) names,
    or _MISSING."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except Exception:  # noqa: BLE001 - not importable here: resolve from a parent
            continue
        try:
            for p in parts[i:]:
                obj = getattr(obj, p)
        except AttributeError:
            return _MISSING
        return obj
    return _MISSING


@functools.lru_cache(maxsize=1024)
def _is_module(dotted: str) -> bool:
    return isinstance(_resolve(dotted), types.ModuleType)


def _allowed_module(mod: types.ModuleType) -> bool:
    return _module_problem(mod.__name__) is None


def _module_problem(name: str):
    """Why a solution may not import or reach the module ``name`` (None: it may): a
    package outside ALLOWED_IMPORTS, minigrad.exercises, a forbidden part
    (``numpy.ctypeslib``) or a private one (``numpy.lib._datasource``, whose ``open``
    reads any file)."""
    parts = name.split(".")
    if parts[0] not in ALLOWED_IMPORTS:
        return f"imports {name} (allowed: {', '.join(sorted(ALLOWED_IMPORTS))})"
    if name == "minigrad.exercises" or name.startswith("minigrad.exercises."):
        return f"imports {name}"
    for part in parts[1:]:
        if part in FORBIDDEN_ATTRS or part.startswith("_"):
            return f"imports {name} (its part {part} is not for solutions)"
    return None


def _chain(node) -> str | None:
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id] + names[::-1])


def check_region(text: str, first: int, last: int, package: str) -> list:
    """Problems with the solution in lines ``first..last`` (1-based, inclusive) of the
    module ``text`` (the file as graded, region swapped in), ``package`` being the
    module's package (``minigrad.quant``), for relative imports."""
    tree = ast.parse(text)
    aliases = _module_aliases(tree, package)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
            and first <= getattr(n, "lineno", 0) <= last}
    # only the names the region uses are resolved (importing every module a file names is slow)
    modules = {name: dotted for name, dotted in aliases.items()
               if name in used and _is_module(dotted)}
    parents = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    problems = []

    def bad(node, what):
        problems.append(f"line {node.lineno - first + 1} of your solution: {what}")

    for node in ast.walk(tree):
        if not (first <= getattr(node, "lineno", 0) <= last):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [_absolute(node, package)])
            for name in names:
                why = _module_problem(name)
                if why is not None:  # ``import numpy.ctypeslib as c`` as much as ``np.ctypeslib``
                    bad(node, why)
                    continue
                if isinstance(node, ast.ImportFrom):
                    for a in node.names:
                        if a.name in FORBIDDEN_ATTRS or a.name == "exercises":
                            bad(node, f"imports {a.name} from {name}")
                        elif _is_module(f"{name}.{a.name}"):
                            why = _module_problem(f"{name}.{a.name}")
                            if why is not None:
                                bad(node, why)
                            modules[a.asname or a.name] = f"{name}.{a.name}"
                else:
                    for a in node.names:
                        modules[a.asname or a.name.split(".")[0]] = a.name
        elif isinstance(node, ast.ClassDef):
            bad(node, "defines a class (a solution computes values; it defines no types)")
        elif isinstance(node, ast.Global):
            bad(node, "declares a global")
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            bad(node, f"uses {node.id}")
        elif isinstance(node, ast.Attribute):
            if node.attr.startswith("__") and node.attr.endswith("__"):
                bad(node, f"uses the special attribute {node.attr}")
            elif node.attr in FORBIDDEN_ATTRS:
                bad(node, f"uses .{node.attr}")
            if isinstance(node.ctx, (ast.Store, ast.Del)):
                root = _root_name(node)
                if root is None or root in modules:
                    bad(node, f"assigns to {ast.unparse(node)}: only to attributes of your "
                              f"own objects and arguments")
        if isinstance(node, ast.Name) and node.id in modules:
            # a module may be used only as the start of an attribute access (np.zeros):
            # bound to a name, passed or stored, it could be rewritten elsewhere
            up = parents.get(node)
            if not (isinstance(up, ast.Attribute) and up.value is node):
                bad(node, f"uses the module {node.id} as a value")
            else:
                top = up
                while isinstance(parents.get(top), ast.Attribute):
                    top = parents[top]
                dotted = _chain(top) or node.id
                used_as = parents.get(top)
                called = isinstance(used_as, ast.Call) and used_as.func is top
                full = modules[node.id].split(".") + dotted.split(".")[1:]
                for i in range(len(modules[node.id].split(".")) + 1, len(full) + 1):
                    obj = _resolve(".".join(full[:i]))
                    if isinstance(obj, types.ModuleType) and not _allowed_module(obj):
                        bad(node, f"reaches the module {obj.__name__} through {dotted}")
                        break
                else:
                    if not called and _is_module(".".join(full)):
                        bad(node, f"uses the module {dotted} as a value")
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, (ast.Store, ast.Del)) \
                and _root_name(node) in modules:
            bad(node, f"assigns into {ast.unparse(node)}, a module's data")
    return sorted(set(problems), key=lambda p: int(p.split()[1]))


__all__ = ["ALLOWED_IMPORTS", "FORBIDDEN_ATTRS", "FORBIDDEN_NAMES", "check_region"]
