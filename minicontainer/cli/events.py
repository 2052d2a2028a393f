"""`minicontainer events [--stats] [--interval DURATION] ID` (as runc's): the container's
resource usage as runc's JSON events, one object a line.

    --stats          one {"type": "stats", "id": ID, "data": {...}} and exit
    otherwise        a stats event every --interval (Go's duration syntax, default 5s) and an
                     {"type": "oom"} event each time the kernel OOM-kills in the container,
                     until the container stops

The data is what the container's cgroup v2 files hold, under runc's names (types.Stats:
runtime/lifecycle.stats). A field this host does not account is absent, not zero.
"""
from __future__ import annotations

import json
import re
import sys

from minicontainer.cli.flags import Verb
from minicontainer.errors import UsageError

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
    from minicontainer.runtime import api

    if opts["stats"]:
        _emit("stats", opts["id"], api.stats(opts["id"], root))
        return 0
    for kind, data in api.events(opts["id"], interval, root):
        _emit(kind, opts["id"], data)
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


def _emit(kind: str, cid: str, data) -> None:
    event = {"type": kind, "id": cid}
    if data is not None:
        event["data"] = data
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()

