"""The code a student reads first stays readable: short functions, one meaning per
public name, one producer per figure (issue 14). Each test reads the source with
``ast`` (nothing is imported or run), so it costs milliseconds."""

import ast
import functools
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


# One public name, one meaning. Scanned: the library, not its tooling (exercises/: the
# grader and its CLI) nor the tour's sections (each defines run(out_dir, quick), the
# plug-in interface). Deliberate exceptions, each named with its reason:
SAME_NAME_ALLOWED = {
    # chapter 8 tells collectives twice on purpose: collectives.py runs one on the whole
    # simulated cluster (cluster, tensors: one per rank, as the chapter draws it);
    # process_group.py is torch.distributed's per-rank API (tensor, ...), with torch's names
    # and behaviour. A call with the other's arguments fails on the first argument.
    **dict.fromkeys(["broadcast", "reduce", "all_reduce", "reduce_scatter", "all_gather",
                     "all_to_all"], "distributed: whole-cluster collectives vs torch.distributed's"),
    # the same split for the layers: tensor_parallel.py / ddp.py hold every rank's shard
    # (cluster, xs); spmd/ is the code one rank runs (x)
    **dict.fromkeys(["copy_to_tensor_parallel", "reduce_from_tensor_parallel", "gather_along_dim",
                     "reduce_scatter_along_dim", "forward_layers"],
                    "distributed: whole-cluster vs per-rank (spmd) layers"),
}
SCANNED_OUT = ("minigrad/exercises/", "minigrad/tour/")


def _signature(args: ast.arguments) -> tuple:
    """Parameter names, kinds and defaults; annotations are documentation, not meaning."""
    pos = [a.arg for a in args.posonlyargs + args.args]
    defaults = [ast.unparse(d) for d in args.defaults]
    kw = [(a.arg, None if d is None else ast.unparse(d)) for a, d in zip(args.kwonlyargs,
                                                                          args.kw_defaults)]
    return (tuple(pos), tuple(defaults), args.vararg and args.vararg.arg, tuple(kw),
            args.kwarg and args.kwarg.arg)


@functools.cache
def _public_signatures():
    """{name: {signature: [module, ...]}} over every module-level public library function."""
    found = {}
    for p in sorted(LIB.rglob("*.py")):
        rel = str(p.relative_to(ROOT))
        if rel.startswith(SCANNED_OUT):
            continue
        for node in ast.parse(p.read_text(), filename=str(p)).body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                found.setdefault(node.name, {}).setdefault(_signature(node.args), []).append(rel)
    return found


def test_two_public_functions_never_share_a_name_with_different_signatures():
    clashes = {name: sigs for name, sigs in _public_signatures().items()
               if len(sigs) > 1 and name not in SAME_NAME_ALLOWED}
    # naive_attention(q, k, v, 0.25, True) once ran on two functions that read 0.25
    # as attn_mask in one and scale in the other: same name, different meaning
    assert not clashes, f"rename one, or make them one function: {clashes}"


def test_the_allowed_exceptions_still_exist():
    found = _public_signatures()
    stale = [name for name in SAME_NAME_ALLOWED if len(found.get(name, {})) < 2]
    assert not stale, f"no longer a clash, drop from SAME_NAME_ALLOWED: {stale}"


def _savefig_names(path: Path):
    """The figure names a file saves: the literal second argument of each savefig(...) call."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) \
                == "savefig" and len(node.args) >= 2:
            name = node.args[1]
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                yield name.value
            elif isinstance(name, ast.JoinedStr):   # f"ch03_{x}": its literal head
                yield "".join(v.value for v in name.values if isinstance(v, ast.Constant)) + "*"


def figure_producers():
    """{figure name: [files that save it]} over the tour sections and the notebooks."""
    found = {}
    for p in sorted((LIB / "tour").glob("ch*.py")) + sorted((ROOT / "notebooks").glob("*.py")):
        for name in _savefig_names(p):
            found.setdefault(name, []).append(str(p.relative_to(ROOT)))
    return found


def test_each_figure_has_one_producer():
    # the tour writes the chapter figures that figures/ and the README show; a notebook
    # draws the same figure from the same library function and shows it without saving
    found = figure_producers()
    twice = {name: files for name, files in found.items() if len(files) > 1}
    # f"ch08_pipeline_{name}" may write any name with that head
    for pattern, files in found.items():
        if pattern.endswith("*"):
            for name, others in found.items():
                if name != pattern and name.startswith(pattern[:-1]) and set(others) - set(files):
                    twice[name] = sorted(set(others) | set(files))
    assert not twice, f"two producers of one figure name: {twice}"


def test_the_tour_holds_no_assert():
    # a check belongs in a test; the tour reports what it measured
    bad = [f"{p.name}:{node.lineno}" for p in sorted((LIB / "tour").glob("ch*.py"))
           for node in ast.walk(ast.parse(p.read_text())) if isinstance(node, ast.Assert)]
    assert not bad, bad


def test_the_producer_scan_reads_savefig_calls():
    src = 'savefig(fig, "a")\nviz.savefig(V.f(x, "not a name"), "b", out)\nsavefig(g, f"c_{i}")\n'
    p = ROOT / "tests" / "_tmp_savefig_scan.py"
    try:
        p.write_text(src)
        assert list(_savefig_names(p)) == ["a", "b", "c_*"]
    finally:
        p.unlink()
