"""``minigrad launch -n 4 [--backend mpi|sim] script.py [args]``: run a per-rank script.

- ``--backend mpi``: ``mpiexec -n N python script.py args`` (MPICH's Hydra),
  one process per rank. Each rank writes a one-line status file (its pid
  and the collective it is in); when the job fails the launcher reads them
  and names the rank: the one that raised, the one that died (Hydra reports
  its pid), or, past ``timeout`` seconds, the ranks stuck and where.
- ``--backend sim``: the script's ranks as threads of this process on a
  ``VirtualCluster(N)`` (:func:`minigrad.distributed.spawn`).

Only rank 0's stdout is shown (and its progress bars); every rank's stderr
is kept, prefixed ``[rank r]`` for tracebacks.

Across machines (MPI only): ``--hostfile FILE`` is passed to mpiexec
(``-f FILE``, one ``host[:slots]`` per line); every host needs the same
Python environment at the same path and passwordless ssh from this one.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import process_group as pg

__all__ = ["launch", "LaunchError", "mpiexec_path", "mpi_command"]


class LaunchError(pg.DistError):
    """The launched job failed; the message names the rank (``rank``, or None)."""

    def __init__(self, message, rank=None, output=""):
        super().__init__(message)
        self.rank, self.output = rank, output


def mpiexec_path() -> str:
    """The mpiexec beside this Python (the mpich wheel's), else the one on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    if here.exists():
        return str(here)
    found = shutil.which("mpiexec")
    if found is None:
        pg_hint = pg.MPI_EXTRA_HINT
        raise LaunchError(f"launch: no mpiexec found; install an MPI with {pg_hint}")
    return found


def mpi_command(script, nprocs, script_args=(), module=False, hostfile=None) -> list:
    cmd = [mpiexec_path(), "-n", str(nprocs)]
    if hostfile:
        cmd += ["-f", str(hostfile)]
    target = ["-m", script] if module else [str(script)]
    return cmd + [sys.executable] + target + [str(a) for a in script_args]


def launch(script, nprocs: int, backend: str = "mpi", script_args=(), timeout=None,
           module: bool = False, hostfile=None, capture: bool = False, env=None):
    """Run ``script`` (a path, or a module name with ``module=True``) on ``nprocs`` ranks.

    Returns the combined output when ``capture`` (else None, output streamed).
    Raises :class:`LaunchError` naming the rank when a rank raises, dies, or
    the run passes ``timeout`` seconds (None: no limit under MPI; the
    default collective timeout on the simulator).
    """
    if not isinstance(nprocs, int) or nprocs < 1:
        raise ValueError(f"launch: nprocs must be an integer >= 1, got {nprocs!r}")
    if backend == "sim":
        return _launch_sim(script, nprocs, script_args, timeout, module)
    if backend != "mpi":
        raise ValueError(f"launch: backend must be 'mpi' or 'sim', got {backend!r}")
    return _launch_mpi(script, nprocs, script_args, timeout, module, hostfile, capture, env)


# ----------------------------------------------------------------------------
# MPI
# ----------------------------------------------------------------------------

def _read_status(folder, nprocs) -> dict:
    out = {}
    for r in range(nprocs):
        try:
            line = (Path(folder) / f"rank{r}").read_text().strip()
        except OSError:
            out[r] = (None, "not started")
            continue
        pid, _, state = line.partition(" ")
        out[r] = (int(pid), state)
    return out


def _pump(stream, sink, keep):
    for line in iter(stream.readline, ""):
        keep.append(line)
        if sink is not None:
            sink.write(line)
            sink.flush()
    stream.close()


def _launch_mpi(script, nprocs, script_args, timeout, module, hostfile, capture, env):
    cmd = mpi_command(script, nprocs, script_args, module, hostfile)
    with tempfile.TemporaryDirectory(prefix="minigrad-launch-") as folder:
        full_env = dict(os.environ if env is None else env)
        full_env.update(MINIGRAD_BACKEND="mpi", MINIGRAD_STATUS_DIR=folder,
                        PYTHONUNBUFFERED="1")
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=full_env, start_new_session=True)
        out_lines, err_lines = [], []
        pumps = [threading.Thread(target=_pump, args=(proc.stdout, None if capture else sys.stdout,
                                                      out_lines), daemon=True),
                 threading.Thread(target=_pump, args=(proc.stderr, None if capture else sys.stderr,
                                                      err_lines), daemon=True)]
        for t in pumps:
            t.start()
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            status = _read_status(folder, nprocs)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            for t in pumps:
                t.join(5)
            raise _hang_error(status, timeout, "".join(out_lines + err_lines)) from None
        for t in pumps:
            t.join(5)
        output = "".join(out_lines + err_lines)
        if rc != 0:
            raise _failure_error(_read_status(folder, nprocs), rc, output)
        _ = time.monotonic() - start
    return output if capture else None


def _failure_error(status, rc, output):
    if any(s.startswith("timed out") for _, s in status.values()):
        return _hang_error(status, None, output)       # a rank's watchdog saw a peer hang
    failed = {r: s for r, (_, s) in status.items() if s.startswith("failed")}
    if failed:
        r = min(failed)
        return LaunchError(f"rank {r} {failed[r]}", rank=r, output=output)
    pid_to_rank = {pid: r for r, (pid, _) in status.items() if pid is not None}
    silent = [r for r, (pid, _) in status.items() if pid is None]    # died before its status
    m = re.search(r"PID (\d+) RUNNING AT (\S+)\s*=\s*EXIT CODE: (\d+)", output)
    named = None                                  # the rank Hydra says died, if it names one
    if m:
        hydra_pid, host, code = int(m.group(1)), m.group(2), int(m.group(3))
        named = pid_to_rank.get(hydra_pid, silent[0] if len(silent) == 1 else None)
    if named is not None:
        r = _first_killed(status, named) if code == signal.SIGKILL else named
        pid = status[r][0] or (hydra_pid if r == named else "unknown")
        how = f"killed by signal {code}" if 0 < code < 64 else f"exit code {code}"
        return LaunchError(f"rank {r} (pid {pid} on {host}) died ({how}); "
                           f"the other ranks were ended", rank=r, output=output)
    unfinished = [r for r, (_, s) in status.items() if s != "done"]
    r = unfinished[0] if len(unfinished) == 1 else None
    return LaunchError(f"the job failed (exit code {rc}); ranks not finished: {unfinished}",
                       rank=r, output=output)


def _first_killed(status, named):
    """Which rank died first, when Hydra names ``named`` as killed by SIGKILL.

    Hydra ends the other ranks with SIGKILL too, and under load it may collect
    one of those exits first and name it. A rank that died on its own between
    collectives is the one the others wait for: when ``named`` sits inside a
    collective and some unfinished rank does not, that rank (the furthest
    behind) is the first to die.
    """
    def inside(state):
        return state.startswith("in ")
    outside = {r: s for r, (_, s) in status.items() if not inside(s) and s != "done"}
    if not inside(status[named][1]) or not outside:
        return named
    return _behind(outside)


def _seq(state):
    m = re.search(r"#(\d+)", state)
    return int(m.group(1)) if m else 0


def _behind(states) -> int:
    """The rank of ``{rank: state}`` furthest behind (fewest collectives), the lowest on a tie."""
    return min(states, key=lambda r: (_seq(states[r]), r))


def _hang_error(status, timeout, output):
    waiting = {r: s for r, (_, s) in status.items() if s.startswith(("in ", "timed out"))}
    others = {r: s for r, (_, s) in status.items() if r not in waiting and s != "done"}
    detail = "; ".join(f"rank {r}: {s}" for r, (_, s) in status.items())
    after = f"timed out after {timeout:g} s" if timeout else "a collective timed out"
    if others and (waiting or len(others) == 1):
        r = _behind(others)         # outside the collectives while the others wait for it
    elif waiting and not others:
        r = _behind(waiting)        # every unfinished rank inside one: the furthest behind
    else:                           # several ranks still outside any collective: none waits
        return LaunchError(f"{after} with no rank waiting for another ({detail})", rank=None,
                           output=output)
    return LaunchError(f"{after}: rank {r} hangs ({detail})", rank=r, output=output)


# ----------------------------------------------------------------------------
# the simulator
# ----------------------------------------------------------------------------

def _launch_sim(script, nprocs, script_args, timeout, module):
    import importlib.util
    package = None
    if module:
        spec = importlib.util.find_spec(script)
        if spec is None or spec.origin is None:
            raise LaunchError(f"launch: no module named {script!r}")
        path, package = spec.origin, spec.parent      # relative imports work as under -m
    else:
        path = str(script)
    source = Path(path).read_text()
    code = compile(source, path, "exec")
    old_argv = sys.argv
    sys.argv = [path] + [str(a) for a in script_args]
    sys.path.insert(0, str(Path(path).parent))

    def rank_main():
        g = {"__name__": "__main__", "__file__": path, "__builtins__": __builtins__,
             "__package__": package}
        try:
            exec(code, g)
        except SystemExit as e:
            if e.code not in (None, 0):
                raise
    try:
        pg.spawn(rank_main, nprocs, timeout=timeout)
    except pg.RankError as e:
        raise LaunchError(str(e), rank=e.rank) from e
    except pg.DistError as e:
        raise LaunchError(str(e)) from e
    finally:
        sys.argv = old_argv
        sys.path.remove(str(Path(path).parent))
