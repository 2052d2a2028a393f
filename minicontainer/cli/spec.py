"""`minicontainer spec [--bundle DIR]` (as runc's): write a default config.json to start from."""
from __future__ import annotations

import json
import os

from minicontainer.cli.flags import Verb
from minicontainer.errors import ContainerError

VERB = Verb("spec", "[--bundle DIR]", "Write a default config.json into the bundle.",
            [("-b, --bundle DIR", "the bundle directory (default: .)"),
             ("--rootless", "refused: user namespaces are not implemented yet")])


def main(args: list[str], root: str | None) -> int:
    opts = VERB.parse(args)
    if opts["rootless"]:
        raise ContainerError("--rootless: user namespaces are not implemented yet")
    from minicontainer import oci

    path = os.path.join(opts["bundle"] or ".", "config.json")
    if os.path.exists(path):
        raise ContainerError(f"File {path} exists. Remove it first")
    with open(path, "w") as f:
        json.dump(oci.default_config(), f, indent="\t")
    return 0
