"""`minicontainer kill [-s SIG] [--all] CONTAINER [SIGNAL]`: runc's form and docker's.

runc: `kill ID [SIGNAL]` (default SIGTERM), `--all` signals every process of the container.
docker: `kill -s SIG NAME...`. The default is runc's, SIGTERM (docker's is SIGKILL: -s KILL).
"""
from __future__ import annotations

from minicontainer.cli.flags import Verb
from minicontainer.errors import UsageError
from minicontainer.runtime import api

VERB = Verb("kill", "[-s SIGNAL] [--all] CONTAINER [SIGNAL]",
            "Send a signal (default SIGTERM) to a container's first process.",
            [("-s, --signal SIGNAL", "signal name or number"),
             ("-a, --all", "send it to every process of the container (its cgroup)")],
            ["container", "sig?"])


def main(args: list[str], root: str | None) -> int:
    opts = VERB.parse(args)
    if opts["signal"] and opts["sig"]:
        raise UsageError("kill: give the signal once: -s SIG or the argument after the id")
    sig = api.signal_number(opts["signal"] or opts["sig"] or "TERM")
    api.kill(opts["container"], sig, opts["all"], root)
    return 0
