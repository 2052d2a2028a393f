"""`minicontainer resume ID` (as runc's): thaw a container frozen by `pause`."""
from __future__ import annotations

from minicontainer.cli._common import parser, store
from minicontainer.runtime import lifecycle


def main(args: list[str], root: str | None) -> int:
    p = parser("resume", "ID", "Thaw a paused container.")
    p.add_argument("id")
    opts = p.parse_args(args)
    lifecycle.resume(store(root).lookup(opts.id, exact=True))
    return 0
