"""`minicontainer restore`: refused, as `checkpoint` is (no CRIU)."""
from __future__ import annotations

from minicontainer.cli import checkpoint


def main(args: list[str], root: str | None) -> int:
    return checkpoint.main(args, root, verb="restore")
