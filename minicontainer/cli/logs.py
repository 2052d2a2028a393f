"""`minicontainer logs [-f] NAME`: what a detached container wrote to its stdout and stderr."""
from __future__ import annotations

import os
import sys
import time

from minicontainer.cli._common import store
from minicontainer.cli.flags import Verb
from minicontainer.errors import ContainerError

VERB = Verb("logs", "[-f] CONTAINER", "Print a detached container's output (run -d).",
            [("-f, --follow", "keep printing until it stops")], ["container"], go_style=False)


def main(args: list[str], root: str | None) -> int:
    opts = VERB.parse(args)
    container = store(root).lookup(opts["container"])
    path = container.record.get("log")
    if not path:
        raise ContainerError(f'container "{opts["container"]}" keeps no log: only containers '
                             "started with run -d do (the others write to their caller)")
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
            if not opts["follow"] or not _running(container):
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


def _running(container) -> bool:
    return os.path.isdir(container.dir) and container.status() in ("created", "running", "paused")
