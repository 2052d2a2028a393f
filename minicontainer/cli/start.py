"""`minicontainer start ID` (OCI): run the user's program in a created container."""
from __future__ import annotations

from minicontainer.cli._common import store
from minicontainer.cli.flags import Verb
from minicontainer.runtime import lifecycle

VERB = Verb("start", "ID", "Start a created container (OCI).", positionals=["id"])


def main(args: list[str], root: str | None) -> int:
    opts = VERB.parse(args)
    lifecycle.start(store(root).lookup(opts["id"], exact=True))
    return 0
