"""Building the container's filesystem view, inside its new mount namespace.

Runs in the child, after unshare(CLONE_NEWNS): every mount made here exists only in the
container's mount namespace and vanishes with it, so the host never holds one of ours.
The defaults follow runc's libcontainer/SPEC.md: a fresh /proc, read-only /sys, a tmpfs /dev
with a handful of device nodes, and the same masked and read-only paths.
"""
from __future__ import annotations

import os

from minicontainer.errors import ContainerError
from minicontainer.kernel.syscalls import (
    MNT_DETACH, MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_REMOUNT,
    MS_SLAVE, MS_STRICTATIME, mount, pivot_root, umount2,
)

# (name, major, minor): the nodes runc creates; all world read-write, as on any Linux box.
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
           ("urandom", 1, 9), ("tty", 5, 0))

DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
             ("ptmx", "pts/ptmx"), ("core", "/proc/kcore"))

# Hidden from the container: files get /dev/null bound over them, directories an empty
# read-only tmpfs (runc's and docker's defaults).
MASKED_PATHS = ("/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                "/sys/devices/virtual/powercap")

# Visible but read-only: writing here would change the host's kernel.
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

NOSUID_NODEV_NOEXEC = MS_NOSUID | MS_NODEV | MS_NOEXEC


def make_mounts_private() -> None:
    """Stop our mounts propagating back to the host (and keep receiving none of ours there):
    rslave, as runc does by default."""
    mount(None, "/", None, MS_REC | MS_SLAVE)


def mount_root(spec, container) -> str:
    """Mount the container's root at container.rootfs: an overlay whose upper layer is the
    container's own (so ./rootfs is never written), or the rootfs itself bound read-only."""
    target = container.rootfs
    if spec.root.readonly:
        mount(spec.root.path, target, None, MS_BIND | MS_REC)
    else:
        options = f"lowerdir={spec.root.path},upperdir={container.upper},workdir={container.work},volatile"
        mount("overlay", target, "overlay", 0, options)
    return target


def _mkdir_in(root: str, path: str, readonly_root: bool) -> str:
    """The host path of `path` inside the container root, created if missing (into the
    overlay's upper layer: never into the user's rootfs)."""
    full = root + path
    if not os.path.isdir(full):
        if readonly_root:
            raise ContainerError(
                f"mount point {path} does not exist in the read-only rootfs")
        os.makedirs(full, 0o755, exist_ok=True)
    return full


def mount_system(root: str, readonly_root: bool) -> None:
    """/proc, /dev (with pts, shm, mqueue), /sys and /sys/fs/cgroup inside `root`."""
    mount("proc", _mkdir_in(root, "/proc", readonly_root), "proc", NOSUID_NODEV_NOEXEC)

    dev = _mkdir_in(root, "/dev", readonly_root)
    mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k")
    old_umask = os.umask(0)
    try:
        for name, major, minor in DEVICES:
            os.mknod(f"{dev}/{name}", 0o20666, os.makedev(major, minor))
        for d in ("pts", "shm", "mqueue"):
            os.mkdir(f"{dev}/{d}", 0o755)
    finally:
        os.umask(old_umask)
    for name, target in DEV_LINKS:
        os.symlink(target, f"{dev}/{name}")
    mount("devpts", f"{dev}/pts", "devpts", MS_NOSUID | MS_NOEXEC,
          "newinstance,ptmxmode=0666,mode=0620,gid=5")
    mount("shm", f"{dev}/shm", "tmpfs", NOSUID_NODEV_NOEXEC, "mode=1777,size=65536k")
    mount("mqueue", f"{dev}/mqueue", "mqueue", NOSUID_NODEV_NOEXEC)

    sys_dir = _mkdir_in(root, "/sys", readonly_root)
    mount("sysfs", sys_dir, "sysfs", NOSUID_NODEV_NOEXEC | MS_RDONLY)
    # With a cgroup namespace, the container sees its own cgroup as the root of this tree.
    mount("cgroup2", f"{sys_dir}/fs/cgroup", "cgroup2", NOSUID_NODEV_NOEXEC | MS_RDONLY)


def mount_user_mounts(root: str, mounts, readonly_root: bool) -> None:
    """-v host:ctr[:ro] binds and --tmpfs mounts, in the order given."""
    for m in mounts:
        if m.kind == "bind":
            if not os.path.exists(m.source):
                raise ContainerError(f"volume source {m.source} does not exist on the host")
            target = root + m.target
            if os.path.isdir(m.source):
                _mkdir_in(root, m.target, readonly_root)
            elif not os.path.exists(target):
                if readonly_root:
                    raise ContainerError(f"mount point {m.target} does not exist in the read-only rootfs")
                _mkdir_in(root, os.path.dirname(m.target) or "/", readonly_root)
                open(target, "a").close()
            mount(m.source, target, None, MS_BIND | MS_REC)
            if m.readonly or m.flags:
                mount(None, target, None,
                      MS_BIND | MS_REMOUNT | m.flags | (MS_RDONLY if m.readonly else 0))
        else:
            target = _mkdir_in(root, m.target, readonly_root)
            flags = MS_NOSUID | MS_NODEV | m.flags | (MS_RDONLY if m.readonly else 0)
            mount("tmpfs", target, "tmpfs", flags, m.options or "mode=1777")


def oci_extras(root: str, devices, sysctl) -> None:
    """An OCI config's linux.devices (nodes made in the container's /dev) and linux.sysctl
    (written through the container's own /proc, so only namespaced keys can take effect)."""
    old_umask = os.umask(0)
    try:
        for path, kind, major, minor, mode, uid, gid in devices:
            full = root + path
            os.makedirs(os.path.dirname(full), 0o755, exist_ok=True)
            if os.path.lexists(full):
                os.unlink(full)
            os.mknod(full, mode | (0o020000 if kind == "c" else 0o060000), os.makedev(major, minor))
            os.chown(full, uid, gid)
    finally:
        os.umask(old_umask)
    for key, value in sysctl.items():
        try:
            with open(f"{root}/proc/sys/{key.replace('.', '/')}", "w") as f:
                f.write(value)
        except OSError as e:
            raise ContainerError(f"sysctl {key}={value}: {e.strerror}") from None


def make_root_readonly(root: str) -> None:
    mount(None, root, None, MS_BIND | MS_REMOUNT | MS_RDONLY)


def switch_root(root: str, use_pivot_root: bool) -> None:
    """Make `root` the process's /. pivot_root moves the old root away and we then detach it,
    so nothing of the host's tree stays reachable; chroot (the teaching mode) only changes
    where path lookups start, and the old root is still mounted underneath."""
    os.chdir(root)
    if use_pivot_root:
        # pivot_root(".", "."): the old root ends up stacked under the new one, at "/",
        # where a lazy unmount takes it away without needing a put_old directory.
        pivot_root(".", ".")
        umount2(".", MNT_DETACH)
    else:
        os.chroot(".")
    os.chdir("/")


def mask_paths(masked=None, readonly=None) -> None:
    """Apply the masked and read-only paths (None: MASKED_PATHS and READONLY_PATHS); run after
    switch_root, on container paths. A path this kernel does not have is skipped (a stat is
    cheaper than a failing mount)."""
    for path in MASKED_PATHS if masked is None else masked:
        try:
            is_dir = os.stat(path).st_mode & 0o170000 == 0o040000
        except FileNotFoundError:
            continue
        if is_dir:
            mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0")
        else:
            mount("/dev/null", path, None, MS_BIND)
    for path in READONLY_PATHS if readonly is None else readonly:
        if not os.path.lexists(path):
            continue
        mount(path, path, None, MS_BIND | MS_REC)
        mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
