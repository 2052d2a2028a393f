"""`minicontainer delete [--force] ID` (OCI): remove a stopped container and all it holds.
--force of an id that does not exist succeeds, as runc's: engines call it to make sure."""
from __future__ import annotations

from minicontainer.cli._common import parser, store
from minicontainer.runtime import lifecycle


def main(args: list[str], root: str | None) -> int:
    p = parser("delete", "[--force] ID", "Delete a stopped container (--force: any).")
    p.add_argument("-f", "--force", action="store_true", help="kill it first if it runs")
    p.add_argument("id")
    opts = p.parse_args(args)
    containers = store(root)
    if opts.force and opts.id not in containers.ids():
        return 0
    lifecycle.delete(containers.lookup(opts.id, exact=True), opts.force)
    return 0
