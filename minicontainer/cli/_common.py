"""What the lifecycle and OCI verbs share besides their flags (cli/flags.py): JSON output and
the fds a process keeps. Not imported by `run`."""
from __future__ import annotations

import os
import sys

from minicontainer.errors import UsageError


def print_json(value) -> None:
    """As runc prints state: indented by two (the tiny encoder: json costs ~10 ms)."""
    from minicontainer.runtime.state import to_json

    sys.stdout.write(to_json(value, indent=2) + "\n")


def kept_fds(preserve: int, env: dict | None = None) -> int:
    """How many fds from 3 on the container's process keeps, as runc counts them: systemd's
    socket-activation fds first (LISTEN_FDS, when LISTEN_PID is us; with `env`, for create,
    whose process then gets LISTEN_FDS=N and LISTEN_PID=1 as runc sets them), then
    --preserve-fds N more. Every one of them must be open: any other fd is closed."""
    if preserve < 0:
        raise UsageError(f"--preserve-fds {preserve}: must be 0 or more")
    listen = 0
    if env is not None and os.environ.get("LISTEN_PID") == str(os.getpid()):
        text = os.environ.get("LISTEN_FDS", "")
        listen = int(text) if text.isdigit() else 0
        if listen:
            env["LISTEN_FDS"], env["LISTEN_PID"] = str(listen), "1"
    for fd in range(3, 3 + listen + preserve):
        try:
            os.fstat(fd)
        except OSError:
            what = "LISTEN_FDS" if fd < 3 + listen else f"--preserve-fds {preserve}"
            raise UsageError(f"{what}: fd {fd} is not open") from None
    return listen + preserve
