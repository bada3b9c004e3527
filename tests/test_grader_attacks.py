"""The grader against submissions that try to raise their own score (issue 11's list).

Each attack is a solution region a student could hand in. Refused outright by
the syntax check (no job runs), or, with that check off, run in the sandbox,
where the test shows it earns nothing, leaks nothing and changes nothing. One
sandboxed submission carries several attacks at once; each is checked on its own
from the evidence the attack itself leaves in a world-writable folder.
"""

import hashlib
import json
import os
import shutil
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

from minigrad.exercises import all_exercises, all_questions, sandbox
from minigrad.exercises.answers import question_key
from minigrad.exercises.fences import replace_region, scan_package
from minigrad.exercises.grade import _copy_tree, grade
from minigrad.exercises.release import source_root

ROOT = source_root()
REGIONS = scan_package(ROOT)
pytestmark = pytest.mark.skipif(not all_exercises(), reason="no exercises declared yet")


def _ref_body(ex_id):
    r = REGIONS[ex_id]
    return r.body((ROOT / r.path).read_text().splitlines(keepends=True))


def _submit(sub: Path, bodies: dict) -> None:
    """A submission holding the files of ``bodies``' regions, each region replaced."""
    for ex_id, body in bodies.items():
        r = REGIONS[ex_id]
        dst = sub / r.path
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / r.path, dst)
        if isinstance(body, str):
            body = textwrap.indent(textwrap.dedent(body), r.indent).splitlines(keepends=True)
        dst.write_text(replace_region(dst.read_text(), ex_id, body, r.path))


def _by_id(rows):
    return {r.id: r for r in rows}


# -- refused before anything runs ------------------------------------------------------

ATTACKS = {  # exercise whose region carries it -> (attack, what the refusal names)
    "ch1.unbroadcast": ('import os\nopen("points.json", "w").write("[]")\nos._exit(0)\n', "imports os"),
    "ch1.matmul_backward": ("import json\njson.dump = lambda *a, **k: None\n", "json"),
    "ch3.causal_mask": ("import atexit\natexit.register(print)\nreturn None\n", "imports atexit"),
    "ch8.bubble_fraction": ("class Liar(float):\n    def __eq__(self, o):\n        return True\n"
                            "    __lt__ = __eq__\nreturn Liar(0)\n", "defines a class"),
    "ch9.matmul_cost": ('return open("answers.toml").read()\n', "uses open"),
    "ch9.roofline": ('return np.fromfile("tests/exercises/test_ch09.py", dtype=np.uint8)\n', ".fromfile"),
    "ch6.pack_4bit": ("np.testing.assert_array_equal = lambda *a, **k: None\nreturn idx\n", "testing"),
    "ch6.nearest_code": ('return __import__("os").getcwd()\n', "__import__"),
    "ch3.top_p": ('return getattr(np, "test" + "ing")\n', "getattr"),
    "ch5.decode_bits": ("return bits.__class__.__subclasses__()\n", "special attribute"),
    # a fully masked array passes np.testing against any expected value, and reaches the
    # tests through the reference's own `return mask...` after the region
    "ch10.semi_structured_mask": ("mask = np.ma.masked_all(w.shape, dtype=bool)\n", "numpy.ma"),
    "ch9.flops_per_token": ("import numpy.ma as M\nreturn M.masked_all(3)\n", "numpy.ma"),
    # a dotted import is no way around the forbidden attributes: libc's system() via ctypes
    "ch4.logsumexp": ("from numpy.ctypeslib import load_library\n"
                      "load_library('libc.so.6', '/lib').system(b'id')\n", "numpy.ctypeslib"),
    # numpy's private modules hold an open(): the hidden tests, reversed, past the feedback filter
    "ch10.magnitude_mask": ("t = np.lib._datasource.open('tests/exercises/test_ch10.py').read()\n"
                            "raise ValueError(t[::-1])\n", "_datasource"),
    # leaving the function: a naive rounding, and the test's oracle (same module) rewritten
    # to agree with it, scored 3/3
    "ch10.gptq_step": ([REGIONS["ch10.gptq_step"].indent + ln for ln in (
        "q = target(W[:, i])\n", "err = (W[:, i] - q) / U[i, i]\n", "W[:, i] = q\n",
        "return q, err\n")] + [
        "obs_update = lambda w, Hinv, q, new_value=0.0: np.concatenate(\n",
        "    [np.asarray(w, float)[:q], [new_value], np.asarray(w, float)[q + 1:]])\n",
        "def _rest():\n"], "indented less"),
}


def test_attacks_are_refused_before_any_student_code_runs(tmp_path, monkeypatch):
    import minigrad.exercises.grade as G

    def no_jobs(*args, **kwargs):
        raise AssertionError("a refused region started a job")

    monkeypatch.setattr(G, "_run_jobs", no_jobs)
    _submit(tmp_path, {k: v[0] for k, v in ATTACKS.items()})
    rows = _by_id(grade(tmp_path, reference=ROOT, only=list(ATTACKS), progress=False))
    for ex_id, (_, named) in ATTACKS.items():
        assert rows[ex_id].score == 0, ex_id
        assert rows[ex_id].output.startswith("not run:") and named in rows[ex_id].output, \
            (ex_id, rows[ex_id].output)


def test_links_to_the_reference_or_the_key_hand_in_nothing(tmp_path, monkeypatch):
    """A submitted file that is a symbolic link to the reference's own file (or an
    answers.toml linked to the key) would be read by the grader as the student's."""
    import minigrad.exercises.grade as G

    monkeypatch.setattr(G, "_run_jobs", lambda *a, **k: pytest.fail("a link started a job"))
    q = next(q for q in all_questions() if q.kind == "numeric")
    key = tmp_path / "key.toml"
    key.write_text(f'["{q.id}"]\nanswer = {question_key(q)["value"]!r}\n')
    sub = tmp_path / "sub"
    (sub / "minigrad").mkdir(parents=True)
    (sub / "minigrad" / "tensor.py").symlink_to(ROOT / "minigrad" / "tensor.py")
    (sub / "answers.toml").symlink_to(key)
    rows = _by_id(grade(sub, reference=ROOT, only=["ch1.unbroadcast", q.id], progress=False))
    assert rows["ch1.unbroadcast"].score == 0 and "symbolic link" in rows["ch1.unbroadcast"].output
    assert rows[q.id].score == 0 and "symbolic link" in rows[q.id].output


def test_a_region_that_does_not_compile_says_where(tmp_path):
    _submit(tmp_path, {"ch8.bubble_fraction": "return (p - 1 /\n"})
    rows = grade(tmp_path, reference=ROOT, only=["ch8.bubble_fraction"], progress=False)
    assert rows[0].score == 0 and "does not compile" in rows[0].output
    assert "line 1 of your solution" in rows[0].output


# -- run in the sandbox, the syntax check off -----------------------------------------------

SANDBOXED = '''
import os, sys, json, atexit, subprocess
ref, sub, mark = {ref!r}, {sub!r}, {mark!r}
log = {{}}
def attempt(name, action):
    try:
        action()
        log[name] = "done"
    except BaseException as e:
        log[name] = type(e).__name__
forged = '[{{"exercise": "ch1.unbroadcast", "points": 100, "passed": true}}]'
attempt("points_file", lambda: open("points.json", "w").write(forged))
attempt("conftest_tree", lambda: open("tests/conftest.py", "a").write("\\nX = 1\\n"))
attempt("conftest_ref", lambda: open(ref + "/tests/conftest.py", "a").write("\\nX = 1\\n"))
attempt("answers", lambda: open(sub + "/answers.toml", "w").write("['ch1.q.bias_grad']\\nanswer = 65\\n"))
attempt("read_reference", lambda: open(ref + "/minigrad/exercises/ch01.py").read())
attempt("memory", lambda: bytearray(8 * 2**30))
def spawn():
    kids = []
    try:
        for _ in range(400):
            kids.append(subprocess.Popen(["sleep", "60"]))
    finally:
        for k in kids:
            k.kill()
            k.wait()
attempt("processes", spawn)
json.dump = lambda *a, **k: None
json.dumps = lambda *a, **k: '{{"kind": "end"}}'
def forge():
    line = "0" * 64 + ' {{"kind": "test", "passed": true, "seq": 1}}\\n'
    for fd in range(3, 64):
        try:
            os.write(fd, line.encode())
        except OSError:
            pass
atexit.register(forge)
subprocess.Popen([sys.executable, "-c", "import os, time; open({mark!r} + '/pid', 'w')"
                  ".write(str(os.getpid())); time.sleep(120)"], start_new_session=True)
try:
    environ = open("/proc/self/environ", "rb").read().decode(errors="replace")
    log["environ"] = sorted(v.split("=")[0] for v in environ.split(chr(0)) if v)
except OSError as e:
    log["environ"] = type(e).__name__
open(mark + "/log.json", "w").write(json.JSONEncoder().encode(log))
hidden = open("tests/exercises/test_ch01.py").read()
raise AssertionError(hidden[hidden.index("BEGIN HIDDEN"):])
'''


LIAR = """
class Liar(float):
    def __eq__(self, other):
        return True
    __lt__ = __le__ = __gt__ = __ge__ = __eq__
    __hash__ = float.__hash__
return Liar(-1.0)
"""


# the reference's numba kernel of the exercise, called from the exercise's own region
KERNEL_CALL = """
from minigrad.kernels import optim as fused
fused.adam_step_numba(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, 0.0, False)
"""


@pytest.fixture(scope="module")
def sandboxed(tmp_path_factory):
    """One graded submission: ch1.unbroadcast carries the attacks, ch8.bubble_fraction
    returns a lying float, ch2.adam_update calls the reference's kernel of itself,
    ch1.matmul_backward is correct (and a forged 50-point test
    of it sits in the submission), ch3.causal_mask lost its END marker and
    ch3.repeat_kv, next to it, is the reference's."""
    base = tmp_path_factory.mktemp("sandboxed")
    assert not base.stat().st_mode & 0o077, "the test's folders must be private"
    ref, sub = base / "ref", base / "sub"
    _copy_tree(ROOT, ref)
    mark = Path(tempfile.mkdtemp(prefix="minigrad-evidence-"))
    os.chmod(mark, 0o1777)
    q = next(q for q in all_questions() if q.kind == "numeric")
    answers = f'["{q.id}"]\nanswer = {float(question_key(q)["value"])!r}\n'
    (sub / "minigrad").mkdir(parents=True)
    (sub / "answers.toml").write_text(answers)
    _submit(sub, {"ch1.unbroadcast": SANDBOXED.format(ref=str(ref), sub=str(sub), mark=str(mark)),
                  # differs from the reference, so it runs alone and its `return ga, gb`
                  # goes through plain()
                  "ch1.matmul_backward": [REGIONS["ch1.matmul_backward"].indent + "# mine\n"]
                  + _ref_body("ch1.matmul_backward"),
                  "ch8.bubble_fraction": LIAR,
                  "ch3.repeat_kv": _ref_body("ch3.repeat_kv"),
                  "ch2.adam_update": KERNEL_CALL})
    f = sub / REGIONS["ch3.causal_mask"].path
    lines = f.read_text().splitlines(keepends=True)
    del lines[REGIONS["ch3.causal_mask"].end]
    f.write_text("".join(lines))
    (sub / "tests" / "exercises").mkdir(parents=True)
    (sub / "tests" / "exercises" / "test_forged.py").write_text(
        "import pytest\n\n@pytest.mark.exercise('ch1.matmul_backward', points=50)\n"
        "def test_free_points():\n    pass\n")
    digest = {p: hashlib.sha256(p.read_bytes()).hexdigest()
              for p in [ref / "tests" / "conftest.py", sub / "answers.toml"]}
    rows = grade(sub, reference=ref, timeout=60, check_code=False, progress=False,
                 only=["ch1.unbroadcast", "ch1.matmul_backward", "ch3.causal_mask", "ch8.bubble_fraction",
                       "ch3.repeat_kv", "ch2.adam_update", q.id])
    yield {"rows": _by_id(rows), "mark": mark, "digest": digest, "question": q}
    shutil.rmtree(mark, ignore_errors=True)


def test_sandboxed_attacks_earn_nothing(sandboxed):
    rows = sandboxed["rows"]
    assert rows["ch1.unbroadcast"].score == 0, rows["ch1.unbroadcast"].output
    # a float whose comparisons always say yes reaches the tests as the float it holds
    assert rows["ch8.bubble_fraction"].score == 0, rows["ch8.bubble_fraction"].output
    # the graded copy holds no kernel of the exercise under test, as the release holds none
    assert rows["ch2.adam_update"].score == 0, rows["ch2.adam_update"].output
    # the reference's region earns its points and no more: the forged 50-point test never ran
    assert rows["ch1.matmul_backward"].score == rows["ch1.matmul_backward"].max_score == 3
    assert all("free_points" not in t.name for t in rows["ch1.matmul_backward"].tests)


@pytest.mark.skipif(not sandbox.sandboxed_uids_available(),
                    reason="jobs cannot run under uids of their own here: the grader is not "
                           "root, or no interpreter and site-packages another uid can reach "
                           "(a checkout under a private folder); grade warns of the same")
def test_sandboxed_code_cannot_write_or_read_what_it_must_not(sandboxed):
    log = json.loads((sandboxed["mark"] / "log.json").read_text())
    assert log["points_file"] == "PermissionError"      # the run's copy is read-only
    assert log["conftest_tree"] == "PermissionError"
    assert log["conftest_ref"] == "PermissionError"     # the reference is private to root
    assert log["answers"] == "PermissionError"
    assert log["read_reference"] == "PermissionError"
    assert log["memory"] == "MemoryError"                # RLIMIT_AS
    assert log["processes"] == "BlockingIOError"         # RLIMIT_NPROC: no 400 sleepers
    # the key that signs results never sits in the environment (a pipe the plugin drained)
    assert log["environ"] == "PermissionError" or (
        "MINIGRAD_RESULTS_KEY" not in log["environ"] and "MINIGRAD_RESULTS_KEY_FD" in log["environ"])
    for path, digest in sandboxed["digest"].items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{path} changed"
    q = sandboxed["question"]
    assert sandboxed["rows"][q.id].score == q.points    # the answer read before the run


@pytest.mark.skipif(os.geteuid() != 0, reason="killing by uid needs the grader to be root")
def test_a_detached_process_does_not_outlive_its_job(sandboxed):
    pid = int((sandboxed["mark"] / "pid").read_text())
    status = Path(f"/proc/{pid}/status")
    assert not status.exists() or "\nState:\tZ" in status.read_text(), \
        "a process the job started in a new session is still running"


def test_hidden_tests_never_reach_the_feedback(sandboxed):
    hidden = (ROOT / "tests" / "exercises" / "test_ch01.py").read_text()
    hidden = hidden[hidden.index("# BEGIN HIDDEN TESTS"):]
    lines = {" ".join(ln.split()) for ln in hidden.splitlines() if len(ln.strip()) >= 16}
    for r in sandboxed["rows"].values():
        shown = " ".join([r.output] + [t.output for t in r.tests])
        shown = " ".join(shown.split())
        assert not any(ln in shown for ln in lines), f"{r.id} shows the hidden tests: {shown[:300]}"
    assert "withheld" in " ".join(t.output for t in sandboxed["rows"]["ch1.unbroadcast"].tests)


def test_a_deleted_end_marker_costs_only_its_region(sandboxed):
    rows = sandboxed["rows"]
    assert rows["ch3.causal_mask"].score == 0
    assert "END SOLUTION" in rows["ch3.causal_mask"].output
    assert rows["ch3.repeat_kv"].score == rows["ch3.repeat_kv"].max_score, rows["ch3.repeat_kv"].output


def test_returns_of_a_graded_region_are_plain_values():
    from minigrad.exercises.grade import plain_returns

    code = ("def f(x):\n    # BEGIN SOLUTION ch9.f\n" + textwrap.indent(LIAR, "    ")
            + "    # END SOLUTION\n")
    ns = {}
    exec(compile(plain_returns(code, "ch9.f", Path("m.py")), "m", "exec"), ns)
    got = ns["f"](0)
    assert type(got) is float and got == -1.0 and not got == 0.5 and not got < -2
    pair = "def g(a):\n    # BEGIN SOLUTION ch9.g\n    return a, (a,)\n    # END SOLUTION\n"
    exec(compile(plain_returns(pair, "ch9.g", Path("m.py")), "m", "exec"), ns)
    assert ns["g"](1) == (1, (1,))
    from minigrad.exercises.plain import _is_named_tuple, plain
    from minigrad.tensor import MaxResult

    class Liar(float):
        def __eq__(self, other):
            return True
        __hash__ = float.__hash__

    named = plain(MaxResult(Liar(1.5), 0))   # named tuples keep their names, not their liars
    assert type(named) is MaxResult and type(named.values) is float and not named.values == 2
    # an object array's elements are values too
    held = plain(np.array([Liar(1.5), (Liar(2.5),)], dtype=object))
    assert type(held[0]) is float and type(held[1][0]) is float
    np.testing.assert_raises(AssertionError, np.testing.assert_array_equal, held[:1], [0.0])

    class Fields(tuple):  # a "named tuple" whose comparisons lie
        _fields = ("a",)

        def __eq__(self, other):
            return True
        __hash__ = tuple.__hash__

    got = plain(Fields((1.0,)))
    assert type(got) is tuple and not got == (2.0,)
    from minigrad.moe.routing import Routing
    assert _is_named_tuple(MaxResult) and _is_named_tuple(Routing)


def test_every_reference_region_passes_the_syntax_check():
    """The policy refuses attacks, never the reference's own solutions."""
    from minigrad.exercises.policy import check_region

    from minigrad.exercises.grade import plain_returns

    for ex_id, r in REGIONS.items():
        package = ".".join(r.path.with_suffix("").parts[:-1])
        text = (ROOT / r.path).read_text()
        assert check_region(text, r.begin + 2, r.end, package) == [], ex_id
        compile(plain_returns(text, ex_id, r.path), str(r.path), "exec")  # still Python
