"""`minicontainer features` (as runc's): what this runtime implements, as JSON."""
from __future__ import annotations

from minicontainer.cli._common import print_json
from minicontainer.cli.flags import Verb

VERB = Verb("features", "", "Print the OCI features this runtime implements.")


def main(args: list[str], root: str | None) -> int:
    VERB.parse(args)
    from minicontainer import oci

    print_json(oci.features())
    return 0
