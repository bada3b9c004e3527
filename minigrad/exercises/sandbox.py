"""Running untrusted code for the grader: another user, hard limits, nothing left behind.

:func:`run` starts a command the way the grader runs a student's tests:

- as an unprivileged user when the grader is root (Gradescope runs as root): a
  uid of its own per concurrent job (:func:`claim_uids`: free uids drawn
  from ``SANDBOX_UID_BASE`` up, claimed so that two graders on one machine never
  share one, no account needed), no supplementary groups, so it cannot write what root owns
  (the reference, the hidden tests, the answers, the results) nor read what is
  private to root;
- with ``RLIMIT_AS`` (memory), ``RLIMIT_NPROC`` (processes and threads of that
  uid), ``RLIMIT_CPU``, ``RLIMIT_FSIZE`` and no core files, set by a short
  bootstrap that then ``exec``s the command (no ``preexec_fn``: the grader
  starts jobs from threads);
- with a minimal environment (none of the grader's own variables) and a
  scratch folder of its own for HOME, TMPDIR, caches and figures;
- under a wall-clock limit, after which, and in every case when the command
  ends, every process of that uid is killed, including those that left the
  session with ``setsid`` or were orphaned to init.

Without root there is no other uid to switch to: the limits still apply,
the job's session is killed, and so is any process whose environment carries
the job's one-time token (a process can shed that by exec'ing with a clean
environment, so a local grade is a check for the student, not a proctor).
"""

from __future__ import annotations

import functools
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SANDBOX_UID_BASE = int(os.environ.get("MINIGRAD_SANDBOX_UID_BASE", "200000"))
MEMORY_BYTES = int(float(os.environ.get("MINIGRAD_GRADE_MEMORY_GB", "4")) * 2**30)
MAX_PROCESSES = 128   # threads count: numba, OpenBLAS and pytest need a few dozen
MAX_FILE_BYTES = 64 * 2**20
OUTPUT_TAIL = 4000

# run by ``python -I -S -c``: only the standard library, before anything else loads
_BOOTSTRAP = """
import os, resource, sys
mem, nproc, cpu, fsize = (int(v) for v in sys.argv[1:5])
for lim, v in ((resource.RLIMIT_AS, mem), (resource.RLIMIT_NPROC, nproc),
               (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_FSIZE, fsize),
               (resource.RLIMIT_CORE, 0)):
    resource.setrlimit(lim, (v, v))
os.execv(sys.argv[5], sys.argv[5:])
"""


def is_root() -> bool:
    return os.geteuid() == 0


@dataclass
class Outcome:
    returncode: int | None
    timed_out: bool
    output: str          # the last OUTPUT_TAIL characters of stdout and stderr
    seconds: float

    def why(self) -> str:
        """The reason a run stopped early, in words (empty when it exited normally)."""
        if self.timed_out:
            return "timed out (an endless loop?)"
        rc = self.returncode
        if rc is not None and rc < 0:
            sig = signal.Signals(-rc)
            hint = {signal.SIGKILL: "killed: out of memory, or too many processes?",
                    signal.SIGXCPU: "used up its CPU time",
                    signal.SIGXFSZ: f"wrote a file over {MAX_FILE_BYTES >> 20} MB",
                    signal.SIGSEGV: "crashed (segmentation fault)",
                    signal.SIGABRT: "aborted"}.get(sig, "killed")
            return f"{hint} ({sig.name})"
        return ""


def _pids_of(uid: int | None, token: str | None) -> list:
    me = os.getpid()
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            status = Path(f"/proc/{d}/status").read_text()
            if "\nState:\tZ" in status:
                continue
            if uid is not None:
                uids = next(ln for ln in status.splitlines() if ln.startswith("Uid:")).split()[1:]
                if str(uid) in uids:
                    out.append(int(d))
            elif token is not None and token.encode() in Path(f"/proc/{d}/environ").read_bytes():
                out.append(int(d))
        except (OSError, StopIteration):
            continue
    return out


def kill_all(uid: int | None = None, token: str | None = None) -> int:
    """SIGKILL every live process of ``uid`` (or carrying ``token`` in its environment),
    until none is left; return how many were killed."""
    killed = 0
    for _ in range(200):  # a fork loop refills the list; NPROC bounds how fast
        pids = _pids_of(uid, token)
        if not pids:
            return killed
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        time.sleep(0.005)
    return killed


def _reachable(path: str) -> bool:
    """Whether a user with no rights of its own can read (and enter) ``path``."""
    p = Path(os.path.realpath(path))
    try:
        if any(not d.stat().st_mode & 0o001 for d in p.parents):
            return False
        return bool(p.stat().st_mode & (0o005 if p.is_file() else 0o001))
    except OSError:
        return False


def site_dirs() -> list:
    """Where the grader's own libraries (numpy, numba, pytest) live: its site-packages,
    and any site-packages folder it was given on PYTHONPATH."""
    found = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    found += [p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages"))]
    return list(dict.fromkeys(p for p in found if os.path.isdir(p)))


@functools.lru_cache(maxsize=1)
def job_python() -> tuple:
    """``(interpreter, extra sys.path entries)`` a job's uid can run, or ``(None, [])``.

    The grader's own interpreter when others may run it (a system Python, as on
    Gradescope); otherwise a system interpreter of the same version given this
    environment's site-packages (a Python installed under root's private home
    cannot be run by another user). ``MINIGRAD_GRADE_PYTHON`` names one outright.
    """
    site = site_dirs()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    override = os.environ.get("MINIGRAD_GRADE_PYTHON")
    if override:
        return override, site
    stdlib = sysconfig.get_paths()["stdlib"]
    if _reachable(sys.executable) and _reachable(stdlib) and all(_reachable(d) for d in site):
        return sys.executable, []
    for name in (shutil.which(f"python{version}"), f"/usr/bin/python{version}",
                 f"/usr/local/bin/python{version}"):
        if name and _reachable(name) and all(_reachable(d) for d in site):
            return name, site
    return None, []


UID_RANGE = 20_000
_CLAIMS = Path("/run/minigrad-grade-uids") if Path("/run").is_dir() else \
    Path(tempfile.gettempdir()) / "minigrad-grade-uids"


def sandboxed_uids_available() -> bool:
    """Whether jobs can run as uids of their own: the grader is root and an interpreter
    those uids can run exists."""
    return is_root() and job_python()[0] is not None


def claim_uids(n: int) -> list:
    """``n`` uids no account and no process uses, each claimed by an exclusive file in
    a folder only root can write; give them back with :func:`release_uids`. Empty when
    jobs cannot switch uid (:func:`sandboxed_uids_available`)."""
    if not sandboxed_uids_available():
        return []
    _CLAIMS.mkdir(mode=0o700, exist_ok=True)
    rng = random.SystemRandom()
    claimed = []
    for _ in range(200 * n):
        if len(claimed) == n:
            break
        uid = SANDBOX_UID_BASE + rng.randrange(UID_RANGE)
        try:
            fd = os.open(_CLAIMS / str(uid), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            if _claim_is_stale(uid):
                (_CLAIMS / str(uid)).unlink(missing_ok=True)
            continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        if uid_is_free(uid):
            claimed.append(uid)
        else:
            (_CLAIMS / str(uid)).unlink(missing_ok=True)
    if len(claimed) < n:
        release_uids(claimed)
        raise RuntimeError(f"sandbox: could not find {n} free uids from {SANDBOX_UID_BASE}")
    return claimed


def _claim_is_stale(uid: int) -> bool:
    """A claim whose grader is gone (it crashed before giving the uid back)."""
    try:
        pid = int((_CLAIMS / str(uid)).read_text() or 0)
        os.kill(pid, 0)
        return False
    except (ValueError, OSError):
        return True


def release_uids(uids) -> None:
    for uid in uids:
        kill_all(uid=uid)
        (_CLAIMS / str(uid)).unlink(missing_ok=True)


def scratch_dir(parent: Path, uid: int | None) -> Path:
    """A private writable folder for the job (HOME, TMPDIR, caches)."""
    d = Path(parent) / "scratch"
    d.mkdir(mode=0o700)
    if uid is not None:
        os.chown(d, uid, uid)
    return d


def lock_down(root: Path) -> None:
    """Make ``root`` readable but not writable by anyone but its owner (root)."""
    for dirpath, _dirs, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for f in filenames:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                os.chmod(p, 0o644)


def run(cmd: list, cwd: Path, env: dict, timeout: float, uid: int | None, private: Path,
        pass_fds=()) -> Outcome:
    """Run ``cmd`` sandboxed (see the module docstring). ``private`` is a folder only
    the grader can write: the output is captured there, never in memory unbounded."""
    token = secrets.token_hex(16)
    env = {**env, "MINIGRAD_JOB_TOKEN": token}
    if cmd[0] == sys.executable:
        python, site = job_python() if uid is not None else (sys.executable, site_dirs())
        cmd = [python, *cmd[1:]]
        env["PYTHONPATH"] = os.pathsep.join([p for p in [env.get("PYTHONPATH")] if p] + site)
    log_path = Path(private) / "output.log"
    cpu = int(timeout) + 30
    boot = [cmd[0], "-I", "-S", "-c", _BOOTSTRAP, str(MEMORY_BYTES), str(MAX_PROCESSES),
            str(cpu), str(MAX_FILE_BYTES), shutil.which(cmd[0]) or cmd[0], *cmd[1:]]
    ids = dict(user=uid, group=uid, extra_groups=[]) if uid is not None else {}
    start = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(boot, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                pass_fds=tuple(pass_fds), close_fds=True, **ids)
        try:
            proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            kill_all(uid=uid) if uid is not None else kill_all(token=token)
            proc.wait()
    seconds = time.perf_counter() - start
    with open(log_path, "rb") as f:
        f.seek(max(0, log_path.stat().st_size - OUTPUT_TAIL))
        output = f.read().decode("utf-8", "replace")
    return Outcome(None if timed_out else proc.returncode, timed_out, output, seconds)


def uid_is_free(uid: int) -> bool:
    """No account and no running process uses ``uid``."""
    import pwd

    try:
        pwd.getpwuid(uid)
        return False
    except KeyError:
        return not _pids_of(uid, None)


__all__ = ["Outcome", "claim_uids", "is_root", "kill_all", "lock_down", "release_uids", "run",
           "sandboxed_uids_available", "scratch_dir", "uid_is_free"]
