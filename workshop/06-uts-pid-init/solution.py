"""Level 06: uts and pid namespaces, and an init that reaps. Run as root from the repository:
    .venv/bin/python workshop/06-uts-pid-init/solution.py [ROOTFS]
"""
import os
import stat
import sys

from minicontainer.kernel import syscalls

sys.stdout.reconfigure(line_buffering=True)
ROOTFS = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "rootfs")


def enter(root: str) -> None:
    """Level 04's enter() (in the mount namespace clone3 made), with a /dev/null."""
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
    syscalls.mount(root, root, None, syscalls.MS_BIND | syscalls.MS_REC)
    # A /dev of our own with /dev/null (sh gives a background job /dev/null as its stdin):
    # a tmpfs in this mount namespace, so the rootfs is not written to.
    syscalls.mount("tmpfs", f"{root}/dev", "tmpfs", syscalls.MS_NOSUID, "mode=755")
    os.mknod(f"{root}/dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.chmod(f"{root}/dev/null", 0o666)  # past the umask
    os.chdir(root)
    syscalls.pivot_root(".", ".")
    syscalls.umount2(".", syscalls.MNT_DETACH)
    os.chdir("/")
    # This /proc belongs to the new pid namespace: it lists only the container's processes.
    syscalls.mount("proc", "/proc", "proc", syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)


def init(argv: list[str]) -> int:
    """PID 1 of the container: start argv, then reap every process that ends up ours
    (orphans are re-parented to PID 1) until none is left; return argv's status."""
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    result = 0
    # >>> exercise: reap every child (waitpid(-1)) until there are none; keep argv's status
    while True:
        try:
            reaped, status = os.waitpid(-1, 0)
        except ChildProcessError:  # no children left
            return result
        print(f"init: reaped pid {reaped} (status {os.waitstatus_to_exitcode(status)})")
        if reaped == pid:
            result = os.waitstatus_to_exitcode(status)
    # <<< exercise


def run_in(root: str, hostname: str, argv: list[str]) -> int:
    # >>> exercise: clone3 with new pid, uts and mount namespaces
    pid = syscalls.fork(syscalls.CLONE_NEWPID | syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWNS)
    # <<< exercise
    if pid == 0:
        code = 125
        try:
            # >>> exercise: set the hostname (the uts namespace's own)
            syscalls.sethostname(hostname)
            # <<< exercise
            enter(root)
            print(f"init: I am pid {os.getpid()}")
            code = init(argv)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


status = run_in(ROOTFS, "box", ["/bin/sh", "-c", """
    echo "shell: pid $$ on $(hostname)"
    ps -o pid,comm
    sleep 0.3 &
    echo "shell: started sleep as pid $!, exiting without waiting for it"
"""])
print(f"status {status}, host's hostname unchanged: {os.uname().nodename != 'box'}")
