"""Skeleton of level 11: the whole container in one script, to diff with minicontainer/runtime/launch.py.
Run as root from the repository:
    .venv/bin/python workshop/11-diff-launch/solution.py COMMAND [ARG...]
Every step is one of levels 01-10; the README maps each line to its place in the runtime.
"""
import os
import shutil
import stat
import sys
import tempfile

from minicontainer.kernel import caps, syscalls

ROOTFS = os.path.abspath("rootfs")
NAMESPACES = (syscalls.CLONE_NEWNS | syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWIPC
              | syscalls.CLONE_NEWNET | syscalls.CLONE_NEWCGROUP)


def child(layer: str, argv: list[str]) -> None:
    """PID 1 of the new pid namespace: everything between fork and execve. Never returns."""
    code = 125
    try:
        # TODO: the container's set-up, levels 03-10 in launch.py's order
        raise NotImplementedError("TODO: the container's set-up, levels 03-10 in launch.py's order")
    finally:
        os._exit(code)


def run(argv: list[str]) -> int:
    layer = tempfile.mkdtemp(prefix="workshop-11-", dir="/run")
    try:
        for d in ("upper", "work", "merged"):
            os.mkdir(os.path.join(layer, d))
        pid = syscalls.fork(syscalls.CLONE_NEWPID)                  # 06
        if pid == 0:
            child(layer, argv)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)
    finally:
        shutil.rmtree(layer)                                        # 05: the layer goes


if __name__ == "__main__":
    status = run(sys.argv[1:])
    sys.exit(128 - status if status < 0 else status)
