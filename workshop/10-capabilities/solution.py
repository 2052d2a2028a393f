"""Level 10: capabilities, no_new_privs, seccomp. Run as root from the repository:
    .venv/bin/python workshop/10-capabilities/solution.py [ROOTFS]
"""
import os
import sys

from minicontainer.kernel import caps, syscalls

sys.stdout.reconfigure(line_buffering=True)
ROOTFS = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "rootfs")
# <linux/prctl.h> and <linux/seccomp.h>; minicontainer.kernel has no seccomp filters (yet):
# strict mode is the original seccomp of 2005, a one-argument prctl.
PR_SET_SECCOMP, SECCOMP_MODE_STRICT = 22, 1


def enter(root: str) -> None:
    """Level 04's enter(), in the mount namespace clone3 made."""
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
    syscalls.mount(root, root, None, syscalls.MS_BIND | syscalls.MS_REC)
    os.chdir(root)
    syscalls.pivot_root(".", ".")
    syscalls.umount2(".", syscalls.MNT_DETACH)
    os.chdir("/")
    syscalls.mount("proc", "/proc", "proc", syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)


def drop_privileges() -> None:
    # >>> exercise: cut the bounding set and the effective/permitted/inheritable sets to docker's defaults (caps.DEFAULT), then set no_new_privs
    keep = frozenset(caps.DEFAULT)
    caps.limit_bounding(keep)  # no exec can get back what is not in here
    caps.limit_sets(keep)
    caps.no_new_privs()        # setuid bits and file capabilities are ignored from now on
    # <<< exercise


def run_in(root: str, argv: list[str], drop: bool) -> int:
    pid = syscalls.fork(syscalls.CLONE_NEWPID | syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWNS)
    if pid == 0:
        try:
            syscalls.sethostname("box")
            enter(root)
            if drop:
                drop_privileges()
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def strict_seccomp() -> int:
    """A child that allows itself read, write, _exit and sigreturn only, then opens a file."""
    pid = os.fork()
    if pid == 0:
        try:
            message = b"seccomp: strict mode on, write(2) still works\n"
            # >>> exercise: enter seccomp's strict mode (prctl PR_SET_SECCOMP, SECCOMP_MODE_STRICT), write the message, then try os.open
            syscalls.prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT)
            os.write(1, message)
            os.open("/", os.O_RDONLY)  # openat(2): not on the list, the kernel sends SIGKILL
            # <<< exercise
        finally:
            os._exit(1)  # not reached once strict mode is on: exit_group(2) is not allowed either
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


SHOW = """
hostname other && echo "hostname: changed to $(hostname)"
grep -E "^($1)" /proc/self/status
"""
print("as root with all of root's capabilities:")
run_in(ROOTFS, ["/bin/sh", "-c", SHOW, "sh", "NoNewPrivs"], drop=False)
print(f"with docker's {len(caps.DEFAULT)}: {' '.join(caps.DEFAULT)}")
run_in(ROOTFS, ["/bin/sh", "-c", SHOW, "sh", "CapEff|CapBnd|NoNewPrivs"], drop=True)
print(f"seccomp: the child ended with status {strict_seccomp()} (killed by SIGKILL)")
