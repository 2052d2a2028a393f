"""`minicontainer spec [--bundle DIR]` (as runc's): write a default config.json to start from."""
from __future__ import annotations

import json
import os

from minicontainer.cli._common import parser
from minicontainer.errors import ContainerError


def main(args: list[str], root: str | None) -> int:
    p = parser("spec", "[--bundle DIR]", "Write a default config.json into the bundle.")
    p.add_argument("-b", "--bundle", default=".")
    p.add_argument("--rootless", action="store_true")
    opts = p.parse_args(args)
    if opts.rootless:
        raise ContainerError("--rootless: user namespaces are not implemented yet")
    from minicontainer import oci

    path = os.path.join(opts.bundle, "config.json")
    if os.path.exists(path):
        raise ContainerError(f"File {path} exists. Remove it first")
    with open(path, "w") as f:
        json.dump(oci.default_config(), f, indent="\t")
    return 0
