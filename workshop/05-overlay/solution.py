"""Level 05: overlayfs, a copy-on-write root. Run as root from the repository:
    .venv/bin/python workshop/05-overlay/solution.py [ROOTFS]
"""
import os
import shutil
import stat
import sys
import tempfile

from minicontainer.kernel import syscalls

sys.stdout.reconfigure(line_buffering=True)
ROOTFS = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "rootfs")


def enter(root: str) -> None:
    """Level 04's enter(), unchanged."""
    syscalls.mount(root, root, None, syscalls.MS_BIND | syscalls.MS_REC)
    os.chdir(root)
    syscalls.pivot_root(".", ".")
    syscalls.umount2(".", syscalls.MNT_DETACH)
    os.chdir("/")
    syscalls.mount("proc", "/proc", "proc", syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)


def run_in(lower: str, layer: str, argv: list[str]) -> int:
    """Run argv in an overlay of `lower` (never written) and `layer`/upper (every change)."""
    upper, work, merged = (os.path.join(layer, d) for d in ("upper", "work", "merged"))
    for d in (upper, work, merged):
        os.mkdir(d)
    pid = syscalls.fork()
    if pid == 0:
        try:
            syscalls.unshare(syscalls.CLONE_NEWNS)
            syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
            # >>> exercise: mount an overlay of lower (read-only) and upper (read-write) on merged
            syscalls.mount("overlay", merged, "overlay", 0,
                           f"lowerdir={lower},upperdir={upper},workdir={work}")
            # <<< exercise
            enter(merged)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def describe(upper: str) -> None:
    for top, dirs, files in sorted(os.walk(upper)):
        for name in sorted(dirs + files):
            path = os.path.join(top, name)
            st = os.lstat(path)
            what = "directory (copied up)" if stat.S_ISDIR(st.st_mode) else "file"
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                what = "whiteout (a 0:0 character device: 'deleted')"
            print(f"  {os.path.relpath(path, upper)}: {what}")


layer = tempfile.mkdtemp(prefix="workshop-05-", dir="/run")  # upper and work: same filesystem
try:
    status = run_in(ROOTFS, layer, ["/bin/sh", "-c",
                                    "echo hi > /hello; rm /bin/ls; cat /hello; ls /bin/ls"])
    print(f"status {status}")
    print("the upper layer holds every change:")
    describe(os.path.join(layer, "upper"))
    print(f"rootfs untouched: hello absent {not os.path.exists(ROOTFS + '/hello')}, "
          f"bin/ls present {os.path.lexists(ROOTFS + '/bin/ls')}")
finally:
    shutil.rmtree(layer)
