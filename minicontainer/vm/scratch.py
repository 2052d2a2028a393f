"""Scratch directories of VM runs, named after their owner so that leftovers can be reclaimed.

    make(tmpdir=None) -> path       TMPDIR/minicontainer-vm-<pid>-<start time>-<random>
    reclaim(tmpdir=None) -> [paths] remove those whose owner is no longer alive

`vm run` removes its scratch directory itself on success, failure and Ctrl-C. Only a SIGKILL
(or a crash of the interpreter) can leave one: QEMU dies with the CLI (PR_SET_PDEATHSIG), but
nothing runs to remove the directory. The owner's pid and start time (field 22 of
/proc/PID/stat, clock ticks since boot) name one process for its whole life, so a directory
whose owner pid is gone, or now belongs to another process, is garbage. `minicontainer gc`
and every `vm run` (before it boots) call reclaim() on the temp directory they would use
(TMPDIR, else /tmp). Directories of the older unnamed form (minicontainer-vm-XXXXXXXX) cannot
be attributed and are left alone.

Imports only os and tempfile: gc pays nothing for the VM code.
"""
from __future__ import annotations

import os
import re
import tempfile

from minicontainer.runtime.state import process_start_time

PREFIX = "minicontainer-vm-"
_NAME = re.compile(re.escape(PREFIX) + r"(\d+)-(\d+)-[^-]+$")


def make(tmpdir: str | None = None) -> str:
    pid = os.getpid()
    return tempfile.mkdtemp(prefix=f"{PREFIX}{pid}-{process_start_time(pid)}-", dir=tmpdir)


def reclaim(tmpdir: str | None = None) -> list[str]:
    """Remove the scratch directories in TMPDIR whose owner is dead; return their paths."""
    import shutil

    tmpdir = tmpdir or tempfile.gettempdir()
    removed = []
    try:
        names = os.listdir(tmpdir)
    except OSError:
        return removed
    for name in names:
        m = _NAME.match(name)
        if not m or process_start_time(int(m.group(1))) == m.group(2):
            continue
        path = os.path.join(tmpdir, name)
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path):
            removed.append(path)
    return removed
