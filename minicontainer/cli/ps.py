"""`minicontainer ps`: two commands under one name, told apart by a container id.

    ps [-a] [-q]                                    the containers of this state root, as
                                                    docker lists them
    ps [--format table|json] ID [-- PS_ARGS...]     runc's: the processes of one container
                                                    (its cgroup); json: an array of host pids
                                                    (containerd's `ctr task ps`, Docker's
                                                    `top`); table: the host's `ps PS_ARGS`
                                                    (default -ef) filtered to them
"""
from __future__ import annotations

import sys
import time

from minicontainer.cli.flags import Verb
from minicontainer.errors import ContainerError, UsageError

VERB = Verb("ps", "[-a] [-q] | ps [--format table|json] ID [-- PS_ARGS...]",
            "List running containers (-a: stopped ones too), or the processes of one\n"
            "(runc's ps: ID's cgroup, as host pids in JSON or as ps(1) PS_ARGS prints them).",
            [("-a, --all", "show stopped containers too"),
             ("-q, --quiet", "only the ids"),
             ("-f, --format table|json", "with ID: how to print its processes (default table)")],
            ["container?", "ps_args*"])


def main(args: list[str], root: str | None) -> int:
    opts = VERB.parse(args)
    if opts["format"] not in (None, "table", "json"):
        raise UsageError(f"ps: invalid --format {opts['format']!r} (table or json)")
    if opts["container"] is not None:
        if opts["all"] or opts["quiet"]:
            raise UsageError("ps: -a and -q list containers; they take no container id")
        return processes(opts["container"], root, opts["format"] or "table", opts["ps_args"])
    if opts["format"]:
        raise UsageError("ps: --format lists the processes of a container: give its id")
    from minicontainer.runtime import api

    rows = []
    for c in api.list(root):
        status = c.status()
        if status != "running" and not opts["all"]:
            continue
        if opts["quiet"]:
            sys.stdout.write(c.id[:12] + "\n")
            continue
        rows.append((c.id[:12], c.name or "", str(c.record.get("pid") or "") if status in
                     ("created", "running", "paused") else "", describe(c, status),
                     _ago(c.record.get("created")), " ".join(c.record.get("command") or [])))
    if not opts["quiet"]:
        header = ("CONTAINER ID", "NAME", "PID", "STATUS", "CREATED", "COMMAND")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
        for row in [header, *rows]:
            sys.stdout.write("  ".join(v.ljust(w) for v, w in zip(row, widths)) + "  " +
                             row[5][:60] + "\n")
    return 0


def processes(cid: str, root: str | None, fmt: str, ps_args: list[str]) -> int:
    """runc ps: the container's pids as JSON, or ps(1)'s lines for them under its header."""
    if fmt == "json" and ps_args:
        raise UsageError("ps: --format json takes no ps arguments")
    from minicontainer.runtime import api

    pids = api.processes(cid, root)
    if fmt == "json":
        sys.stdout.write("[" + ",".join(map(str, pids)) + "]\n")
        return 0
    import subprocess

    try:
        out = subprocess.run(["ps", *(ps_args or ["-ef"])], capture_output=True, text=True)
    except FileNotFoundError:
        raise ContainerError("ps: the ps(1) command is not installed on this host") from None
    if out.returncode != 0:
        raise ContainerError(f"ps {' '.join(ps_args)} failed: {out.stderr.strip()}")
    lines = out.stdout.splitlines()
    header = lines[0].split() if lines else []
    if "PID" not in header:
        raise ContainerError(f"ps {' '.join(ps_args)}: no PID column in its output")
    column = header.index("PID")
    wanted = set(map(str, pids))
    sys.stdout.write(lines[0] + "\n")
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > column and fields[column] in wanted:
            sys.stdout.write(line + "\n")
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
