"""`minicontainer stop [-t SECS] CONTAINER...`: SIGTERM, then SIGKILL after SECS (10)."""
from __future__ import annotations

import sys

from minicontainer.cli._common import parser, store
from minicontainer.runtime import lifecycle


def main(args: list[str], root: str | None) -> int:
    p = parser("stop", "[-t SECS] CONTAINER...", "Stop containers: SIGTERM, then SIGKILL.")
    p.add_argument("-t", "--time", type=float, default=10.0,
                   help="seconds to wait after SIGTERM before SIGKILL (default 10)")
    p.add_argument("containers", nargs="+")
    opts = p.parse_args(args)
    s = store(root)
    for ref in opts.containers:
        lifecycle.stop(s.lookup(ref), opts.time)
        sys.stdout.write(ref + "\n")
    return 0
