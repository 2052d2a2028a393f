"""The docker-style flag parser shared by `run`, `vm run` and `compare`, so that a flag both
modes have is parsed the same way. No argparse: it costs ~8 ms to import on `run`'s path.

A verb describes its flags as {flag: (field, takes a value)}; parsing stops at the first
argument that is not an option (docker's rule: what follows ROOTFS is the command).
"""
from __future__ import annotations

import os

from minicontainer.errors import UsageError


def parse(args: list[str], flags: dict, repeatable=()) -> tuple[dict, list[str]]:
    """Split ARGS into {field: value} and the positionals: bundled short flags (-it),
    --flag=value, a short flag's value attached (-eKEY=VALUE), `--` ends the options.
    Fields in `repeatable` collect every value in a list."""
    opts: dict = {k: [] for k in repeatable}
    args = list(args)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name not in flags and not arg.startswith("--") and len(arg) > 2:
            if flags.get(arg[:2], (None, False))[1]:
                name, eq, inline = arg[:2], "=", arg[2:]
            else:
                args[i:i + 1] = [f"-{c}" for c in arg[1:]]
                continue
        if name not in flags:
            raise UsageError(f"unknown flag: {name}")
        field, takes_value = flags[name]
        if takes_value:
            if eq:
                value = inline
            elif i + 1 < len(args):
                i += 1
                value = args[i]
            else:
                raise UsageError(f"flag needs an argument: {name}")
        elif eq:
            raise UsageError(f"flag {name} takes no value")
        else:
            value = True
        if field in repeatable:
            opts[field].append(value)
        else:
            opts[field] = value
        i += 1
    return opts, args[i:]


def env_of(items: list[str]) -> dict:
    """-e KEY=VALUE sets, -e KEY takes the host's value (skipped when the host has none).
    Keys are checked where every front end's are (runtime/launch.check_env)."""
    env = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key:  # `-e =x` or `-e ""`: nothing to name
            raise UsageError(f"invalid environment variable: {item!r}")
        if eq:
            env[key] = value
        elif key in os.environ:
            env[key] = os.environ[key]
    return env
