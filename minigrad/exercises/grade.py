"""``minigrad grade SUBMISSION``: score a student copy, exercise by exercise.

Two modes, always chosen by the caller, never by how the package is installed:

- ``--reference DIR`` (the official grade): DIR is the instructor's checkout.
  Each attempted exercise is graded in its own *hybrid*, a copy of the reference
  with only that exercise's region taken from the student (and its kernel regions
  dropped, as in the release), against the public and hidden tests of the
  reference, so an unfinished chapter 3 costs nothing in chapter 4. Regions
  identical to the reference's share one run; untouched stubs score 0 without
  one. Questions are marked against a key computed from the
  reference (choice letters follow the release's shuffle, ``release_seed``).
- no reference (a student's check of their own work): the public tests in
  SUBMISSION run against SUBMISSION's own package; questions are only checked
  for form ("graded by the instructor"). Its scores are a guide, and
  ``results.json`` (``--json``) is refused without a reference.

How a submission is kept from raising its own grade:

1. Before any student code runs, the parent reads answers.toml (each answer
   under a size, term and time limit), refuses submitted files reached through
   a symbolic link (one to the reference's file would hand in its solution),
   parses every region on its own (a
   missing ``# END SOLUTION`` costs that exercise only), compiles each hybrid
   file, and checks each region's syntax tree (:mod:`.policy`: no file or
   operating-system access, no imports outside numpy/math/minigrad, no classes,
   no interpreter internals, no rewriting of modules). A region that fails
   scores 0 with the reason and never runs.
2. Each run happens in a throwaway copy owned by root and read-only to the job,
   as a free uid claimed for it when the grader is root, with memory, process,
   CPU-time, file-size and wall-time limits, a scratch HOME/TMPDIR, none of the
   grader's environment, and every process of that uid killed when the run
   ends (:mod:`.sandbox`). Every ``return X`` of the graded region becomes
   ``return plain(X)`` (:mod:`.plain`), so the tests compare built-in values and
   base ndarrays, never a subclass with a lying ``__eq__``. The reference and the submission, kept private to root
   (the Gradescope bundle does ``chmod go-rwx``; the grader warns when they are
   not), cannot be read, and nothing the job can write is read back except:
3. One signed line per test on an inherited file descriptor (the pytest plugin
   binds the HMAC key and its writers before any test module is imported). The
   parent accepts a run only if every line verifies, in sequence, once per test,
   up to the plugin's ``end`` line; a duplicate, a forged or a truncated stream
   scores the run 0. Points never come from the run: the parent reads each
   test's points from the reference's ``@pytest.mark.exercise`` decorators and
   caps every exercise at its declared points.
4. Feedback shown to the student is cut to a dozen lines, and a message that
   quotes a line of the hidden tests or of a reference solution is withheld.
   ``results.json`` is written by the parent, atomically, after every job and
   every process it started are gone.

What remains possible is bounded by the student's own exercise: code that got
past the syntax check could still fool the tests of the exercise it is graded
in (never another's, never the total).
"""

from __future__ import annotations

import ast
import difflib
import hmac
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path

from . import sandbox
from .answers import MAX_ANSWER_CHARS, AnswerError, grade_question, load_answers
from .fences import BEGIN, END, HIDDEN_BEGIN, HIDDEN_END, drop_kernels, find_regions, \
    replace_region, scan_package, stub_line
from .policy import check_region
from .registry import Question
from .release import (CONFTESTS, EXERCISE_TESTS, PACKAGE, exercise_mark, is_student_release,
                      source_root)

_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc", ".ipynb_checkpoints")
MAX_REGION_CHARS = 20_000
MAX_FEEDBACK_CHARS = 900


class GradeError(ValueError):
    """The grade cannot be run as asked (no such folder, a reference that is a release...)."""


@dataclass
class TestResult:
    """One test of an exercise, as Gradescope shows it."""

    name: str
    score: float
    max_score: float
    output: str
    hidden: bool = False


@dataclass
class Result:
    """One row of the grade: an exercise, a question, or a note (max_score 0)."""

    id: str
    title: str
    score: float
    max_score: float
    output: str
    kind: str = "exercise"
    tests: list = field(default_factory=list)


@dataclass(frozen=True)
class _TestInfo:
    exercise: str
    points: float
    hidden: bool


@dataclass
class _Job:
    exercise_ids: list
    swap: tuple | None  # (relative path, exercise id, student body lines) or None
    timeout: float


# -- reading the reference and the submission (no student code runs here) -------------

def test_catalog(root: Path) -> dict:
    """``"tests/exercises/test_chNN.py::test_name" -> _TestInfo`` from the decorators and
    the hidden-test fences of ``root``'s exercise tests, read without importing them."""
    out = {}
    for path in sorted((Path(root) / EXERCISE_TESTS).glob("test_*.py")):
        text = path.read_text()
        hidden, start = [], None
        for i, line in enumerate(text.splitlines(), start=1):
            if HIDDEN_BEGIN.match(line):
                start = i
            elif HIDDEN_END.match(line) and start is not None:
                hidden.append((start, i))
                start = None
        rel = path.relative_to(root).as_posix()
        for node in ast.parse(text).body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for dec in node.decorator_list:
                mark = exercise_mark(dec)
                if mark is None:
                    continue
                is_hidden = any(a <= node.lineno <= b for a, b in hidden)
                out[f"{rel}::{node.name}"] = _TestInfo(mark[0], float(mark[1]), is_hidden)
    return out


def student_region(text: str, exercise_id: str, path) -> tuple:
    """``(body lines, None)`` for the student's region ``exercise_id``, or
    ``(None, why)``: each region is read on its own, so a deleted END marker costs
    only the region it belonged to."""
    lines = text.splitlines(keepends=True)
    begins = [i for i, ln in enumerate(lines)
              if (m := BEGIN.match(ln.rstrip("\n"))) and m["id"] == exercise_id]
    if not begins:
        return None, f"no '# BEGIN SOLUTION {exercise_id}' line in {path}: keep the markers"
    if len(begins) > 1:
        return None, f"'# BEGIN SOLUTION {exercise_id}' appears {len(begins)} times in {path}"
    i = begins[0]
    for j in range(i + 1, len(lines)):
        if END.match(lines[j].rstrip("\n")):
            return lines[i + 1:j], None
        if BEGIN.match(lines[j].rstrip("\n")):
            break
    return None, (f"region {exercise_id} in {path} (line {i + 1}) has no '# END SOLUTION' "
                  f"before the next region or the end of the file: restore the marker")


MAX_SUBMITTED_BYTES = 4 * 2**20


def submitted_file(sub: Path, rel) -> tuple:
    """``(path, None)`` for the submission's file ``rel``, or ``(None, why)``: missing,
    too large, or reached through a symbolic link (a link to the reference's own file
    would hand in its solution, one to the answer key its answers)."""
    path = Path(sub) / rel
    for p in [path, *path.relative_to(sub).parents]:
        q = Path(sub) / p if not p.is_absolute() else p
        if q != Path(sub) and q.is_symlink():
            return None, f"{Path(rel)}: a symbolic link in the submission; hand in the file itself"
    if not path.is_file():
        return None, f"not submitted: no {Path(rel)}"
    if path.stat().st_size > MAX_SUBMITTED_BYTES:
        return None, f"{Path(rel)} is over {MAX_SUBMITTED_BYTES >> 20} MB"
    return path, None


def _submission_root(sub: Path) -> Path:
    """The folder of the submission holding ``minigrad/`` or ``answers.toml``: the given
    one, or its only subfolder that does (an upload of the release folder itself)."""
    if (sub / PACKAGE).is_dir() or (sub / "answers.toml").exists():
        return sub
    inner = [d for d in sub.iterdir() if d.is_dir()
             and ((d / PACKAGE).is_dir() or (d / "answers.toml").exists())]
    return inner[0] if len(inner) == 1 else sub


def reference_catalog(seed=None, only=None, with_key: bool = True) -> dict:
    """The exercises, questions and answer key of the running package, as plain data
    (run by the grader inside the reference; the key never reaches a job)."""
    from .answers import question_key
    from .registry import all_exercises, all_questions

    exercises = [{"id": e.id, "title": e.title, "points": e.points} for e in all_exercises()
                 if not only or e.id in only]
    questions = []
    for q in all_questions():
        if only and q.id not in only:
            continue
        row = {"id": q.id, "kind": q.kind, "points": q.points, "prompt": q.prompt,
               "choices": {str(k): str(v) for k, v in q.choices.items()},
               "variables": list(q.variables), "rtol": q.rtol, "atol": q.atol}
        try:
            if with_key:
                row["key"] = question_key(q, seed)
        except Exception as e:  # noqa: BLE001 - a broken question costs its own points only
            row["key_error"] = f"{type(e).__name__}: {e}"
        questions.append(row)
    return {"exercises": exercises, "questions": questions}


def _catalog(ref: Path | None, seed, only) -> dict:
    if ref is None:
        return reference_catalog(seed, only, with_key=False)  # a student's own check: no key
    if ref == source_root().resolve() or _package_digest(ref) == _package_digest(source_root()):
        return reference_catalog(seed, only)  # the running package is the reference's code
    # another checkout than the running package: ask it, in a process of its own
    code = ("import json, sys; from minigrad.exercises.grade import reference_catalog; "
            "a = json.loads(sys.argv[1]); print(json.dumps(reference_catalog(a[0], a[1])))")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ref),
           "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1", "HOME": tempfile.gettempdir()}
    out = subprocess.run([sys.executable, "-c", code, json.dumps([seed, only])], cwd=ref, env=env,
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise GradeError(f"grade: the reference at {ref} failed to list its exercises:\n"
                         f"{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _package_digest(root: Path) -> str:
    """A hash of every .py file of ``root``'s package, paths included."""
    h = sha256()
    for p in sorted((Path(root) / PACKAGE).rglob("*.py")):
        if "__pycache__" not in p.parts:
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _question(row: dict) -> Question:
    return Question(row["id"], row["kind"], row["points"], row["prompt"], answer=None,
                    choices=row["choices"], variables=tuple(row["variables"]),
                    rtol=row["rtol"], atol=row["atol"])


def _secrets(ref: Path, regions: dict) -> list:
    """Lines a student must never see in feedback: hidden tests, reference solutions."""
    found = set()
    for path in (ref / EXERCISE_TESTS).glob("test_*.py"):
        inside = False
        for line in path.read_text().splitlines():
            if HIDDEN_BEGIN.match(line):
                inside = True
            elif HIDDEN_END.match(line):
                inside = False
            elif inside:
                found.add(" ".join(line.split()))
    for r in regions.values():
        lines = (ref / r.path).read_text().splitlines()
        found.update(" ".join(ln.split()) for ln in lines[r.begin + 1:r.end])
    return sorted(s for s in found if len(s) >= 16 and not s.startswith("#"))


def _scrub(text: str, secret_lines: list) -> str:
    flat = " ".join(text.split())
    if any(s in flat for s in secret_lines):
        return "(feedback withheld: it quotes the hidden tests or a reference solution)"
    return text


def _warn_if_readable(path: Path, what: str) -> None:
    """Running as root, a job's uid must not be able to read ``path``: say so if it can."""
    p = Path(path).resolve()
    for d in [p, *p.parents]:
        if not d.stat().st_mode & 0o001:  # a folder others cannot enter: private
            return
    if p.stat().st_mode & 0o004:
        print(f"grade: warning: {what} {p} is readable by every user, so the code being "
              f"graded could read it; make it private (chmod -R go-rwx {p})", file=sys.stderr)


# -- running a job ------------------------------------------------------------------

def _copy_tree(src_root: Path, dst: Path) -> None:
    shutil.copytree(src_root / PACKAGE, dst / PACKAGE, ignore=_IGNORE)
    shutil.copytree(src_root / EXERCISE_TESTS, dst / EXERCISE_TESTS, ignore=_IGNORE)
    for conftest in CONFTESTS:
        if (src_root / conftest).exists():
            shutil.copy2(src_root / conftest, dst / conftest)
    (dst / "pytest.ini").write_text("[pytest]\n")  # stop pytest from finding another config


def read_records(path: Path, key: bytes) -> tuple:
    """``(collected node ids, {node id: record}, problem)`` from a job's signed stream;
    ``problem`` says why the stream is not to be trusted (or is None)."""
    collected, tests, errors, seq, ended = None, {}, [], 0, False
    raw = path.read_bytes() if path.exists() else b""
    for line in raw.decode("utf-8", "replace").splitlines():
        if ended:
            break  # nothing after the plugin's last line counts (an atexit hook, say)
        sig, _, body = line.partition(" ")
        good = hmac.new(key, body.encode(), sha256).hexdigest()
        if not hmac.compare_digest(sig, good):
            return None, {}, "its results stream holds a line the test runner did not sign"
        rec = json.loads(body)
        if rec.get("seq") != seq:
            return None, {}, "its results stream is out of order"
        seq += 1
        if rec["kind"] == "collected":
            collected = rec["tests"]
        elif rec["kind"] == "collect_error":
            errors.append(rec)
        elif rec["kind"] == "test":
            if rec["test"] in tests:
                return None, {}, f"{rec['test']} was reported twice"
            tests[rec["test"]] = rec
        elif rec["kind"] == "end":
            ended = True
    if not ended:
        return collected, tests, "stopped before the end"
    if errors:
        return collected, tests, ("the tests could not be imported: "
                                  + errors[0]["message"].replace("\n", " | "))
    return collected, tests, None


def _run_job(job: _Job, code_root: Path, jobdir: Path, uid: int | None, tests: dict) -> dict:
    """Run one job's tests sandboxed; return exercise id -> (test node id -> (passed,
    message, seconds) or None, problem or None)."""
    tree, private = jobdir / "tree", jobdir / "private"
    jobdir.mkdir(mode=0o711)
    private.mkdir(mode=0o700)
    _copy_tree(code_root, tree)
    for own in ("pytest_plugin.py", "plain.py"):  # the grader's, which speak its protocol
        shutil.copy2(Path(__file__).with_name(own), tree / PACKAGE / "exercises" / own)
    if job.swap is not None:
        rel, ex_id, body = job.swap
        # the exercise's kernels go, as in the release: calling one would hand in the
        # reference's own solution (fused.adam_step_numba for ch2.adam_update)
        for f in (tree / PACKAGE).rglob("*.py"):
            text = f.read_text()
            if f"# BEGIN KERNEL {ex_id}" in text:
                f.write_text(drop_kernels(text, {ex_id}, f.relative_to(tree)))
        target = tree / rel
        target.write_text(plain_returns(replace_region(target.read_text(), ex_id, body, rel),
                                        ex_id, rel))
    sandbox.lock_down(tree)
    scratch = sandbox.scratch_dir(jobdir, uid)
    for sub in ("tmp", "figures", "numba", "mpl"):
        (scratch / sub).mkdir()
        if uid is not None:
            os.chown(scratch / sub, uid, uid)
    key = secrets.token_hex(32)
    results_path = private / "results.log"
    fd = os.open(results_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    key_r, key_w = os.pipe()  # the key travels on a pipe the plugin drains, not in the environment
    os.write(key_w, key.encode())
    os.close(key_w)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(tree),
           "HOME": str(scratch), "TMPDIR": str(scratch / "tmp"), "MPLBACKEND": "Agg",
           "MPLCONFIGDIR": str(scratch / "mpl"), "PYTHONDONTWRITEBYTECODE": "1",
           "MINIGRAD_FIGURES": str(scratch / "figures"), "NUMBA_CACHE_DIR": str(scratch / "numba"),
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "LANG": "C.UTF-8",
           "MINIGRAD_RESULTS_KEY_FD": str(key_r)}
    for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "NUMBA_THREADING_LAYER"):
        if name in os.environ:
            env[name] = os.environ[name]
    cmd = [sys.executable, "-m", "pytest", str(EXERCISE_TESTS), "-q", "-p", "no:cacheprovider",
           "-p", "minigrad.exercises.pytest_plugin", "--results-fd", str(fd), "-o", "addopts=",
           "--tb=short", "-c", str(tree / "pytest.ini"), "--rootdir", str(tree)]
    for ex_id in job.exercise_ids:
        cmd += ["--exercise", ex_id]
    try:
        outcome = sandbox.run(cmd, tree, env, job.timeout, uid, private, pass_fds=(fd, key_r))
    finally:
        os.close(fd)
        os.close(key_r)
    collected, records, problem = read_records(results_path, key.encode())
    why = outcome.why()
    if problem == "stopped before the end":
        tail = " | ".join(outcome.output.strip().splitlines()[-3:])
        rc = outcome.returncode
        problem = (f"the test run {why}" if why else
                   f"the test run stopped early (exit code {rc}): {tail}" if records or collected
                   else f"no test ran: the run exited with code {rc} first: {tail}")
    elif collected is not None and not collected and problem is None:
        problem = ("no test ran: no test in tests/exercises is marked for this exercise "
                   "(tell the instructor)")
    out = {}
    for ex_id in job.exercise_ids:
        mine = {t: ((rec["passed"], rec["message"], rec["duration"])
                    if (rec := records.get(t)) else None)
                for t, info in tests.items() if info.exercise == ex_id}
        out[ex_id] = (mine, problem)
    return out


# -- the grade ------------------------------------------------------------------------

def grade(path=".", reference=None, timeout: float = 120.0, only=None, jobs: int = 2,
          progress: bool = True, release_seed=None, check_code: bool = True) -> list:
    """Grade the submission at ``path``; return a list of :class:`Result`.

    ``reference``: the instructor's checkout for the official grade (see the module
    docstring); None grades the submission against its own public tests.
    ``release_seed``: the seed the students' release was made with (default 0, the
    release's own default): choice answers are marked in its shuffled order.
    ``check_code=False`` skips the syntax-tree check of regions (only to test the
    sandbox behind it).
    """
    started = time.perf_counter()
    release_seed = 0 if release_seed is None else int(release_seed)  # the release's default
    sub = Path(path).resolve()
    if not sub.is_dir():
        raise GradeError(f"grade: no folder {sub}")
    sub = _submission_root(sub)
    ref = Path(reference).resolve() if reference is not None else None
    if ref is not None:
        if not (ref / EXERCISE_TESTS).is_dir() or not (ref / PACKAGE).is_dir():
            raise GradeError(f"grade: --reference {ref} has no {PACKAGE}/ and {EXERCISE_TESTS}/: "
                             f"pass the instructor's checkout")
        if is_student_release(ref):
            raise GradeError(f"grade: --reference {ref} is a student release, not the "
                             f"instructor's checkout")
        if sandbox.is_root():
            _warn_if_readable(ref, "the reference")

    catalog = _catalog(ref, release_seed, None)
    known_ids = {e["id"] for e in catalog["exercises"]} | {q["id"] for q in catalog["questions"]}
    if only:
        unknown = set(only) - known_ids
        if unknown:
            raise KeyError(f"grade: unknown exercise or question ids {sorted(unknown)}")
    exercises = sorted((e for e in catalog["exercises"] if not only or e["id"] in only),
                       key=lambda e: (_chapter(e["id"]), e["id"]))
    questions = sorted((q for q in catalog["questions"] if not only or q["id"] in only),
                       key=lambda q: (_chapter(q["id"]), q["id"]))

    # answers first: nothing the jobs do can change them
    rows_q, notes = _grade_questions(sub, questions, ref is not None, release_seed, known_ids)

    code_root = ref if ref is not None else sub
    tests = test_catalog(code_root)
    ref_regions = scan_package(code_root) if ref is not None else None
    results, batch, todo = {}, [], []
    for e in exercises:
        ex_id = e["id"]
        if ref is not None:
            r = ref_regions.get(ex_id)
            if r is None:
                results[ex_id] = ({}, f"the reference has no region {ex_id} (tell the instructor)")
                continue
            rel = r.path
        else:
            rel = _find_region_file(sub, ex_id)
            if rel is None:
                results[ex_id] = ({}, f"no '# BEGIN SOLUTION {ex_id}' line in {PACKAGE}/: "
                                      f"keep the markers")
                continue
        student_file, why = submitted_file(sub, rel)
        if student_file is None:
            results[ex_id] = ({}, why)
            continue
        body, why = student_region(student_file.read_text(errors="replace"), ex_id, rel)
        if body is None:
            results[ex_id] = ({}, why)
            continue
        indent = r.indent if ref is not None else (body[0][:len(body[0]) - len(body[0].lstrip())]
                                                  if body else "")
        if [b.strip() for b in body] == [stub_line(indent, ex_id, e["title"]).strip()]:
            results[ex_id] = ({}, "not attempted: still raises NotImplementedError")
            continue
        if ref is None:
            todo.append(_Job([ex_id], None, timeout))
            continue
        ref_text = (ref / rel).read_text()
        if body == r.body(ref_text.splitlines(keepends=True)):
            batch.append(ex_id)
            continue
        refused = _refuse(ref_text, rel, ex_id, body, check_code)
        if refused:
            results[ex_id] = ({}, refused)
            continue
        todo.append(_Job([ex_id], (rel, ex_id, body), timeout))
    if batch:
        todo.insert(0, _Job(batch, None, timeout * len(batch)))  # each keeps its own limit

    if todo:
        results.update(_run_jobs(todo, code_root, tests, jobs, progress))

    secret_lines = _secrets(ref, ref_regions) if ref is not None else []
    rows = [_exercise_row(e, results[e["id"]], tests, ref is not None, secret_lines)
            for e in exercises]
    rows += rows_q + notes
    grade.last_seconds = time.perf_counter() - started
    return rows


grade.last_seconds = 0.0


def _chapter(item_id: str) -> int:
    return int(item_id.split(".")[0].removeprefix("ch"))


def _find_region_file(root: Path, ex_id: str):
    for p in sorted((root / PACKAGE).rglob("*.py")):
        text = p.read_text(errors="replace")
        if f"# BEGIN SOLUTION {ex_id}" in text:
            return p.relative_to(root)
    return None


def _refuse(ref_text: str, rel: Path, ex_id: str, body: list, check_code: bool):
    """Why the student's region cannot run (too long, does not compile, breaks the
    policy), or None."""
    if sum(len(b) for b in body) > MAX_REGION_CHARS:
        return f"your solution is over {MAX_REGION_CHARS:,} characters long"
    text = replace_region(ref_text, ex_id, body, rel)
    r = next(x for x in find_regions(text, rel) if x.id == ex_id)
    try:
        compile(text, str(rel), "exec", dont_inherit=True)
    except SyntaxError as e:
        line = (e.lineno or 0) - (r.begin + 1)
        where = (f"line {line} of your solution" if 1 <= line <= len(body) else
                 f"{rel}:{e.lineno}" if e.lineno else str(rel))
        return f"does not compile: {where}: {e.msg}"
    except (ValueError, RecursionError, MemoryError) as e:
        return f"does not compile: {type(e).__name__}"
    escaped = _outside_region(text, r)
    if escaped:
        return f"not run: {escaped}"
    if not check_code:
        return None
    package = ".".join(Path(rel).with_suffix("").parts[:-1])
    problems = check_region(text, r.begin + 2, r.end, package)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        return "not run: " + "; ".join(problems[:3]) + more
    return None


def _outside_region(text: str, r) -> str | None:
    """Why region ``r`` of ``text`` does not stay inside the block it was cut from, or None.

    A line indented less than the markers leaves the function: it could define module
    names (an oracle the tests call, ``obs_update``, rewritten to agree with a wrong
    answer) and hand the rest of the function to a ``def`` of its own. A statement
    running past ``# END SOLUTION`` (an open string or bracket) swallows reference code.
    """
    first, last = r.begin + 2, r.end  # 1-based lines of the body
    width = len(r.indent.encode())
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.stmt) and first <= node.lineno <= last:
            where = f"line {node.lineno - first + 1} of your solution"
            if node.col_offset < width:
                return (f"{where} is indented less than the '# BEGIN SOLUTION' line: "
                        f"a solution stays inside its function")
            if (node.end_lineno or node.lineno) > last:
                return f"{where} runs on past '# END SOLUTION': close it before the marker"
    return None


def plain_returns(text: str, ex_id: str, rel) -> str:
    """``text`` with every ``return X`` inside region ``ex_id`` made ``return plain(X)``
    (:mod:`.plain`): the tests then compare built-in values, whatever the region built."""
    r = next(x for x in find_regions(text, rel) if x.id == ex_id)
    first, last = r.begin + 2, r.end  # 1-based lines of the body
    lines = text.splitlines(keepends=True)
    tree = ast.parse(text)
    if _in_compiled_function(tree, first):
        return text  # numba compiles it: it returns numpy values, and cannot call plain()
    returns = [n for n in ast.walk(tree) if isinstance(n, ast.Return)
               and n.value is not None and first <= n.lineno <= last]
    # right to left, bottom to top, so earlier offsets stay valid
    for n in sorted(returns, key=lambda n: (n.value.lineno, n.value.col_offset), reverse=True):
        v = n.value
        end = lines[v.end_lineno - 1]
        lines[v.end_lineno - 1] = _at(end, v.end_col_offset, "))")
        start = lines[v.lineno - 1]
        # two parentheses: ``return a, b`` is one tuple, not two arguments
        lines[v.lineno - 1] = _at(start, v.col_offset, "_minigrad_plain_((")
    head = f"{r.indent}from minigrad.exercises.plain import plain as _minigrad_plain_\n"
    return "".join(lines[:r.begin + 1] + [head] + lines[r.begin + 1:])


def _in_compiled_function(tree: ast.Module, line: int) -> bool:
    """Whether ``line`` lies in a function decorated with numba's jit, njit, vectorize..."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                and node.lineno <= line <= (node.end_lineno or node.lineno):
            for dec in node.decorator_list:
                name = ast.unparse(dec.func if isinstance(dec, ast.Call) else dec)
                if any(w in name for w in ("jit", "vectorize", "stencil", "cfunc")):
                    return True
    return False


def _at(line: str, col: int, insert: str) -> str:
    """``line`` with ``insert`` at UTF-8 byte offset ``col`` (ast's column unit)."""
    raw = line.encode()
    return (raw[:col] + insert.encode() + raw[col:]).decode()


def _run_jobs(todo: list, code_root: Path, tests: dict, jobs: int, progress: bool) -> dict:
    n = max(1, jobs)
    if sandbox.is_root() and not sandbox.sandboxed_uids_available():
        print("grade: warning: no Python interpreter that another user may run was found "
              "(set MINIGRAD_GRADE_PYTHON); jobs run as root, without their own uid",
              file=sys.stderr)
    uids = sandbox.claim_uids(n)
    free, lock = (list(uids) or [None] * n), threading.Lock()
    results = {}
    base = Path(tempfile.mkdtemp(prefix="minigrad-grade-"))
    os.chmod(base, 0o711)  # jobs may enter their own folder, never list the others

    def run(ij):
        i, job = ij
        with lock:
            uid = free.pop()
        try:
            return _run_job(job, code_root, base / f"job{i}", uid, tests)
        finally:
            with lock:
                free.append(uid)

    try:
        from tqdm import tqdm
        with ThreadPoolExecutor(max_workers=n) as pool:
            try:
                for res in tqdm(pool.map(run, enumerate(todo)), total=len(todo), desc="grading",
                                unit="run", file=sys.stderr, disable=not progress):
                    results.update(res)
            except BaseException:  # interrupted: start no more jobs, end the running ones
                pool.shutdown(wait=False, cancel_futures=True)
                for uid in uids:
                    sandbox.kill_all(uid=uid)
                raise
    finally:
        sandbox.release_uids(uids)
        shutil.rmtree(base, ignore_errors=True)
    return results


_NOT_RUN = "did not run: the test run ended without reaching it, or pytest did not collect it"


def _exercise_row(e: dict, result: tuple, tests: dict, official: bool, secret_lines) -> Result:
    ex_id, max_points = e["id"], e["points"]
    per_test, problem = result
    infos = {t: tests[t] for t in tests if tests[t].exercise == ex_id}
    rows, earned = [], 0.0
    for t, info in infos.items():
        got = per_test.get(t)
        passed = bool(got and got[0] and problem is None)
        msg = "passed" if passed else (problem if problem else
                                       _NOT_RUN if got is None else got[1] or "failed")
        msg = _scrub(msg, secret_lines)[:MAX_FEEDBACK_CHARS]
        earned += info.points if passed else 0
        rows.append(TestResult(t.split("::")[-1], info.points if passed else 0, info.points, msg,
                               info.hidden))
    score = min(float(max_points), earned)
    public = [r for r in rows if not r.hidden]
    if problem or not per_test:
        output = problem or ("no test ran: no test in tests/exercises is marked for this "
                             "exercise (tell the instructor)")
        output = _scrub(output, secret_lines)
    elif official:
        failed = [r for r in rows if r.score < r.max_score]
        first = next((r for r in failed if not r.hidden), failed[0] if failed else None)
        output = (f"all {len(rows)} tests passed" if not failed else
                  f"{len(failed)} of {len(rows)} tests failed; {first.name}"
                  f"{' (hidden)' if first.hidden else ''}: {first.output}")
    else:
        passed = sum(1 for r in public if r.score == r.max_score)
        failed = [r for r in public if r.score < r.max_score]
        output = f"public tests {passed}/{len(public)} passed"
        if failed:
            output += f"; {failed[0].name}: {failed[0].output}"
        if sum(r.max_score for r in rows) < max_points:
            output += "; hidden tests are graded by the instructor"
    return Result(ex_id, e["title"], score, float(max_points), output, "exercise", rows)


def _grade_questions(sub: Path, questions: list, official: bool, seed, known_ids: set) -> tuple:
    rows, notes = [], []
    answers_path, why = submitted_file(sub, "answers.toml")
    try:
        if answers_path is None and not why.startswith("not submitted"):
            raise AnswerError(why)
        answers = load_answers(answers_path) if answers_path is not None else {}
        bad_file = None
    except AnswerError as err:
        answers, bad_file = {}, str(err)
    unknown = sorted(k for k in answers if k not in known_ids)
    for k in unknown:
        near = difflib.get_close_matches(k, sorted(known_ids), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        notes.append(Result(k, "answers.toml", 0, 0, f"no question {k!r}{hint}: this answer is "
                                                     f"not graded", "note"))
    for row in questions:
        q = _question(row)
        title = q.prompt.strip().splitlines()[0][:60] if q.prompt.strip() else q.id
        if bad_file:
            rows.append(Result(q.id, title, 0, q.points, bad_file, "question"))
            continue
        answer = answers.get(q.id)
        if isinstance(answer, str) and len(answer) > MAX_ANSWER_CHARS:
            rows.append(Result(q.id, title, 0, q.points, f"answer is {len(answer):,} characters "
                               f"long; at most {MAX_ANSWER_CHARS:,}", "question"))
            continue
        if official and "key_error" in row:
            rows.append(Result(q.id, title, 0, q.points, "cannot be graded: the reference's "
                               f"answer failed ({row['key_error'][:200]}); tell the instructor",
                               "question"))
            continue
        key = row.get("key") if official else None
        try:
            qr = grade_question(q, answer, key=key, seed=seed)
        except Exception as e:  # noqa: BLE001 - one odd answer costs its own points only
            qr = grade_question(q, None)
            qr.output = f"cannot be graded ({type(e).__name__}); write a plain number or formula"
        rows.append(Result(q.id, title, qr.score, qr.max_score, qr.output, "question"))
    return rows, notes


# -- output ---------------------------------------------------------------------------

def report(rows, stream=None) -> str:
    """The per-exercise table and the total, as printed by ``minigrad grade``."""
    stream = stream or sys.stdout
    w = max([len(r.id) for r in rows] + [8])
    lines = [f"{'exercise':<{w}}  {'points':>7}  result", f"{'-' * w}  {'-' * 7}  ------"]
    for r in rows:
        first, *more = r.output.splitlines() or [""]
        pts = f"{r.score:g}/{r.max_score:g}" if r.kind != "note" else "note"
        lines.append(f"{r.id:<{w}}  {pts:>7}  {first}")
        lines += [f"{'':<{w}}  {'':>7}    {m}" for m in more]
    got, total = sum(r.score for r in rows), sum(r.max_score for r in rows)
    lines.append(f"{'total':<{w}}  {f'{got:g}/{total:g}':>7}")
    text = "\n".join(lines)
    print(text, file=stream)
    return text


def gradescope_json(rows, execution_time: float | None = None) -> dict:
    """Gradescope's autograder results format (results.json): one entry per test of
    each exercise (hidden tests ``after_published``), one per question, notes last."""
    tests = []
    for r in rows:
        if r.kind == "exercise" and r.tests:
            for t in r.tests:
                tests.append({"name": f"{r.id}: {t.name}", "score": t.score,
                              "max_score": t.max_score, "output": t.output,
                              "visibility": "after_published" if t.hidden else "visible"})
            capped = sum(t.score for t in r.tests) - r.score
            if capped > 0:  # tests marked with more points than the exercise is worth
                tests.append({"name": f"{r.id}: cap at {r.max_score:g} points", "score": -capped,
                              "max_score": 0, "output": "", "visibility": "visible"})
        else:
            tests.append({"name": f"{r.id}: {r.title}", "score": r.score,
                          "max_score": r.max_score, "output": r.output, "visibility": "visible"})
    out = {"score": sum(r.score for r in rows), "visibility": "visible",
           "stdout_visibility": "hidden", "tests": tests}
    if execution_time is not None:
        out["execution_time"] = round(execution_time, 2)
    return out


def write_results(path, data: dict) -> None:
    """Write ``data`` as JSON to ``path`` atomically (a temporary file, then a rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".results-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["GradeError", "Result", "TestResult", "grade", "gradescope_json", "plain_returns",
           "read_records", "reference_catalog", "report", "student_region", "submitted_file",
           "test_catalog", "write_results"]
