"""`minicontainer resume ID` (as runc's): thaw a container frozen by `pause`."""
from __future__ import annotations

from minicontainer.cli.flags import Verb
from minicontainer.runtime import api

VERB = Verb("resume", "ID", "Thaw a paused container.", positionals=["id"])


def main(args: list[str], root: str | None) -> int:
    opts = VERB.parse(args)
    api.resume(opts["id"], root)
    return 0
