"""`minicontainer features` (as runc's): what this runtime implements, as JSON."""
from __future__ import annotations

from minicontainer.cli._common import parser, print_json


def main(args: list[str], root: str | None) -> int:
    parser("features", "", "Print the OCI features this runtime implements.").parse_args(args)
    from minicontainer import oci

    print_json(oci.features())
    return 0
