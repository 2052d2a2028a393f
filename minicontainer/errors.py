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


# The Python API's own (minicontainer.run, Container): never raised on the CLI's path.

class ExitStatusError(ContainerError):
    """run(check=True) or exec(check=True): the command exited non-zero (subprocess's
    CalledProcessError). Carries returncode, cmd, stdout and stderr."""

    def __init__(self, returncode: int, cmd, stdout=None, stderr=None):
        super().__init__(f"command {list(cmd)!r} exited with status {returncode}")
        self.returncode, self.cmd, self.stdout, self.stderr = returncode, cmd, stdout, stderr

    @property
    def exit_code(self) -> int:
        return self.returncode


class Timeout(ContainerError):
    """A wait ran out of time; the message names what was waited for. From run(timeout=...)
    it carries what the command wrote until then (stdout, stderr), as subprocess does."""

    def __init__(self, message: str, timeout: float, stdout=None, stderr=None):
        super().__init__(message)
        self.timeout, self.stdout, self.stderr = timeout, stdout, stderr
