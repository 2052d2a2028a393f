"""`minicontainer rm [-f] CONTAINER...`: remove stopped containers (-f: kill them first)."""
from __future__ import annotations

import sys

from minicontainer.cli._common import store
from minicontainer.cli.flags import Verb
from minicontainer.runtime import lifecycle

VERB = Verb("rm", "[-f] CONTAINER...", "Remove containers.",
            [("-f, --force", "kill a running one first")], ["containers+"], go_style=False)


def main(args: list[str], root: str | None) -> int:
    opts = VERB.parse(args)
    s = store(root)
    for ref in opts["containers"]:
        lifecycle.delete(s.lookup(ref), opts["force"])
        sys.stdout.write(ref + "\n")
    return 0
