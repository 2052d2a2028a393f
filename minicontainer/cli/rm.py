"""`minicontainer rm [-f] CONTAINER...`: remove stopped containers (-f: kill them first)."""
from __future__ import annotations

import sys

from minicontainer.cli._common import parser, store
from minicontainer.runtime import lifecycle


def main(args: list[str], root: str | None) -> int:
    p = parser("rm", "[-f] CONTAINER...", "Remove containers.")
    p.add_argument("-f", "--force", action="store_true", help="kill a running one first")
    p.add_argument("containers", nargs="+")
    opts = p.parse_args(args)
    s = store(root)
    for ref in opts.containers:
        lifecycle.delete(s.lookup(ref), opts.force)
        sys.stdout.write(ref + "\n")
    return 0
