"""pytest plugin used inside the guest (`-p minicontainer.testing.lane_report`): writes every
test's outcome to $MINICONTAINER_LANE_REPORT as JSON, rewritten after each test so that a
guest that dies half-way still tells which tests finished.

    {"collected": [nodeid...], "results": {nodeid: {"outcome": "passed"|"failed"|"skipped",
     "when": phase, "longrepr": text, "duration": s, "output": captured text}}, "done": bool}
"""
from __future__ import annotations

import json
import os

_state = {"collected": [], "results": {}, "done": False}


def _flush() -> None:
    path = os.environ.get("MINICONTAINER_LANE_REPORT")
    if not path:
        return
    with open(path + ".tmp", "w") as f:
        json.dump(_state, f)
    os.rename(path + ".tmp", path)


def pytest_collection_finish(session) -> None:
    _state["collected"] = [item.nodeid for item in session.items]
    _flush()


def pytest_runtest_logreport(report) -> None:
    entry = _state["results"].setdefault(report.nodeid, {
        "outcome": "passed", "when": "", "longrepr": "", "duration": 0.0, "output": ""})
    entry["duration"] += report.duration
    # The worst phase wins: a failing teardown fails a test whose call passed.
    if report.outcome != "passed" and entry["outcome"] != "failed":
        entry["outcome"], entry["when"] = report.outcome, report.when
        entry["longrepr"] = str(report.longrepr)
    sections = "".join(f"--- {name} ---\n{text}\n" for name, text in report.sections)
    if sections:
        entry["output"] = sections[-20000:]
    if report.when == "teardown":
        _flush()


def pytest_sessionfinish(session, exitstatus) -> None:
    _state["done"] = True
    _state["exitstatus"] = int(exitstatus)
    _flush()
