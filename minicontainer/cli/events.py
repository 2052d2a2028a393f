"""`minicontainer events [--stats] [--interval DURATION] ID` (as runc's): the container's
resource usage as runc's JSON events, one object a line.

    --stats          one {"type": "stats", "id": ID, "data": {...}} and exit
    otherwise        a stats event every --interval (Go's duration syntax, default 5s) and an
                     {"type": "oom"} event each time the kernel OOM-kills in the container,
                     until the container stops

The data is what the container's cgroup v2 files hold, under runc's names (types.Stats):
cpu from cpu.stat (always there), memory from memory.current/peak/max/stat and pids from
pids.current/max when those controllers are enabled (else the processes in cgroup.procs).
A field this host does not account is absent, not zero.
"""
from __future__ import annotations

import json
import re
import sys
import time

from minicontainer.cli._common import store
from minicontainer.cli.flags import Verb
from minicontainer.errors import ContainerError, UsageError
from minicontainer.runtime.cgroups import _keyed, _single

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


VERB = Verb("events", "[--stats] [--interval DURATION] ID",
            "Print the container's resource usage (and OOM kills) as JSON events.",
            [("--stats", "print the stats once and exit"),
             ("--interval DURATION", "between stats events (default 5s)")],
            ["id"])


def main(args: list[str], root: str | None) -> int:
    opts = VERB.parse(args)
    interval = parse_duration(opts["interval"] or "5s")
    container = store(root).lookup(opts["id"], exact=True)
    from minicontainer.runtime import lifecycle

    if container.status() not in ("created", "running", "paused"):
        raise ContainerError(f'container "{container.id}" is not running')
    path = lifecycle.cgroup_path(container)
    if not path:
        raise ContainerError(f'container "{container.id}" has no cgroup v2: no stats to show')
    if opts["stats"]:
        _emit("stats", container.id, stats(path))
        return 0
    ooms = _oom_kills(path)
    next_stats = time.monotonic()
    while container.status() in ("created", "running", "paused"):
        now = time.monotonic()
        if now >= next_stats:
            _emit("stats", container.id, stats(path))
            next_stats = now + interval
        kills = _oom_kills(path)
        for _ in range(kills - ooms):
            _emit("oom", container.id, None)
        ooms = kills
        time.sleep(min(0.2, max(0.0, next_stats - time.monotonic())))
    return 0


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration for the units runc's users give: '5s', '100ms', '1m30s'."""
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise UsageError(f"events: invalid --interval {text!r}: want a duration like 5s or 500ms")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise UsageError(f"events: --interval {text!r} must be greater than 0")
    return seconds


def stats(path: str) -> dict:
    """runc's types.Stats, from what the cgroup's files hold."""
    data: dict = {}
    cpu = _keyed(f"{path}/cpu.stat")
    if "usage_usec" in cpu:
        data["cpu"] = {"usage": {"total": cpu["usage_usec"] * 1000,
                                 "kernel": cpu.get("system_usec", 0) * 1000,
                                 "user": cpu.get("user_usec", 0) * 1000}}
        if "nr_periods" in cpu:
            data["cpu"]["throttling"] = {"periods": cpu["nr_periods"],
                                         "throttledPeriods": cpu["nr_throttled"],
                                         "throttledTime": cpu.get("throttled_usec", 0) * 1000}
    current = _single(f"{path}/memory.current")
    if current is not None:
        usage = {"usage": current, "limit": _single(f"{path}/memory.max") or (1 << 64) - 1,
                 "failcnt": _keyed(f"{path}/memory.events").get("max", 0)}
        peak = _single(f"{path}/memory.peak")
        if peak is not None:
            usage["max"] = peak
        data["memory"] = {"usage": usage, "raw": _keyed(f"{path}/memory.stat")}
    pids = _single(f"{path}/pids.current")
    if pids is None:
        from minicontainer.runtime.lifecycle import _cgroup_pids

        pids = len(_cgroup_pids(path))
    data["pids"] = {"current": pids}
    limit = _single(f"{path}/pids.max")
    if limit is not None:
        data["pids"]["limit"] = limit
    return data


def _oom_kills(path: str) -> int:
    return _keyed(f"{path}/memory.events").get("oom_kill", 0)


def _emit(kind: str, cid: str, data) -> None:
    event = {"type": kind, "id": cid}
    if data is not None:
        event["data"] = data
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()

