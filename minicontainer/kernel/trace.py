"""The --trace switch: narrate every syscall and cgroupfs write of a launch on stderr.

Off unless a front end turns it on (the CLI's `--trace`, or MINICONTAINER_TRACE=1 in the
environment, which the CLI reads once at start). A switch set by a call, not read from the
environment at import time, so what turns it on is visible where it happens, and a test or
a Python caller can turn it on and off. Processes the runtime forks (the `run -d` shim, the
container's first process) inherit it with the rest of their memory.
"""
from __future__ import annotations

import os
import sys

enabled = False


def set_enabled(on: bool) -> None:
    global enabled
    enabled = bool(on)


def line(text: str) -> None:
    """One line of narration, tagged with the pid (parent and child both narrate)."""
    if enabled:
        sys.stderr.write(f"[trace {os.getpid()}] {text}\n")
