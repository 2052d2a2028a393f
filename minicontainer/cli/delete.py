"""`minicontainer delete [--force] ID` (OCI): remove a stopped container and all it holds.
--force of an id that does not exist succeeds, as runc's: engines call it to make sure."""
from __future__ import annotations

from minicontainer.cli.flags import Verb
from minicontainer.runtime import api

VERB = Verb("delete", "[--force] ID", "Delete a stopped container (--force: any).",
            [("-f, --force", "kill it first if it runs")], ["id"])


def main(args: list[str], root: str | None) -> int:
    opts = VERB.parse(args)
    if opts["force"] and not api.exists(opts["id"], root):
        return 0
    api.delete(opts["id"], opts["force"], root, exact=True)
    return 0
