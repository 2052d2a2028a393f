"""`minicontainer stop [-t SECS] CONTAINER...`: SIGTERM, then SIGKILL after SECS (10)."""
from __future__ import annotations

import sys

from minicontainer.cli.flags import Verb
from minicontainer.errors import UsageError
from minicontainer.runtime import api

VERB = Verb("stop", "[-t SECS] CONTAINER...", "Stop containers: SIGTERM, then SIGKILL.",
            [("-t, --time SECS", "seconds to wait after SIGTERM before SIGKILL (default 10)")],
            ["containers+"], go_style=False)


def main(args: list[str], root: str | None) -> int:
    opts = VERB.parse(args)
    try:
        wait = float(opts["time"] or 10)
    except ValueError:
        raise UsageError(f"stop: invalid --time {opts['time']!r}: want a number of seconds") \
            from None
    for ref in opts["containers"]:
        api.stop(ref, wait, root)
        sys.stdout.write(ref + "\n")
    return 0
