"""`minicontainer gc`: remove what containers of dead runtimes left behind (state, overlay
layers, names), and the scratch directories of SIGKILLed `vm run`s (TMPDIR, else /tmp; see
vm/scratch.py). Every `run` (and `vm run`) does the same for itself first; this is the
explicit form."""
from __future__ import annotations

import sys

from minicontainer.cli.flags import Verb

VERB = Verb("gc", "", "Remove containers whose runtime is gone, and scratch directories of VM "
            "runs that were killed.")


def main(args: list[str], root: str | None) -> int:
    VERB.parse(args)
    from minicontainer.runtime import api

    for cid in api.collect_garbage(root):
        sys.stdout.write(f"removed {cid[:12]}\n")
    from minicontainer.vm import scratch  # VM runs' scratch dirs whose owner was SIGKILLed

    for path in scratch.reclaim():
        sys.stdout.write(f"removed {path}\n")
    return 0
