"""`minicontainer kill [-s SIG] [--all] CONTAINER [SIGNAL]`: runc's form and docker's.

runc: `kill ID [SIGNAL]` (default SIGTERM), `--all` signals every process of the container.
docker: `kill -s SIG NAME...`. The default is runc's, SIGTERM (docker's is SIGKILL: -s KILL).
"""
from __future__ import annotations

from minicontainer.cli._common import parser, store
from minicontainer.errors import UsageError
from minicontainer.runtime import lifecycle


def main(args: list[str], root: str | None) -> int:
    p = parser("kill", "[-s SIGNAL] [--all] CONTAINER [SIGNAL]",
               "Send a signal (default SIGTERM) to a container's first process.")
    p.add_argument("-s", "--signal", help="signal name or number")
    p.add_argument("-a", "--all", action="store_true",
                   help="send it to every process of the container (its cgroup)")
    p.add_argument("container")
    p.add_argument("sig", nargs="?", metavar="SIGNAL")
    opts = p.parse_args(args)
    if opts.signal and opts.sig:
        raise UsageError("kill: give the signal once: -s SIG or the argument after the id")
    sig = lifecycle.parse_signal(opts.signal or opts.sig or "TERM")
    lifecycle.kill(store(root).lookup(opts.container), sig, opts.all)
    return 0
