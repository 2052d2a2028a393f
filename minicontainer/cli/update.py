"""`minicontainer update [FLAGS] ID` and `update -r FILE ID` (as runc's): change the resource
limits of a live container. Docker (`docker update`) and containerd send `-r -`, the OCI
linux.resources object on stdin.

The flags are turned into that same object, and both go through the translation `create`
uses (oci.resources) and the cgroup v2 writes `run` uses (runtime/cgroups.py): a limit the
host cannot enforce is refused with one line, never ignored. Removing a limit (0 or -1) is
refused too: this runtime keeps no record of the value to restore.
"""
from __future__ import annotations

import sys

from minicontainer.cli.flags import Verb
from minicontainer.errors import UsageError

# runc's flag -> (its place in linux.resources, how its value is read)
FLAGS = {
    "--memory": (("memory", "limit"), "size"),
    "--memory-reservation": (("memory", "reservation"), "size"),
    "--memory-swap": (("memory", "swap"), "size"),
    "--kernel-memory": (("memory", "kernel"), "size"),
    "--kernel-memory-tcp": (("memory", "kernelTCP"), "size"),
    "--cpu-period": (("cpu", "period"), int),
    "--cpu-quota": (("cpu", "quota"), int),
    "--cpu-share": (("cpu", "shares"), int),
    "--cpu-rt-period": (("cpu", "realtimePeriod"), int),
    "--cpu-rt-runtime": (("cpu", "realtimeRuntime"), int),
    "--cpuset-cpus": (("cpu", "cpus"), str),
    "--cpuset-mems": (("cpu", "mems"), str),
    "--pids-limit": (("pids", "limit"), int),
    "--blkio-weight": (("blockIO", "weight"), int),
    "--l3-cache-schema": (("intelRdt", "l3CacheSchema"), str),
    "--mem-bw-schema": (("intelRdt", "memBwSchema"), str),
}


VERB = Verb("update", "[-r FILE|-] [--memory N] [--cpu-quota N] ... ID",
            "Change the resource limits of a running container.",
            [("-r, --resources FILE", "the new linux.resources as JSON (- for stdin)"),
             *((f"{flag} VALUE", "linux.resources." + ".".join(place))
               for flag, (place, _) in FLAGS.items())],
            ["id"])


def main(args: list[str], root: str | None) -> int:
    opts = VERB.parse(args)
    resources = parse(opts)
    from minicontainer import oci

    try:
        limits = oci.resources(resources)
    except oci.Refused as e:
        raise UsageError("update: " + str(e).removeprefix("config.json: ")) from None
    from minicontainer.runtime import api

    api.update(opts["id"], limits, root)  # None: nothing set, runc writes the same values back
    return 0


def parse(opts: dict) -> dict:
    """The linux.resources object the command line asks for: -r's JSON, the flags over it."""
    resources: dict = {}
    if opts["resources"]:
        import json

        try:
            if opts["resources"] == "-":
                resources = json.load(sys.stdin)
            else:
                with open(opts["resources"]) as f:
                    resources = json.load(f)
        except (OSError, ValueError) as e:
            raise UsageError(f"update -r {opts['resources']}: {e}") from None
        if not isinstance(resources, dict):
            raise UsageError(f"update -r {opts['resources']}: not a JSON object")
    for flag, ((section, key), kind) in FLAGS.items():
        text = opts[flag[2:].replace("-", "_")]
        if text is None:
            continue
        resources.setdefault(section, {})[key] = _value(flag, text, kind)
    if resources.get("devices"):
        raise UsageError("update: linux.resources.devices cannot be changed in a live "
                         "container (not supported)")
    for section, values in resources.items():
        for key, value in (values.items() if isinstance(values, dict) else ()):
            if isinstance(value, int) and not isinstance(value, bool) and value <= 0 and \
                    key in ("limit", "reservation", "swap", "quota", "shares", "weight") and \
                    (key, value) != ("swap", -1):  # -1: unlimited swap, a setting of its own
                raise UsageError(f"update: linux.resources.{section}.{key}={value}: removing "
                                 "a limit is not supported (give a new positive value)")
    return resources


def _value(flag: str, text: str, kind):
    if kind == "size":
        if text.strip() == "-1":
            return -1
        from minicontainer.cli.resources import parse_size

        return parse_size(flag, text)
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise UsageError(f"invalid value {text!r} for {flag}: want a whole number") from None
    return text
