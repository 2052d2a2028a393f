"""`minicontainer rm [-f] CONTAINER...`: remove stopped containers (-f: kill them first)."""
from __future__ import annotations

import sys

from minicontainer.cli.flags import Verb
from minicontainer.runtime import api

VERB = Verb("rm", "[-f] CONTAINER...", "Remove containers.",
            [("-f, --force", "kill a running one first")], ["containers+"], go_style=False)


def main(args: list[str], root: str | None) -> int:
    opts = VERB.parse(args)
    for ref in opts["containers"]:
        api.delete(ref, opts["force"], root)
        sys.stdout.write(ref + "\n")
    return 0
