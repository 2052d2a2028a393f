"""Level 04: pivot_root. Run as root from the repository:
    .venv/bin/python workshop/04-pivot-root/solution.py [ROOTFS]
"""
import os
import sys

from minicontainer.kernel import syscalls

sys.stdout.reconfigure(line_buffering=True)
ROOTFS = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "rootfs")


def enter(root: str) -> None:
    """Make `root` the root mount of a new, private mount namespace; the host's / is gone."""
    syscalls.unshare(syscalls.CLONE_NEWNS)
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
    # >>> exercise: bind root onto itself (pivot_root wants a mount point), pivot_root into it, detach the old root
    syscalls.mount(root, root, None, syscalls.MS_BIND | syscalls.MS_REC)
    os.chdir(root)
    # pivot_root(".", "."): runc's trick, no put_old directory needed. The old root ends up
    # stacked on top of the new one at "/"; detaching it uncovers the new root.
    syscalls.pivot_root(".", ".")
    syscalls.umount2(".", syscalls.MNT_DETACH)
    # <<< exercise
    os.chdir("/")
    syscalls.mount("proc", "/proc", "proc", syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)


def run_in(root: str, argv: list[str]) -> int:
    pid = syscalls.fork()
    if pid == 0:
        try:
            enter(root)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


status = run_in(ROOTFS, ["/bin/sh", "-c", "echo 'every mount point in here:'; cut -d' ' -f2 /proc/mounts"])
print(f"status {status}")
