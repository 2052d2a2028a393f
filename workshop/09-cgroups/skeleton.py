"""Skeleton of level 09: cgroup v2 limits: memory and pids. Run as root from the repository, on a host
with cgroup v2 controllers (see the README: not on a hybrid host, where it runs in the guest lane):
    .venv/bin/python workshop/09-cgroups/solution.py [ROOTFS]
"""
import os
import stat
import sys
import time

from minicontainer.kernel import cgroupfs, syscalls

sys.stdout.reconfigure(line_buffering=True)
ROOTFS = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "rootfs")
MiB = 1 << 20


def enter(root: str) -> None:
    """Level 06's enter(), with /dev/zero next to /dev/null (dd reads it below)."""
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
    syscalls.mount(root, root, None, syscalls.MS_BIND | syscalls.MS_REC)
    syscalls.mount("tmpfs", f"{root}/dev", "tmpfs", syscalls.MS_NOSUID, "mode=755")
    for name, minor in (("null", 3), ("zero", 5)):
        os.mknod(f"{root}/dev/{name}", stat.S_IFCHR | 0o666, os.makedev(1, minor))
        os.chmod(f"{root}/dev/{name}", 0o666)
    os.chdir(root)
    syscalls.pivot_root(".", ".")
    syscalls.umount2(".", syscalls.MNT_DETACH)
    os.chdir("/")
    syscalls.mount("proc", "/proc", "proc", syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)


def run_in(root: str, cgroup: str, argv: list[str]) -> int:
    # TODO: start the child directly inside the cgroup (clone3's CLONE_INTO_CGROUP: syscalls.fork's cgroup_fd)
    raise NotImplementedError("TODO: start the child directly inside the cgroup (clone3's CLONE_INTO_CGROUP: syscalls.fork's cgroup_fd)")
    if pid == 0:
        try:
            enter(root)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    # Whatever it left running (sh's orphaned sleeps below) still counts in the cgroup.
    cgroupfs.kill(cgroup)
    while cgroupfs.populated(cgroup):
        time.sleep(0.01)
    return os.waitstatus_to_exitcode(status)


def main() -> int:
    v2, v1 = cgroupfs.mounts()
    if v2 is None or not {"memory", "pids"} <= cgroupfs.controllers(v2):
        where = f"memory is cgroup v1's, at {v1['memory']}" if "memory" in v1 else "no cgroup v2"
        sys.stderr.write(f"09-cgroups: this host has no cgroup v2 memory and pids controllers ({where}): "
                         "run this level in the guest lane (workshop/09-cgroups/README.md)\n")
        return 1
    cgroup = f"{v2}/workshop-09-{os.getpid()}"
    # TODO: hand memory and pids to the root's children, make the cgroup, write memory.max (32 MiB, no swap) and pids.max (8)
    raise NotImplementedError("TODO: hand memory and pids to the root's children, make the cgroup, write memory.max (32 MiB, no swap) and pids.max (8)")
    try:
        # TODO: (continued)
        raise NotImplementedError('TODO: (continued)')
        print(f"cgroup: memory.max {cgroupfs.read(cgroup + '/memory.max').strip()}, "
              f"pids.max {cgroupfs.read(cgroup + '/pids.max').strip()}")
        status = run_in(ROOTFS, cgroup, ["/bin/sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & done"])
        print(f"pids: status {status}, pids.events max {cgroupfs.keyed(cgroup + '/pids.events')['max']}")
        status = run_in(ROOTFS, cgroup, ["/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"])
        print(f"memory: status {status}, memory.events oom_kill "
              f"{cgroupfs.keyed(cgroup + '/memory.events')['oom_kill']}")
    finally:
        os.rmdir(cgroup)
    print("cgroup removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
