"""`minicontainer pause ID` (as runc's): freeze every process of the container through its
cgroup v2's cgroup.freeze; `resume` thaws it. containerd (`ctr task pause`), Docker
(`docker pause`) and podman call it."""
from __future__ import annotations

from minicontainer.cli.flags import Verb
from minicontainer.runtime import api

VERB = Verb("pause", "ID", "Freeze every process of a running container.", positionals=["id"])


def main(args: list[str], root: str | None) -> int:
    opts = VERB.parse(args)
    api.pause(opts["id"], root)
    return 0
