"""Isolation, looked at from inside the container and from the host."""
from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import time

from conftest import ROOTFS

NAMESPACES = ("mnt", "pid", "uts", "ipc", "net", "cgroup")


def sh(mc, rootfs, script, *flags):
    return mc("run", *flags, rootfs, "/bin/sh", "-c", script)


def test_every_namespace_is_new(mc, rootfs):
    script = "; ".join(f"readlink /proc/self/ns/{ns}" for ns in NAMESPACES)
    r = sh(mc, rootfs, script)
    assert r.returncode == 0, r.stderr
    inside = r.stdout.split()
    for ns, seen in zip(NAMESPACES, inside):
        assert seen != os.readlink(f"/proc/self/ns/{ns}"), f"{ns} namespace is the host's"


def test_command_is_pid_1_and_sees_no_host_process(mc, rootfs):
    r = sh(mc, rootfs, "echo $$; ps -o pid,comm")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "1"
    pids = [int(line.split()[0]) for line in lines[2:]]
    assert set(pids) <= {1, 2, 3}, r.stdout  # the shell and ps, nothing of the host's


def test_own_hostname_host_unchanged(mc, rootfs):
    r = mc("run", "--hostname", "box", rootfs, "hostname")
    assert r.stdout.strip() == "box"
    assert socket.gethostname() != "box"
    default = mc("run", rootfs, "hostname").stdout.strip()
    assert len(default) == 12 and all(c in "0123456789abcdef" for c in default)


def test_only_own_mounts(mc, rootfs):
    r = sh(mc, rootfs, "cat /proc/self/mountinfo")
    mountpoints = [line.split()[4] for line in r.stdout.splitlines()]
    assert mountpoints[0] == "/"
    expected = {"/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys",
                "/sys/fs/cgroup"}
    assert expected <= set(mountpoints)
    # Everything else is a masked or read-only path over /proc or /sys: no host mount at all.
    assert all(m in expected or m.startswith(("/proc/", "/sys/")) for m in mountpoints), mountpoints
    with open("/proc/self/mountinfo") as f:
        assert "overlay" not in "".join(line for line in f if rootfs in line)


def test_only_loopback_and_it_is_up(mc, rootfs):
    r = sh(mc, rootfs, "ls /sys/class/net; ip -o link show lo")
    assert r.stdout.split()[0] == "lo" and "UP" in r.stdout
    assert r.stdout.splitlines()[0] == "lo"


def test_separate_ipc(mc, rootfs):
    key = 0x6D630001
    created = subprocess.run(["ipcmk", "-Q", "-p", "0600"], capture_output=True, text=True)
    if created.returncode != 0:  # util-linux's ipcmk missing: fall back on the ns inode check
        assert sh(mc, rootfs, "readlink /proc/self/ns/ipc").stdout.strip() != os.readlink("/proc/self/ns/ipc")
        return
    qid = created.stdout.split()[-1]
    try:
        r = sh(mc, rootfs, "ipcs -q")
        assert qid not in r.stdout.split()
    finally:
        subprocess.run(["ipcrm", "-q", qid], check=False)
    del key


def test_dev_has_the_usual_nodes(mc, rootfs):
    r = sh(mc, rootfs, "ls /dev; echo x > /dev/null; head -c 4 /dev/zero | od -An -tx1; "
                       "test -c /dev/pts/ptmx && echo ptmx-ok")
    for node in ("null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue",
                 "fd", "stdin", "stdout", "stderr", "ptmx"):
        assert node in r.stdout.split(), node
    assert "00 00 00 00" in r.stdout and "ptmx-ok" in r.stdout


def _tree_digest(path: str) -> str:
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(path)):
        dirnames.sort()
        for name in sorted(filenames + dirnames):
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            h.update(f"{full} {st.st_mode} {st.st_size} {st.st_mtime_ns}".encode())
    return h.hexdigest()


def test_rootfs_is_never_written(mc, rootfs):
    before = _tree_digest(rootfs)
    r = sh(mc, rootfs, "echo pwned > /etc/passwd; rm /bin/ls; mkdir /newdir; touch /newfile; "
                       "cat /etc/passwd; ls /bin/ls || echo ls-gone")
    assert r.returncode == 0, r.stderr
    assert "pwned" in r.stdout and "ls-gone" in r.stdout  # the container saw its own writes
    assert _tree_digest(rootfs) == before
    # and the next container starts from the pristine rootfs
    assert "root:x:0:0" in sh(mc, rootfs, "cat /etc/passwd").stdout


def test_read_only_rootfs(mc, rootfs):
    before = _tree_digest(rootfs)
    r = sh(mc, rootfs, "touch /newfile 2>&1; echo ok > /tmp/x 2>&1; echo tmp=$?", "--read-only")
    assert "Read-only file system" in r.stdout
    assert _tree_digest(rootfs) == before


def test_masked_and_readonly_paths(mc, rootfs):
    r = sh(mc, rootfs, "cat /proc/keys | wc -c; cat /proc/timer_list | wc -c; ls -A /sys/firmware | wc -l; "
                       "echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo wrote-sys || echo ro-sys; "
                       "touch /sys/kernel/x 2>/dev/null && echo wrote-sysfs || echo ro-sysfs")
    lines = r.stdout.split()
    assert lines[:3] == ["0", "0", "0"], r.stdout  # /proc/keys, /proc/timer_list, /sys/firmware
    assert "ro-sys" in lines and "ro-sysfs" in lines


def _namespace_root_listing(mc_cmd, state_root, *flags) -> set[str]:
    """Start a container and list / as seen from its mount namespace's own root (where
    nsenter -m lands), not from the container process's root."""
    from conftest import container_processes

    p = subprocess.Popen([*mc_cmd, "run", "--init", *flags, ROOTFS, "/bin/sleep", "60"],
                         stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not container_processes(state_root) and time.monotonic() < deadline:
            time.sleep(0.02)
        pid = container_processes(state_root)[0]
        out = subprocess.run(["nsenter", "-t", str(pid), "-m", "ls", "-A", "/"],
                             capture_output=True, text=True, check=True).stdout
        return set(out.split())
    finally:
        p.terminate()
        p.wait(timeout=10)


def test_chroot_teaching_mode_keeps_the_host_tree_reachable(mc, mc_cmd, rootfs, state_root):
    """--chroot works, and shows why pivot_root is the default: after chroot the host's whole
    tree is still the root of the container's mount namespace, only hidden from path lookups
    of the process; after pivot_root and the lazy unmount, none of it remains there."""
    assert mc("run", "--chroot", rootfs, "/bin/sh", "-c", "echo $$").stdout.strip() == "1"
    host_only = set(os.listdir("/")) - set(os.listdir(rootfs))
    assert host_only
    pivoted = _namespace_root_listing(mc_cmd, state_root)
    chrooted = _namespace_root_listing(mc_cmd, state_root, "--chroot")
    assert not host_only & pivoted, pivoted
    assert host_only <= chrooted, chrooted


def test_root_holds_only_the_filesystem(mc, rootfs):
    # The rootfs directory is every container's /: nothing of the project (a README, the
    # script that builds it) may sit there.
    r = mc("run", rootfs, "ls", "-a", "/")
    assert r.returncode == 0, r.stderr
    assert set(r.stdout.split()) == {".", "..", "bin", "dev", "etc", "home", "linuxrc", "mnt",
                                     "proc", "root", "run", "sbin", "sys", "tmp", "usr", "var"}
