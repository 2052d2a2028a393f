"""`minicontainer pause ID` (as runc's): freeze every process of the container through its
cgroup v2's cgroup.freeze; `resume` thaws it. containerd (`ctr task pause`), Docker
(`docker pause`) and podman call it."""
from __future__ import annotations

from minicontainer.cli._common import parser, store
from minicontainer.runtime import lifecycle


def main(args: list[str], root: str | None) -> int:
    p = parser("pause", "ID", "Freeze every process of a running container.")
    p.add_argument("id")
    opts = p.parse_args(args)
    lifecycle.pause(store(root).lookup(opts.id, exact=True))
    return 0
