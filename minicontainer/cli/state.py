"""`minicontainer state ID` (OCI): the container's state, as the runtime spec defines it."""
from __future__ import annotations

from minicontainer.cli._common import print_json
from minicontainer.cli.flags import Verb

OCI_VERSION = "1.0.2"

VERB = Verb("state", "ID", "Print the OCI state of a container as JSON.", positionals=["id"])


def main(args: list[str], root: str | None) -> int:
    opts = VERB.parse(args)
    from minicontainer.runtime import api

    print_json(oci_state(api.lookup(opts["id"], root, exact=True)))
    return 0


def oci_state(container) -> dict:
    r = container.record
    status = container.status()
    state = {"ociVersion": OCI_VERSION, "id": container.id, "status": status,
             "pid": (r.get("pid") or 0) if status in ("created", "running", "paused") else 0,
             "bundle": r.get("bundle") or "", "rootfs": r.get("rootfs") or "",
             "created": r.get("created"), "owner": ""}
    if r.get("annotations"):
        state["annotations"] = r["annotations"]
    return state
