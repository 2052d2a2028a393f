"""`minicontainer checkpoint` and `restore` (runc's CRIU verbs): refused with one line.
minicontainer has no CRIU support; saying so is better than a half-saved process."""
from __future__ import annotations

from minicontainer.errors import UsageError


def main(args: list[str], root: str | None, verb: str = "checkpoint") -> int:
    raise UsageError(f"{verb} is not supported: minicontainer has no CRIU support "
                     "(features: org.opencontainers.runc.checkpoint.enabled is false)")
