"""`minicontainer logs [-f] NAME`: what a detached container wrote to its stdout and stderr."""
from __future__ import annotations

import os
import sys
import time

from minicontainer.cli.flags import Verb
from minicontainer.errors import ContainerError

VERB = Verb("logs", "[-f] CONTAINER", "Print a detached container's output (run -d).",
            [("-f, --follow", "keep printing until it stops")], ["container"], go_style=False)


def main(args: list[str], root: str | None) -> int:
    opts = VERB.parse(args)
    from minicontainer.runtime import api

    path = api.log_path(opts["container"], root)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    out = sys.stdout.buffer
    try:
        while True:
            data = os.read(fd, 65536)
            if data:
                out.write(data)
                continue
            out.flush()
            if not opts["follow"] or not _running(api, opts["container"], root):
                # one last read: what it wrote just before it stopped
                rest = os.read(fd, 1 << 20)
                out.write(rest)
                if not rest:
                    break
                continue
            time.sleep(0.1)
    except BrokenPipeError:
        pass
    finally:
        os.close(fd)
    out.flush()
    return 0


def _running(api, ref: str, root: str | None) -> bool:
    try:
        return api.state(ref, root)["status"] in ("created", "running", "paused")
    except ContainerError:  # removed meanwhile
        return False
