"""The student release: cut by assignment, from tracked files only, with no
answer and no solution outside a stubbed fence, byte-reproducible; the
instructor's key follows the release's shuffled options."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minigrad.exercises import all_exercises, all_questions
from minigrad.exercises.answers import grade_question
from minigrad.exercises.fences import (FenceError, find_kernel_regions, find_regions, release_text,
                                       scan_package)
from minigrad.exercises.registry import answer_format, key_for, shuffled_choices
from minigrad.exercises.release import (answer_key, parse_chapters, release, release_info,
                                        release_plan, source_root, tracked_files)

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib

ROOT = source_root()
CHAPTERS = sorted({e.chapter for e in all_exercises()})


@pytest.fixture(scope="module")
def stubbed_all(tmp_path_factory):
    return release(tmp_path_factory.mktemp("all") / "student", seed=7)


@pytest.fixture(scope="module")
def assignment(tmp_path_factory):
    """The release of chapter 3's assignment."""
    return release(tmp_path_factory.mktemp("ch3") / "student", chapters=[3], seed=7)


def _files(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


# -- the plan ---------------------------------------------------------------------------

def test_chapter_lists_and_ranges_parse():
    assert parse_chapters("3") == [3]
    assert parse_chapters("1,3") == [1, 3]
    assert parse_chapters("1-4") == [1, 2, 3, 4]
    assert parse_chapters("4-5, 1") == [1, 4, 5]
    for bad in ["", "a", "3-1", "0", "1,,2"]:
        with pytest.raises(ValueError, match="chapters"):
            parse_chapters(bad)


def test_the_plan_stubs_the_assigned_and_later_chapters_and_solves_the_rest():
    assert release_plan([3], range(1, 10)) == ([3, 4, 5, 6, 7, 8, 9], [1, 2])
    assert release_plan([1, 3], range(1, 10)) == ([1, 3, 4, 5, 6, 7, 8, 9], [2])
    assert release_plan(None, range(1, 4)) == ([1, 2, 3], [])
    assert release_plan([9], range(1, 10)) == ([9], list(range(1, 9)))


def test_a_chapter_without_exercises_or_notebook_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no exercises and no notebook"):
        release(tmp_path / "r", chapters=[99])


def test_assignment_ships_earlier_chapters_solved_without_markers(assignment):
    info = release_info(assignment)
    assert info["chapters"] == [c for c in CHAPTERS if c >= 3] and info["solved"] == [1, 2]
    assert info["assigned"] == [3] and info["seed"] == 7
    regions = scan_package(assignment)
    assert {r for r in regions} == {e.id for e in all_exercises() if e.chapter >= 3}
    ref = scan_package(ROOT)
    for e in all_exercises():
        if e.chapter < 3:   # the reference's code is there, outside any fence
            r = ref[e.id]
            body = "".join(r.body((ROOT / r.path).read_text().splitlines(keepends=True)))
            assert body in (assignment / r.path).read_text(), e.id
    released = {e["id"] for e in json.loads(
        (assignment / "minigrad/exercises/catalog.json").read_text())["exercises"]}
    assert released == set(regions)
    assert all(k.split(".")[0] not in ("ch1", "ch2")
               for k in tomllib.loads((assignment / "answers.toml").read_text()))


def test_release_text_stubs_drops_kernels_and_unfences_solved_code():
    text = ("def f():\n    # BEGIN SOLUTION ch1.f\n    return 1\n    # END SOLUTION\n"
            "# BEGIN KERNEL ch1.f\nFAST = 1\n# END KERNEL\n"
            "def g():\n    # BEGIN SOLUTION ch2.g\n    return 2\n    # END SOLUTION\n"
            "# BEGIN KERNEL ch2.g\nG = 2\n# END KERNEL\n")
    titles = {"ch1.f": "eff", "ch2.g": "gee"}
    out = release_text(text, titles, {"ch1.f"})
    assert 'raise NotImplementedError("ch1.f: eff")' in out and "return 1" not in out
    assert "FAST" not in out and "KERNEL" not in out
    assert "return 2" in out and "G = 2" in out and "ch2.g" not in out
    assert [r.id for r in find_regions(out)] == ["ch1.f"] and find_kernel_regions(out) == []


# -- tracked files only -----------------------------------------------------------------

def _tracked_copy(dst: Path) -> Path:
    for rel in tracked_files(ROOT):
        if rel.parts[0] in ("minigrad", "tests", "notebooks") or rel.name in (
                "conftest.py", "pyproject.toml"):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / rel, dst / rel)
    return dst


def test_only_tracked_files_are_released(tmp_path):
    src = _tracked_copy(tmp_path / "src")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(git + ["init", "-q"], cwd=src, check=True)
    subprocess.run(git + ["add", "-A"], cwd=src, check=True)
    stray = ["minigrad/reference.py~", "minigrad/optim.py.orig", "notebooks/scratch.ipynb",
             "minigrad/flash/notes.py", "tests/exercises/test_mine.py"]
    for name in stray:
        (src / name).write_text("SECRET = 'the solution'\n")
    out = release(tmp_path / "out", root=src)
    shipped = set(_files(out))
    assert not shipped & set(stray)
    assert "minigrad/tensor.py" in shipped and "notebooks/01_autograd.ipynb" in shipped
    # outside a git checkout the manifest decides
    shutil.rmtree(src / ".git")
    with pytest.raises(FileNotFoundError, match="release-manifest.txt"):
        release(tmp_path / "out2", root=src)
    (src / "release-manifest.txt").write_text("\n".join(str(p) for p in tracked_files(ROOT)))
    again = release(tmp_path / "out2", root=src)
    assert _files(again) == _files(out)


def test_a_tracked_file_copied_verbatim_with_fences_is_refused(tmp_path):
    """A committed merge leftover (optim.py.orig) or a notebook's script holding a
    fenced solution would ship as it is: only the package's and the exercise tests'
    .py files are stubbed."""
    src = tmp_path / "src"
    (src / "minigrad").mkdir(parents=True)
    shutil.copyfile(ROOT / "minigrad" / "optim.py", src / "minigrad" / "optim.py.orig")
    names = [str(p) for p in tracked_files(ROOT)] + ["minigrad/optim.py.orig"]
    for rel in names:
        if not (src / rel).exists() and (rel.startswith(("minigrad/", "tests/exercises/"))
                                         or rel == "tests/conftest.py"):
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / rel, src / rel)
    (src / "release-manifest.txt").write_text("\n".join(names))
    with pytest.raises(FenceError, match=r"optim\.py\.orig holds '# BEGIN SOLUTION ch2"):
        release(tmp_path / "out", root=src)


# -- answers never ship -----------------------------------------------------------------

def test_no_answer_function_letter_or_formula_ships(stubbed_all):
    exercises_dir = stubbed_all / "minigrad" / "exercises"
    assert not list(exercises_dir.glob("ch[0-9][0-9].py"))
    data = json.loads((exercises_dir / "catalog.json").read_text())
    assert len(data["questions"]) == len(all_questions())
    assert all(q["answer"] is None and q["formula"] == "" for q in data["questions"])
    for q in all_questions():
        if q.kind == "expression":
            assert q.formula not in (stubbed_all / "answers.toml").read_text()
    out = subprocess.run(
        [sys.executable, "-c", "from minigrad.exercises.registry import all_questions as a;"
         "qs = a(); print(sum(q.answer is not None for q in qs), len(qs))"],
        cwd=stubbed_all, env={**os.environ, "PYTHONPATH": str(stubbed_all)},
        capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", str(len(all_questions()))]


def test_choices_are_shuffled_per_seed_and_the_key_follows_them():
    choice = [q for q in all_questions() if q.kind == "choice"]
    assert choice
    right = {q.id: q.choices[q.answer()] for q in choice}
    orders = set()
    for seed in range(4):
        keys = []
        for q in choice:
            shown = shuffled_choices(q, seed)
            assert sorted(shown.values()) == sorted(q.choices.values())
            assert list(shown) == sorted(shown)          # letters a, b, c... in order
            keys.append(next(k for k, t in shown.items() if t == right[q.id]))
        assert keys[:3] == [key_for(q, seed) for q in choice[:3]]
        orders.add(tuple(keys))
        # no letter is the key of more than 60% of the questions
        assert max(keys.count(k) for k in set(keys)) <= 0.6 * len(keys), keys
    assert len(orders) > 1


def test_released_choice_questions_show_the_release_order(stubbed_all):
    data = json.loads((stubbed_all / "minigrad/exercises/catalog.json").read_text())
    by_id = {q.id: q for q in all_questions()}
    for q in data["questions"]:
        if q["kind"] == "choice":
            assert q["choices"] == shuffled_choices(by_id[q["id"]], 7) and q["shuffle_seed"] == 7


def test_answer_formats_say_what_a_valid_answer_looks_like():
    for q in all_questions():
        text = answer_format(q)
        assert text and "\n" not in text
        if q.kind == "choice":
            assert all(k in text for k in q.choices)
        if q.kind == "expression":
            assert all(v in text for v in q.variables)


def test_the_key_scores_the_reference_full_marks(stubbed_all, tmp_path):
    info = release_info(stubbed_all)
    (tmp_path / "key.toml").write_text(answer_key(info["seed"], info["chapters"]))
    key = tomllib.loads((tmp_path / "key.toml").read_text())
    assert set(key) == {q.id for q in all_questions()}
    for q in all_questions():
        value = key[q.id]["answer"]
        if q.kind == "choice":   # the key's letter names the right option in the release's order
            text = shuffled_choices(q, info["seed"])[value]
            value = next(k for k, t in q.choices.items() if t == text)
        r = grade_question(q, value)
        assert r.score == q.points, f"{q.id}: {r.output}"


def test_cli_key_reads_the_release(stubbed_all, tmp_path):
    from minigrad.cli import main

    assert main(["exercises", "key", str(tmp_path / "k.toml"), "--release", str(stubbed_all)]) == 0
    assert (tmp_path / "k.toml").read_text() == answer_key(7, release_info(stubbed_all)["chapters"])


# -- no solution outside a fence --------------------------------------------------------

def _normalized(line: str) -> str:
    return re.sub(r"\s+", "", line.split("#")[0])


# (file, exercise): a copy found there that gives nothing away, and why
ALLOWED_COPIES = {
    # torch's full-range observer takes the same max|x| per tensor or channel, which the
    # exercise's statement gives ("the scale is max|x| / Q"); its scale and rounding differ
    ("minigrad/quant/absmax.py", "ch6.absmax"),
}


def solution_copies(copy: Path) -> list:
    """Every pair of consecutive meaningful lines of a fenced solution (>= 16
    characters each, comments and spaces dropped) found in the package of the
    release ``copy``: a copy of a solution next to its stub shows up."""
    ref = scan_package(ROOT)
    pairs = {}
    for ex_id, r in ref.items():
        body = [_normalized(x) for x in r.body((ROOT / r.path).read_text().splitlines())]
        body = [x for x in body if len(x) >= 16]
        for a, b in zip(body, body[1:]):
            pairs[(a, b)] = ex_id
    assert len(pairs) > 50
    found = []
    for p in sorted((copy / "minigrad").rglob("*.py")):
        lines = [x for x in map(_normalized, p.read_text().splitlines()) if len(x) >= 16]
        rel = str(p.relative_to(copy))
        for a, b in zip(lines, lines[1:]):
            if (a, b) in pairs and (rel, pairs[(a, b)]) not in ALLOWED_COPIES:
                found.append(f"{rel}: {pairs[(a, b)]}: {a} / {b}")
    return found


def test_no_solution_lines_stand_outside_the_fences(stubbed_all, tmp_path):
    assert not solution_copies(stubbed_all), "\n".join(solution_copies(stubbed_all))
    # the scan sees a copy: a solution pasted into another module of a release
    planted = tmp_path / "planted"
    shutil.copytree(stubbed_all / "minigrad", planted / "minigrad")
    r = scan_package(ROOT)["ch4.backward_tile"]
    body = r.body((ROOT / r.path).read_text().splitlines(keepends=True))
    with open(planted / "minigrad" / "sampling.py", "a") as f:
        f.write("\n\ndef _helper(s, lse_i, do_i, v_j, delta_i, k_j, q_i, scale):\n"
                + "".join(body))
    assert any("ch4.backward_tile" in x for x in solution_copies(planted))
    for p in (stubbed_all / "minigrad").rglob("*.py"):
        assert "BEGIN KERNEL" not in p.read_text() or p.parent.name == "exercises"


def test_fast_kernels_that_restate_stubs_are_gone_and_the_stubs_are_reached(stubbed_all):
    script = """
import numpy as np
from minigrad.quant import kernels as qk, quantize_4bit, quantize_blockwise
from minigrad.flash import flash_attention, kernels as fk
from minigrad.distributed import kernels as dk
from minigrad.precision import round_to
from minigrad.memory import checkpoint_activation_bytes
assert not hasattr(fk, "flash_forward") and not hasattr(fk, "flash_backward")
assert not hasattr(dk, "ring_segments") and not hasattr(dk, "ring_segments_reference")
assert qk.get("quantize_4bit") is None and qk.get("quantize_blockwise_int") is None
assert not hasattr(qk, "_absmax_reference")
x = np.linspace(-1, 1, 10, dtype=np.float32)
q = np.ones((1, 4, 3))
for name, f in [("ch5.", lambda: round_to(x, "bf16")), ("ch5.", lambda: round_to(x, "fp16")),
                ("ch6.", lambda: quantize_4bit(x)), ("ch6.", lambda: quantize_blockwise(x)),
                ("ch4.", lambda: flash_attention(q, q, q)),
                # the bytes of checkpointing (a, b = 1) would hand in ch7.checkpoint_units
                ("ch7.", lambda: checkpoint_activation_bytes(64, 8, 1, 1))]:
    try:
        f()
    except NotImplementedError as e:
        assert str(e).startswith(name), e
    else:
        raise AssertionError(name + " ran without the student's code")
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=stubbed_all,
                         env={**os.environ, "PYTHONPATH": str(stubbed_all)},
                         capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr[-3000:]


def test_every_released_module_imports_and_exports_what_its_all_names(stubbed_all):
    # dropping a kernel region must take its names out of __all__ too: a star import (or a
    # student's `from minigrad.kernels.optim import *`) would raise on a name that is gone
    script = """
import importlib, pkgutil, minigrad
missing = []
for m in pkgutil.walk_packages(minigrad.__path__, "minigrad."):
    try:
        mod = importlib.import_module(m.name)
    except ImportError as e:                  # an optional dependency (mpi4py, torch)
        if e.name and e.name.split(".")[0] in ("mpi4py", "torch"):
            continue
        raise
    missing += [m.name + "." + n for n in getattr(mod, "__all__", ()) if not hasattr(mod, n)]
print(missing)
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=stubbed_all,
                         env={**os.environ, "PYTHONPATH": str(stubbed_all)},
                         capture_output=True, text=True)
    assert out.stdout.strip() == "[]", (out.stdout, out.stderr[-3000:])


@pytest.mark.parametrize("n, blocksize", [(1, 1), (7, 3), (64, 64), (1001, 64), (130, 7)])
def test_quant_encoders_through_the_exercises_equal_the_kernels(n, blocksize):
    """What a release that stubs chapter 6 runs (the chapter's own functions, no kernel)
    gives the kernels' bits: odd sizes, partial blocks, all-zero blocks, ties."""
    import minigrad
    from minigrad.quant import quantize_4bit, quantize_blockwise, quantize_blockwise_linear

    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4)).astype(np.float32)
    x[:blocksize] = 0                                  # a whole block of zeros
    x[-1] = -x.max() if n > 1 else x[-1]               # equal magnitudes
    if n > 2 * blocksize:
        x[blocksize:2 * blocksize] *= np.float32(2.0 ** -120)  # a block whose absmax is subnormal
    for fn, kwargs in [(quantize_4bit, {"quant_type": "nf4"}), (quantize_4bit, {"quant_type": "fp4"}),
                       (quantize_blockwise_linear, {"bits": 8}),
                       (quantize_blockwise_linear, {"bits": 3}), (quantize_blockwise, {})]:
        a, sa = fn(x, blocksize=blocksize, **kwargs)
        with minigrad.kernels.use("reference"):
            b, sb = fn(x, blocksize=blocksize, **kwargs)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(sa.absmax, sb.absmax)


# -- reproducible ------------------------------------------------------------------------

def test_same_source_and_seed_give_identical_bytes_and_the_seed_only_moves_choices(
        stubbed_all, tmp_path):
    same = release(tmp_path / "same", seed=7)
    assert _files(same) == _files(stubbed_all)
    other = _files(release(tmp_path / "other", seed=8))
    differ = {k for k, v in _files(stubbed_all).items() if other.get(k) != v}
    assert differ <= {"minigrad/exercises/catalog.json", "minigrad/exercises/release_info.json",
                      "answers.toml"}, differ
    assert "minigrad/exercises/catalog.json" in differ
