"""pytest plugin: the ``exercise`` marker, ``--exercise ID`` selection and a
points summary written as JSON for the grader (``--points-json PATH``)."""

from __future__ import annotations

import json

import pytest


def pytest_addoption(parser):
    g = parser.getgroup("minigrad exercises")
    g.addoption("--exercise", action="append", default=[],
                help="run only the tests of this exercise id (repeatable)")
    g.addoption("--points-json", default=None, help="write per-test points and outcomes here")


def pytest_configure(config):
    config.addinivalue_line("markers", "exercise(id, points): an autograded exercise test")
    config._minigrad_results = []


def _marker(item):
    m = item.get_closest_marker("exercise")
    if m is None:
        return None
    ex_id = m.args[0] if m.args else m.kwargs["id"]
    points = m.kwargs.get("points", m.args[1] if len(m.args) > 1 else 1)
    return ex_id, points


def pytest_collection_modifyitems(config, items):
    wanted = set(config.getoption("--exercise"))
    if not wanted:
        return
    keep, drop = [], []
    for item in items:
        mk = _marker(item)
        (keep if mk and mk[0] in wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep


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
            msg = crash.message if crash is not None else str(rep.longrepr)[-500:]
        item.config._minigrad_results.append(
            {"test": item.nodeid, "exercise": mk[0], "points": mk[1],
             "passed": bool(rep.passed and not getattr(rep, "wasxfail", False)),
             "skipped": bool(rep.skipped), "message": msg.strip().splitlines()[0][:300] if msg.strip() else ""})


def pytest_sessionfinish(session, exitstatus):
    path = session.config.getoption("--points-json")
    if path:
        with open(path, "w") as f:
            json.dump(session.config._minigrad_results, f, indent=1)
