"""`minicontainer start ID` (OCI): run the user's program in a created container."""
from __future__ import annotations

from minicontainer.cli.flags import Verb
from minicontainer.runtime import api

VERB = Verb("start", "ID", "Start a created container (OCI).", positionals=["id"])


def main(args: list[str], root: str | None) -> int:
    opts = VERB.parse(args)
    api.start(opts["id"], root)
    return 0
