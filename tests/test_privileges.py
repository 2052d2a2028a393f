"""Capabilities really gone: what a root process in a default container cannot do."""
from __future__ import annotations

import os
import time

import prctl


def caps_of(mc, rootfs, *flags) -> dict[str, int]:
    r = mc("run", *flags, rootfs, "grep", "^Cap", "/proc/self/status")
    assert r.returncode == 0, r.stderr
    return {k.rstrip(":"): int(v, 16) for k, v in (line.split() for line in r.stdout.splitlines())}


def mask(*names: str) -> int:
    return sum(1 << getattr(prctl, f"CAP_{n.upper()}") for n in names)


DOCKER_DEFAULT = mask(
    "chown", "dac_override", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
    "net_bind_service", "net_raw", "sys_chroot", "mknod", "audit_write", "setfcap")


def test_default_set_is_dockers(mc, rootfs):
    caps = caps_of(mc, rootfs)
    assert caps["CapBnd"] == caps["CapEff"] == caps["CapPrm"] == DOCKER_DEFAULT
    assert caps["CapInh"] == 0 and caps["CapAmb"] == 0


def test_cap_add_and_drop(mc, rootfs):
    caps = caps_of(mc, rootfs, "--cap-add", "NET_ADMIN", "--cap-drop", "CAP_CHOWN")
    assert caps["CapBnd"] == (DOCKER_DEFAULT | mask("net_admin")) & ~mask("chown")
    assert caps_of(mc, rootfs, "--cap-drop", "ALL")["CapBnd"] == 0
    everything = caps_of(mc, rootfs, "--privileged")["CapBnd"]
    assert everything & mask("sys_admin", "mknod", "sys_module")


def test_no_new_privs_on_unless_asked(mc, rootfs):
    status = mc("run", rootfs, "grep", "NoNewPrivs", "/proc/self/status").stdout
    assert status.split()[1] == "1"
    status = mc("run", "--security-opt", "no-new-privileges=false", rootfs,
                "grep", "NoNewPrivs", "/proc/self/status").stdout
    assert status.split()[1] == "0"


def test_cannot_mount(mc, rootfs):
    r = mc("run", rootfs, "/bin/sh", "-c", "mount -t tmpfs none /mnt; grep -c ' /mnt ' /proc/self/mountinfo")
    assert r.stdout.strip() == "0" and "permission denied" in r.stderr, r.stderr
    r = mc("run", "--privileged", rootfs, "/bin/sh", "-c", "mount -t tmpfs none /mnt; grep -c ' /mnt ' /proc/self/mountinfo")
    assert r.stdout.strip() == "1"


def test_cannot_change_the_hosts_clock(mc, rootfs):
    before = time.time()
    r = mc("run", rootfs, "date", "-s", "2001-01-01 00:00:00")
    assert "can't set date: Operation not permitted" in r.stderr
    assert abs(time.time() - before) < 60


def test_cannot_load_modules(mc, rootfs):
    # A junk image: without CAP_SYS_MODULE, init_module(2) refuses before looking at it.
    script = "head -c 4096 /dev/zero > /tmp/m.ko; insmod /tmp/m.ko"
    r = mc("run", rootfs, "/bin/sh", "-c", script)
    assert r.returncode != 0
    caps = caps_of(mc, rootfs)
    assert not any(caps[s] & mask("sys_module") for s in caps)
    # docker's seccomp profile refuses init_module and finit_module without CAP_SYS_MODULE:
    # EPERM, even where the kernel has no module support at all (as the dev machines' kernel
    # is built), which tells everyone else ENOSYS
    assert "Operation not permitted" in r.stderr, r.stderr


def test_a_node_for_the_hosts_disk_can_be_made_but_not_opened(mc, rootfs):
    """CAP_MKNOD, as docker grants it, with docker's device allowlist enforced by the
    container's cgroup (an eBPF program, runtime/devices.py): mknod of any node works, opening
    one outside the allowlist fails with EPERM; the nodes of /dev stay usable."""
    r = mc("run", rootfs, "/bin/sh", "-c", "mknod /tmp/disk b 8 0 && echo made; "
           "head -c 512 /tmp/disk; mknod /tmp/null c 1 3 && echo x > /tmp/null && echo null "
           "&& head -c 3 /dev/zero | wc -c")
    assert r.stdout == "made\nnull\n3\n"
    assert r.stderr == "head: /tmp/disk: Operation not permitted\n"


def test_a_bound_device_node_is_denied_unless_privileged(mc, rootfs):
    r = mc("run", "-v", "/dev/kmsg:/dev/kmsg", rootfs, "head", "-c", "1", "/dev/kmsg")
    assert r.returncode == 1 and r.stderr == "head: /dev/kmsg: Operation not permitted\n"
    r = mc("run", "--privileged", "-v", "/dev/kmsg:/dev/kmsg", rootfs, "/bin/sh", "-c",
           "head -c 1 /dev/kmsg > /dev/null && echo read")
    assert r.stdout == "read\n"


def test_device_flag_allows_one_node_with_its_permissions(mc, rootfs):
    """--device, as docker's: the host's node made in /dev, allowed as asked (here: read)."""
    r = mc("run", "--device", "/dev/net/tun:/dev/mytun:r", rootfs, "/bin/sh", "-c",
           "stat -c '%t:%T' /dev/mytun; true < /dev/mytun && echo read; true > /dev/mytun")
    assert r.stdout == "a:c8\nread\n"
    assert r.stderr == "/bin/sh: can't create /dev/mytun: Operation not permitted\n"
    r = mc("run", "--device", "/etc/passwd", rootfs, "true")
    assert r.returncode == 125 and "/etc/passwd is not a device node" in r.stderr


def test_cannot_write_kernel_settings(mc, rootfs):
    r = mc("run", rootfs, "/bin/sh", "-c", "echo 1 > /proc/sys/vm/drop_caches")
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    r = mc("run", rootfs, "/bin/sh", "-c", "echo 1 > /proc/sysrq-trigger")
    # read-only when the kernel has it (EROFS); this machine's kernel has no magic SysRq
    # (busybox says ENOENT on a create so)
    expected = "Read-only file system" if os.path.exists("/proc/sysrq-trigger") else \
        "nonexistent directory"
    assert r.returncode != 0 and expected in r.stderr, r.stderr
