"""Skeleton of level 02: chroot. Run as root from the repository:
    .venv/bin/python workshop/02-chroot/solution.py [ROOTFS]
"""
import os
import sys

from minicontainer.kernel import syscalls

sys.stdout.reconfigure(line_buffering=True)
ROOTFS = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "rootfs")


def run_in(root: str, argv: list[str]) -> int:
    """Level 01's run(), with the child's / moved to `root` before it execs argv."""
    pid = syscalls.fork()
    if pid == 0:
        try:
            # TODO: chroot the child into root, then chdir to its new /
            raise NotImplementedError('TODO: chroot the child into root, then chdir to its new /')
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


# /bin/sh is now the rootfs's busybox, found inside the new root: the host's /etc is out of reach.
status = run_in(ROOTFS, ["/bin/sh", "-c",
                         "cat /etc/hostname; ls /etc/os-release; echo 'I am' $(id -u)"])
print(f"status {status}")
