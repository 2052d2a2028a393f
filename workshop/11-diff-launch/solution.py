"""Level 11: the whole container in one script, to diff with minicontainer/runtime/launch.py.
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
        # >>> exercise: the container's set-up, levels 03-10 in launch.py's order
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, 9)                # die with us (SIGKILL)
        syscalls.unshare(NAMESPACES)                                # 03, 06, 07
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
        upper, work, root = (os.path.join(layer, d) for d in ("upper", "work", "merged"))
        syscalls.mount("overlay", root, "overlay", 0,               # 05
                       f"lowerdir={ROOTFS},upperdir={upper},workdir={work}")
        syscalls.mount("proc", f"{root}/proc", "proc",              # 03
                       syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)
        syscalls.mount("tmpfs", f"{root}/dev", "tmpfs", syscalls.MS_NOSUID, "mode=755")
        for name, minor in (("null", 3), ("zero", 5)):
            os.mknod(f"{root}/dev/{name}", stat.S_IFCHR | 0o666, os.makedev(1, minor))
            os.chmod(f"{root}/dev/{name}", 0o666)
        syscalls.sethostname("box")                                 # 06
        syscalls.loopback_up()                                      # 07
        os.chdir(root)                                              # 04
        syscalls.pivot_root(".", ".")
        syscalls.umount2(".", syscalls.MNT_DETACH)
        os.chdir("/")
        keep = frozenset(caps.DEFAULT)                              # 10
        caps.limit_bounding(keep)
        caps.limit_sets(keep)
        caps.no_new_privs()
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOSTNAME": "box", "HOME": "/root"}
        code = 127
        os.execvpe(argv[0], argv, env)                              # 01
        # <<< exercise
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
