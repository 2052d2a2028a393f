"""`minicontainer inspect CONTAINER...`: everything recorded about containers, as JSON."""
from __future__ import annotations

from minicontainer.cli._common import print_json
from minicontainer.cli.flags import Verb

VERB = Verb("inspect", "CONTAINER...", "Print what is known about containers as JSON.",
            positionals=["containers+"], go_style=False)


def main(args: list[str], root: str | None) -> int:
    opts = VERB.parse(args)
    from minicontainer.runtime import api

    print_json([api.inspect(ref, root) for ref in opts["containers"]])
    return 0
