"""Skeleton of level 07: a network namespace, its loopback, and a veth pair made by hand.
Run as root from the repository:
    .venv/bin/python workshop/07-net-veth/solution.py [ROOTFS]
"""
import os
import stat
import sys

from minicontainer.kernel import syscalls
from minicontainer.kernel.netlink import Netlink  # pyroute2 underneath, as the runtime's network code

sys.stdout.reconfigure(line_buffering=True)
ROOTFS = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "rootfs")


class Box:
    """A container reduced to what networking needs: its own network namespace (and a mount
    namespace for its /proc and /dev/null), the rootfs, and a shell we feed commands to.
    sh(cmd) runs one command line in it and prints what it printed, prefixed by its name."""

    def __init__(self, name: str, rootfs: str = ROOTFS):
        self.name = name
        to_r, self._to = os.pipe()
        self._from, from_w = os.pipe()
        # TODO: a child in new network and mount namespaces (syscalls.fork flags)
        raise NotImplementedError('TODO: a child in new network and mount namespaces (syscalls.fork flags)')
        if self.pid == 0:
            try:
                os.dup2(to_r, 0)
                os.dup2(from_w, 1)
                os.dup2(from_w, 2)
                _enter(rootfs)
                os.execv("/bin/sh", ["sh"])
            finally:
                os._exit(127)
        os.close(to_r)
        os.close(from_w)
        self._out = os.fdopen(self._from)

    def sh(self, command: str) -> None:
        os.write(self._to, f"{command}\necho __done__\n".encode())
        for line in self._out:
            if line == "__done__\n":
                return
            print(f"{self.name}: {line}", end="")

    def close(self) -> None:
        """EOF on its stdin ends the shell; the namespace and its links go with it."""
        os.close(self._to)
        os.waitpid(self.pid, 0)
        self._out.close()


def _enter(root: str) -> None:
    """Level 06's enter(): pivot_root into root, a fresh /proc, a tmpfs /dev with null."""
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
    syscalls.mount(root, root, None, syscalls.MS_BIND | syscalls.MS_REC)
    syscalls.mount("tmpfs", f"{root}/dev", "tmpfs", syscalls.MS_NOSUID, "mode=755")
    os.mknod(f"{root}/dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.chmod(f"{root}/dev/null", 0o666)
    os.chdir(root)
    syscalls.pivot_root(".", ".")
    syscalls.umount2(".", syscalls.MNT_DETACH)
    os.chdir("/")
    syscalls.mount("proc", "/proc", "proc", syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)


# A shell function in each box: "ping ADDR: ok" or "ping ADDR: unreachable", one packet, 1 s.
PING = "p() { ping -c 1 -W 1 $1 >/dev/null 2>&1 && echo \"ping $1: ok\" || echo \"ping $1: unreachable\"; }"
LINKS = "echo links: $(ip -o link | cut -d: -f2 | cut -d@ -f1)"


def main() -> None:
    c1, c2 = Box("c1"), Box("c2")
    try:
        for box in (c1, c2):
            box.sh(PING)
        c1.sh(LINKS)
        c1.sh("p 127.0.0.1")
        # TODO: bring lo up in c1's namespace, from outside (Netlink(pid=c1.pid))
        raise NotImplementedError("TODO: bring lo up in c1's namespace, from outside (Netlink(pid=c1.pid))")
        print("host: lo is up in c1")
        c1.sh("p 127.0.0.1")
        # TODO: a veth pair v1 (in c1) <-> v2 (in c2), addressed 10.0.0.1/24 and 10.0.0.2/24, up
        raise NotImplementedError('TODO: a veth pair v1 (in c1) <-> v2 (in c2), addressed 10.0.0.1/24 and 10.0.0.2/24, up')
        print("host: veth v1 (c1, 10.0.0.1/24) <-> v2 (c2, 10.0.0.2/24)")
        c1.sh(LINKS)
        c1.sh("p 10.0.0.2")
        c2.sh("p 10.0.0.1")
        with Netlink() as nl:
            print(f"host: v1 or v2 in my namespace: {bool(nl.index('v1') or nl.index('v2'))}")
    finally:
        c1.close()
        c2.close()


if __name__ == "__main__":
    main()
