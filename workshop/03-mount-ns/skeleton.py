"""Skeleton of level 03: a mount namespace, and /proc inside it. Run as root from the repository:
    .venv/bin/python workshop/03-mount-ns/solution.py [ROOTFS]
"""
import os
import sys
import time

from minicontainer.kernel import syscalls

sys.stdout.reconfigure(line_buffering=True)
ROOTFS = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "rootfs")


def mounted_at(path: str, mountinfo: str = "/proc/self/mountinfo") -> bool:
    """Is a proc filesystem mounted at `path` (as the owner of `mountinfo` sees paths)?"""
    with open(mountinfo) as f:
        return any(line.split()[4] == path and " - proc " in line for line in f)


def run_in(root: str, argv: list[str]) -> int:
    pid = syscalls.fork()
    if pid == 0:
        try:
            # TODO: a new mount namespace, private, with proc mounted on root/proc
            raise NotImplementedError('TODO: a new mount namespace, private, with proc mounted on root/proc')
            os.chroot(root)
            os.chdir("/")
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    # Look from outside while it runs: once it has exec'd, its mounts are all made.
    while not os.readlink(f"/proc/{pid}/exe").endswith("/busybox"):
        time.sleep(0.01)
    print(f"host: in the child's mountinfo, proc on /proc: {mounted_at('/proc', f'/proc/{pid}/mountinfo')}")
    print(f"host: in mine, proc on rootfs/proc: {mounted_at(ROOTFS + '/proc')}")
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


status = run_in(ROOTFS, ["/bin/sh", "-c", """
    sleep 0.2  # let the host look first
    echo "container: /proc mounted: $(grep -c ' /proc proc ' /proc/mounts)"
    [ "$(readlink /proc/1/ns/mnt)" != "$(readlink /proc/self/ns/mnt)" ] && echo 'container: a mount namespace of its own'
    [ $$ != 1 ] && [ -d /proc/1 ] && echo 'container: pid 1 is not me: every host process is in /proc (level 06 fixes that)'
"""])
print(f"status {status}")
