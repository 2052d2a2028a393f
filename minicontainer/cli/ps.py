"""`minicontainer ps [-a] [-q]`: the containers of this state root, as docker lists them."""
from __future__ import annotations

import sys
import time

from minicontainer.cli._common import parser, store


def main(args: list[str], root: str | None) -> int:
    p = parser("ps", "[-a] [-q]", "List running containers (-a: stopped ones too).")
    p.add_argument("-a", "--all", action="store_true", help="show stopped containers too")
    p.add_argument("-q", "--quiet", action="store_true", help="only the ids")
    opts = p.parse_args(args)
    rows = []
    for c in store(root).containers():
        status = c.status()
        if status != "running" and not opts.all:
            continue
        if opts.quiet:
            sys.stdout.write(c.id[:12] + "\n")
            continue
        rows.append((c.id[:12], c.name or "", str(c.record.get("pid") or "") if status in
                     ("created", "running") else "", describe(c, status),
                     _ago(c.record.get("created")), " ".join(c.record.get("command") or [])))
    if not opts.quiet:
        header = ("CONTAINER ID", "NAME", "PID", "STATUS", "CREATED", "COMMAND")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
        for row in [header, *rows]:
            sys.stdout.write("  ".join(v.ljust(w) for v, w in zip(row, widths)) + "  " +
                             row[5][:60] + "\n")
    return 0


def describe(container, status: str) -> str:
    """running, created, or exited (CODE) with the code when one was collected."""
    if status != "stopped":
        return status
    code = container.record.get("exit_code")
    return "exited" if code is None else f"exited ({code})"


def _ago(stamp: str | None) -> str:
    if not stamp:
        return ""
    try:
        then = time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    except ValueError:
        return stamp
    seconds = int(time.time() - then)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return f"{seconds} seconds ago"
