"""`minicontainer start ID` (OCI): run the user's program in a created container."""
from __future__ import annotations

from minicontainer.cli._common import parser, store
from minicontainer.runtime import lifecycle


def main(args: list[str], root: str | None) -> int:
    p = parser("start", "ID", "Start a created container (OCI).")
    p.add_argument("id")
    opts = p.parse_args(args)
    lifecycle.start(store(root).lookup(opts.id, exact=True))
    return 0
