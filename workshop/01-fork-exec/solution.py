"""Level 01: fork, exec, wait. Run as root from the repository:
    .venv/bin/python workshop/01-fork-exec/solution.py [ROOTFS]
"""
import os
import sys

from minicontainer.kernel import syscalls

sys.stdout.reconfigure(line_buffering=True)  # our lines and the child's, in order, in a pipe too
ROOTFS = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "rootfs")
BUSYBOX = os.path.join(ROOTFS, "bin", "busybox")


def run(argv: list[str]) -> int:
    """Start argv[0] (a busybox applet) in a new process and return its status, as a shell
    (or docker) reports it: the exit code, or 128+N when signal N killed it."""
    # >>> exercise: fork (syscalls.fork: clone3 with no flags), exec in the child, wait
    pid = syscalls.fork()
    if pid == 0:  # the child: become busybox; execv returns only on failure
        try:
            os.execv(BUSYBOX, argv)
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)
    # <<< exercise


for argv in (["echo", "hello from the child"], ["sh", "-c", "exit 3"], ["sh", "-c", "kill -9 $$"]):
    print(f"{' '.join(argv)!r}: status {run(argv)}")
