"""`minicontainer delete [--force] ID` (OCI): remove a stopped container and all it holds.
--force of an id that does not exist succeeds, as runc's: engines call it to make sure."""
from __future__ import annotations

from minicontainer.cli._common import store
from minicontainer.cli.flags import Verb

VERB = Verb("delete", "[--force] ID", "Delete a stopped container (--force: any).",
            [("-f, --force", "kill it first if it runs")], ["id"])


def main(args: list[str], root: str | None) -> int:
    opts = VERB.parse(args)
    containers = store(root)
    if opts["force"] and opts["id"] not in containers.ids():
        return 0
    from minicontainer.runtime import lifecycle

    lifecycle.delete(containers.lookup(opts["id"], exact=True), opts["force"])
    return 0
