"""pytest plugin: the ``exercise`` marker, ``--exercise ID`` selection, and the
per-test outcomes the grader reads.

``--results-fd N`` (set by the grader, with the per-run key on a pipe whose
descriptor is in ``MINIGRAD_RESULTS_KEY_FD``) streams one signed line per test
to file descriptor N as the test finishes, and a last ``end`` line. The key is
read from the pipe (which is then closed), and the writing functions are
bound, when pytest loads this plugin: before any test module, and so before any student code, is
imported. The grader trusts only lines whose HMAC verifies, in sequence, once
per test; what a record cannot carry is points: the grader reads those from the
reference tests itself. ``--points-json PATH`` writes a plain summary (for
running the tests by hand; the grader never reads it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

import pytest

MAX_MESSAGE_LINES = 12
MAX_MESSAGE_CHARS = 900

# bound now, so a later monkeypatch of json, hmac or os cannot change what is sent
_dumps, _hmac_new, _sha256, _write = json.dumps, hmac.new, hashlib.sha256, os.write


def _read_key() -> bytes:
    """The per-run key, read once from the pipe the grader handed over (never from the
    environment, which a process can read back from /proc/self/environ)."""
    fd = os.environ.pop("MINIGRAD_RESULTS_KEY_FD", None)
    if fd is None:
        return b""
    fd, chunks = int(fd), []
    try:
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).strip()


_KEY = _read_key()
_CONFIG = []  # the running config, for hooks that are not handed it


def pytest_addoption(parser):
    g = parser.getgroup("minigrad exercises")
    g.addoption("--exercise", action="append", default=[],
                help="run only the tests of this exercise id (repeatable)")
    g.addoption("--points-json", default=None, help="write per-test points and outcomes here")
    g.addoption("--results-fd", type=int, default=None,
                help="stream signed per-test results to this file descriptor (the grader's)")


def pytest_configure(config):
    config.addinivalue_line("markers", "exercise(id, points): an autograded exercise test")
    config._minigrad_results = []
    config._minigrad_seq = 0
    _CONFIG[:] = [config]


def _marker(item):
    m = item.get_closest_marker("exercise")
    if m is None:
        return None
    ex_id = m.args[0] if m.args else m.kwargs["id"]
    points = m.kwargs.get("points", m.args[1] if len(m.args) > 1 else 1)
    return ex_id, points


def _send(config, record: dict) -> None:
    fd = config.getoption("--results-fd")
    if fd is None:
        return
    record = {**record, "seq": config._minigrad_seq}
    config._minigrad_seq += 1
    body = _dumps(record, sort_keys=True)
    sig = _hmac_new(_KEY, body.encode(), _sha256).hexdigest()
    data = (sig + " " + body + "\n").encode()
    while data:  # a short write on a pipe or a full disk must not drop half a line
        data = data[_write(fd, data):]


def cut_message(text: str) -> str:
    """The first lines of a failure (numpy's mismatch report included), capped."""
    lines = [ln.rstrip() for ln in text.strip().splitlines()]
    lines = [ln for ln in lines if ln.strip()]
    out = "\n".join(lines[:MAX_MESSAGE_LINES])
    if len(out) > MAX_MESSAGE_CHARS:
        out = out[:MAX_MESSAGE_CHARS - 3] + "..."
    elif len(lines) > MAX_MESSAGE_LINES:
        out += "\n..."
    return out


def pytest_collection_modifyitems(config, items):
    wanted = set(config.getoption("--exercise"))
    if wanted:
        keep, drop = [], []
        for item in items:
            mk = _marker(item)
            (keep if mk and mk[0] in wanted else drop).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
        items[:] = keep
    _send(config, {"kind": "collected", "tests": [it.nodeid for it in items]})


def pytest_collectreport(report):
    if report.failed:  # an import error in a test module: say which and why
        crash = getattr(report.longrepr, "reprcrash", None)
        msg = crash.message if crash is not None else str(report.longrepr)[-MAX_MESSAGE_CHARS:]
        _send(_CONFIG[0], {"kind": "collect_error", "where": report.nodeid, "message": cut_message(msg)})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    mk = _marker(item)
    if mk is None:
        return
    failed_setup = rep.when == "setup" and not rep.passed
    if rep.when == "call" or failed_setup:
        msg = ""
        if not rep.passed:
            crash = getattr(rep.longrepr, "reprcrash", None)
            msg = crash.message if crash is not None else str(rep.longrepr)[-MAX_MESSAGE_CHARS:]
        record = {"test": item.nodeid, "exercise": mk[0], "points": mk[1],
                  "passed": bool(rep.passed and not getattr(rep, "wasxfail", False)),
                  "skipped": bool(rep.skipped), "message": cut_message(msg),
                  "duration": round(float(rep.duration), 4)}
        item.config._minigrad_results.append(record)
        _send(item.config, {"kind": "test", **record})


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    _send(config, {"kind": "end", "count": len(config._minigrad_results)})
    path = config.getoption("--points-json")
    if path:
        with open(path, "w") as f:
            json.dump(config._minigrad_results, f, indent=1)
