"""One exception type per kind of failure, and the one place mapping them to exit codes.

The codes are docker's: 125 the runtime failed, 126 the command could not be executed,
127 the command was not found; anything else is the container's own status (128+N when the
container was killed by signal N).
"""
from __future__ import annotations


class ContainerError(Exception):
    """A failure of the runtime itself, before or around the container (exit 125)."""

    exit_code = 125


class UsageError(ContainerError):
    """Bad flags or arguments (exit 125, as docker does for flag errors)."""


class CannotExecute(ContainerError):
    """The command exists but cannot be executed: permission, bad format (exit 126)."""

    exit_code = 126


class CommandNotFound(ContainerError):
    """The command is not in the container (exit 127)."""

    exit_code = 127


# The child reports its failure to the parent by kind name over a pipe.
BY_KIND = {cls.__name__: cls for cls in (ContainerError, UsageError, CannotExecute, CommandNotFound)}
