"""Building the container's filesystem view, inside its new mount namespace.

Runs in the child, after unshare(CLONE_NEWNS): every mount made here exists only in the
container's mount namespace and vanishes with it, so the host never holds one of ours.
The defaults follow runc's libcontainer/SPEC.md: a fresh /proc, read-only /sys, a tmpfs /dev
with a handful of device nodes, and the same masked and read-only paths.

Before pivot_root the container's root is an ordinary host directory, and a path joined onto
it as a string would follow the image's symlinks (`evil -> /etc`) onto the host. So every
mount target is resolved with the root as its root (resolve), and mounted through the
descriptor that resolving returned (fd_path, bind): see docs/security.md.
"""
from __future__ import annotations

import errno
import os
import stat

from minicontainer.errors import ContainerError
from minicontainer.kernel import syscalls
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

# S_IFCHR, S_IFBLK, S_IFIFO: the kinds of node linux.devices makes (oci.py DEVICE_TYPES)
NODE_TYPES = {"c": 0o020000, "b": 0o060000, "p": 0o010000}


def make_mounts_private() -> None:
    """Stop our mounts propagating back to the host (and keep receiving none of ours there):
    rslave, as runc does by default. An OCI rootfsPropagation is applied later, to the
    container's own / (set_root_propagation)."""
    mount(None, "/", None, MS_REC | MS_SLAVE)


def mount_root(spec, container) -> str:
    """Mount the container's root at container.rootfs. `run` (root.overlay): an overlay whose
    upper layer is the container's own, so ./rootfs is never written, or with --read-only
    the rootfs itself bound and made read-only all the way down at once. OCI bundles: root.path
    itself, bound, so writes land in it (the engine brings its own copy-on-write layer);
    root.readonly is applied once the mount points are made (finish_readonly_root)."""
    target = container.rootfs
    root = spec.root
    if root.overlay and not root.readonly:
        options = f"lowerdir={root.path},upperdir={container.upper},workdir={container.work},volatile"
        mount("overlay", target, "overlay", 0, options)
        return target
    mount(root.path, target, None, MS_BIND | MS_REC)
    if root.readonly and root.overlay:
        fd = open_root(target)
        try:
            make_readonly(fd, target)
        finally:
            os.close(fd)
    return target


def open_root(path: str) -> int:
    """An O_PATH descriptor of the container's root, the anchor of every resolve()."""
    return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def fd_path(fd: int) -> str:
    """The path by which mount(2) reaches exactly what `fd` names, with no lookup to redirect."""
    return f"/proc/self/fd/{fd}"


def resolve(root_fd: int, path: str, create: str | None = None, missing_ok=False,
            what: str = "mount point") -> int | None:
    """An O_PATH fd of `path` resolved with root_fd as its root, the way the container will
    see it: an absolute or `..` symlink in the rootfs stays inside (runc's and docker's
    securejoin), and procfs magic links are not followed. create: 'dir' or 'file' makes what
    is missing (directories on the way, then a directory or an empty file), inside the root.
    openat2(RESOLVE_IN_ROOT) where the kernel has it; otherwise, or to create, a walk one
    component at a time (_walk). missing_ok: None for a path that does not exist; `what` the
    path is, for the error message."""
    rel = os.path.normpath("/" + path).lstrip("/")
    try:
        return syscalls.openat2(root_fd, rel or ".", os.O_PATH | os.O_CLOEXEC,
                                syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_MAGICLINKS)
    except OSError as e:
        if e.errno == errno.ENOENT and missing_ok:
            return None
        if not (e.errno == errno.ENOSYS or e.errno == errno.ENOENT and create):
            raise ContainerError(f"{what} {path}: {os.strerror(e.errno)}") from None
    try:
        return _walk(root_fd, rel, create)
    except OSError as e:
        if e.errno == errno.ENOENT and missing_ok:
            return None
        if e.errno == errno.EROFS:
            raise ContainerError(f"{what} {path} does not exist in the read-only rootfs") from None
        raise ContainerError(f"{what} {path}: {e.strerror}") from None


def _walk(root_fd: int, rel: str, create: str | None) -> int:
    """resolve() by hand: each component opened O_NOFOLLOW under the directory before it; a
    symlink is read and its target walked in its place (from the root if absolute), `..`
    goes back to the directory we came from and never above the root. What is missing is
    made (mkdirat, or an O_EXCL file) under the parent's fd, so no path is looked up twice."""
    stack = [os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=root_fd)]
    todo = [c for c in rel.split("/") if c][::-1]  # a stack: next component last
    links = 0
    try:
        while todo:
            name = todo.pop()
            if name == ".":
                continue
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            try:
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
            except FileNotFoundError:
                if not create:
                    raise
                if todo or create == "dir":
                    os.mkdir(name, 0o755, dir_fd=stack[-1])
                else:
                    os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                     | os.O_CLOEXEC, 0o644, dir_fd=stack[-1]))
                todo.append(name)  # open what we made, through the same checks
                continue
            mode = os.fstat(fd).st_mode
            if stat.S_ISLNK(mode):
                os.close(fd)
                links += 1
                if links > 40:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
                target = os.readlink(name, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                todo.extend(c for c in target.split("/")[::-1] if c)
                continue
            if todo and not stat.S_ISDIR(mode):
                os.close(fd)
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
            stack.append(fd)
        return stack.pop()
    finally:
        for fd in stack:
            os.close(fd)


def bind(source: str, target_fd: int, recursive: bool = True, flags: int = 0,
         propagation=()) -> None:
    """Bind `source` (a host path) onto what target_fd names. With the new mount API: a
    detached copy of the source tree gets its attributes (MS_RDONLY and the rest, on every
    mount in it: read-only all the way down, as docker 25+) and its propagation, then is
    attached through the fd. Without it: mount(2) through the fd, then remounts."""
    try:
        tree = syscalls.open_tree_clone(source, recursive)
    except OSError as e:
        if e.errno != errno.ENOSYS:
            raise
        _bind_classic(source, target_fd, recursive, flags, propagation)
        return
    try:
        attr_set, attr_clr = _mount_attrs(flags)
        if attr_set or attr_clr:
            syscalls.mount_setattr(tree, attr_set, attr_clr)
        for p in propagation:
            syscalls.mount_setattr(tree, 0, 0, p & ~MS_REC, recursive=bool(p & MS_REC))
        syscalls.move_mount(tree, target_fd)
    finally:
        os.close(tree)


def _mount_attrs(flags: int) -> tuple[int, int]:
    """MS_* flags -> mount_setattr's (attr_set, attr_clr)."""
    attr_set = sum(a for f, a in ((MS_RDONLY, syscalls.MOUNT_ATTR_RDONLY),
                                  (MS_NOSUID, syscalls.MOUNT_ATTR_NOSUID),
                                  (MS_NODEV, syscalls.MOUNT_ATTR_NODEV),
                                  (MS_NOEXEC, syscalls.MOUNT_ATTR_NOEXEC),
                                  (syscalls.MS_NODIRATIME, syscalls.MOUNT_ATTR_NODIRATIME))
                   if flags & f)
    for f, a in ((syscalls.MS_NOATIME, syscalls.MOUNT_ATTR_NOATIME),
                 (MS_STRICTATIME, syscalls.MOUNT_ATTR_STRICTATIME),
                 (syscalls.MS_RELATIME, syscalls.MOUNT_ATTR_RELATIME)):
        if flags & f:
            return attr_set | a, syscalls.MOUNT_ATTR__ATIME
    return attr_set, 0


def _bind_classic(source, target_fd, recursive, flags, propagation) -> None:
    """bind() where open_tree/mount_setattr are missing: mount(2) through the fd, then the new
    mount (found again through the fd's path) and, for read-only, each mount under it
    remounted, as listed in /proc/self/mountinfo."""
    target = os.readlink(fd_path(target_fd))
    mount(source, fd_path(target_fd), None, MS_BIND | (MS_REC if recursive else 0))
    if flags:
        remount_tree(target, flags, recursive)
    for p in propagation:
        mount(None, target, None, p)


def remount_tree(path: str, flags: int, recursive: bool = True) -> None:
    """Remount the mount at `path` with `flags` (MS_RDONLY, ...) and, if recursive, every mount
    under it (/proc/self/mountinfo, outermost first): the fallback of mount_setattr."""
    for point in [path] + (submounts(path) if recursive else []):
        mount(None, point, None, MS_BIND | MS_REMOUNT | flags)


def submounts(path: str) -> list[str]:
    """Mount points strictly under `path`, in mount order (/proc/self/mountinfo)."""
    prefix = path.rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split(" ", 5)[4].replace("\\040", " ")
            if point.startswith(prefix) and point not in found:
                found.append(point)
    return found


def make_readonly(root_fd: int, path: str) -> None:
    """The mount root_fd names and every mount under it read-only, at once where the kernel
    has mount_setattr(AT_RECURSIVE), else one remount each."""
    try:
        syscalls.mount_setattr(root_fd, syscalls.MOUNT_ATTR_RDONLY)
    except OSError as e:
        if e.errno != errno.ENOSYS:
            raise
        remount_tree(path, MS_RDONLY)


def finish_readonly_root(root: str, came_with: list[str]) -> None:
    """OCI root.readonly, applied last as runc does (the mount points are made first): the
    root and the mounts it came with from the host read-only; the container's own mounts
    (/proc, /dev, volumes) keep their own flags."""
    for point in [root] + came_with:
        mount(None, point, None, MS_BIND | MS_REMOUNT | MS_RDONLY)


# `run`'s own mounts, in this order (an OCI config lists its own: mount_user_mounts):
# (path, source, fstype, flags, data). docs/defaults.md shows this table (and a test checks).
SYSTEM_MOUNTS = (
    ("/proc", "proc", "proc", NOSUID_NODEV_NOEXEC, None),
    ("/dev", "tmpfs", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k"),
    ("/dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"),
    ("/dev/shm", "shm", "tmpfs", NOSUID_NODEV_NOEXEC, "mode=1777,size=65536k"),
    ("/dev/mqueue", "mqueue", "mqueue", NOSUID_NODEV_NOEXEC, None),
    ("/sys", "sysfs", "sysfs", NOSUID_NODEV_NOEXEC | MS_RDONLY, None),
    # With a cgroup namespace, the container sees its own cgroup as the root of this tree.
    ("/sys/fs/cgroup", "cgroup2", "cgroup2", NOSUID_NODEV_NOEXEC | MS_RDONLY, None),
)


def mount_system(root_fd: int, entries=SYSTEM_MOUNTS) -> None:
    """SYSTEM_MOUNTS (or these of them) inside the root: the defaults of `run`. Each mount
    point is made if missing, except /sys/fs/cgroup, which sysfs brings (none made inside a
    read-only /sys)."""
    for path, source, fstype, flags, data in entries:
        _mount_at(root_fd, path, None if path == "/sys/fs/cgroup" else "dir", source, fstype,
                  flags, data)


def _mount_at(root_fd, path, create, source, fstype, flags, data=None, propagation=(),
              copy_up=False) -> None:
    """A new filesystem mounted at `path` resolved inside the root, through its fd; a tmpfs
    at /dev is then given the standard nodes and links (as runc does). copy_up (OCI
    tmpcopyup): what the directory held is copied into the new tmpfs, read-only after."""
    fd = resolve(root_fd, path, create)
    below = None
    try:
        if copy_up:  # still the directory under the tmpfs once that is mounted
            below = os.open(fd_path(fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        mount(source, fd_path(fd), fstype, flags & ~MS_RDONLY if copy_up else flags, data)
    finally:
        os.close(fd)
    if not (propagation or below is not None or path == "/dev" and fstype == "tmpfs"):
        return
    fd = resolve(root_fd, path)  # the new mount's root now
    try:
        if below is not None:
            top = os.fstat(below)
            _copy_tree(below, fd)
            os.chown(fd_path(fd), top.st_uid, top.st_gid)
            os.chmod(fd_path(fd), stat.S_IMODE(top.st_mode))
            if flags & MS_RDONLY:
                mount(None, fd_path(fd), None, MS_BIND | MS_REMOUNT | flags)
        for p in propagation:
            mount(None, fd_path(fd), None, p)
        if path == "/dev" and fstype == "tmpfs":
            _fill_dev(fd)
    finally:
        os.close(fd)
        if below is not None:
            os.close(below)


def _copy_tree(src: int, dst: int) -> None:
    """Copy the directory `src` into `dst` (fds) as `cp -a` would: files, directories,
    symlinks (as links) and nodes, with owner, mode and times; nothing is followed."""
    flags = os.O_NOFOLLOW | os.O_CLOEXEC
    for name in os.listdir(src):
        st = os.stat(name, dir_fd=src, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(name, 0o700, dir_fd=dst)
            s = os.open(name, os.O_RDONLY | os.O_DIRECTORY | flags, dir_fd=src)
            d = os.open(name, os.O_PATH | os.O_DIRECTORY | flags, dir_fd=dst)
            try:
                _copy_tree(s, d)
            finally:
                os.close(s)
                os.close(d)
        elif stat.S_ISREG(st.st_mode):
            s = os.open(name, os.O_RDONLY | flags, dir_fd=src)
            d = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | flags, 0o600, dir_fd=dst)
            try:
                while os.sendfile(d, s, None, 1 << 20):
                    pass
            finally:
                os.close(s)
                os.close(d)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
        else:
            os.mknod(name, st.st_mode, st.st_rdev, dir_fd=dst)
        os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=dst)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst, follow_symlinks=False)


def _fill_dev(dev_fd: int) -> None:
    """runc's default nodes and /dev links in a fresh /dev tmpfs (ours: nothing to resolve)."""
    old_umask = os.umask(0)
    try:
        for name, major, minor in DEVICES:
            os.mknod(name, 0o20666, os.makedev(major, minor), dir_fd=dev_fd)
    finally:
        os.umask(old_umask)
    for name, target in DEV_LINKS:
        os.symlink(target, name, dir_fd=dev_fd)


def check_bind_source(m) -> None:
    """A bind's source must exist on the host (docker's -v would make a missing directory;
    runc and we refuse)."""
    if not os.path.exists(m.source):
        raise ContainerError(f"volume source {m.source} does not exist on the host")


def mount_user_mounts(root_fd: int, mounts) -> None:
    """-v and --tmpfs mounts, the network's /etc/hosts and resolv.conf binds, and an OCI
    config's mounts: in the order given, each target resolved inside the root and made there
    if missing (in a read-only `run` root that fails: EROFS, said as such)."""
    root = os.readlink(fd_path(root_fd)).rstrip("/")
    for m in mounts:
        flags = m.flags | (MS_RDONLY if m.readonly else 0)
        if m.kind == "bind":
            check_bind_source(m)
            fd = resolve(root_fd, m.target, "dir" if os.path.isdir(m.source) else "file")
            try:
                inside = os.readlink(fd_path(fd))[len(root):]
                if (inside + "/").startswith("/proc/") and \
                        not (m.target + "/").startswith("/proc/"):
                    # runc's check against CVE-2019-19921: what the config puts under /proc
                    # (oci.PROC_BINDS) is checked there, by its name, not through a symlink
                    raise ContainerError(f"mount target {m.target} leads into /proc "
                                         f"({inside}) through a symlink: refused")
                bind(m.source, fd, m.recursive, flags, m.propagation)
            finally:
                os.close(fd)
        else:
            _mount_at(root_fd, m.target, "dir", m.source or m.kind,
                      m.kind, flags, m.options or None, m.propagation, m.copy_up)


def oci_extras(root_fd: int, devices) -> None:
    """An OCI config's linux.devices: nodes made in the container's /dev, each in its
    directory resolved inside the root."""
    old_umask = os.umask(0)
    try:
        for path, kind, major, minor, mode, uid, gid in devices:
            parent = resolve(root_fd, os.path.dirname(os.path.normpath(path)), "dir",
                             what="device directory")
            name = os.path.basename(os.path.normpath(path))
            try:
                try:
                    os.unlink(name, dir_fd=parent)
                except FileNotFoundError:
                    pass
                os.mknod(name, mode | NODE_TYPES[kind],
                         os.makedev(major, minor), dir_fd=parent)
                os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
            finally:
                os.close(parent)
    finally:
        os.umask(old_umask)


def write_sysctls(sysctl: dict) -> None:
    """linux.sysctl (keys checked by oci.check_sysctl), after switch_root, through the
    container's own /proc: no symlink followed, nothing outside its root reachable."""
    root_fd = open_root("/")
    try:
        for key, value in sysctl.items():
            try:
                fd = syscalls.openat2(root_fd, "proc/sys/" + key.replace(".", "/"),
                                      os.O_WRONLY | os.O_CLOEXEC,
                                      syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_SYMLINKS)
                try:
                    os.write(fd, value.encode())
                finally:
                    os.close(fd)
            except OSError as e:
                raise ContainerError(f"sysctl {key}={value}: {os.strerror(e.errno)}") from None
    finally:
        os.close(root_fd)


def set_root_propagation(flags: int) -> None:
    """OCI linux.rootfsPropagation, on the container's / after switch_root (as runc does):
    the container's mounts were made slave to the host first, so even `shared` here makes
    a peer group of the container's own and never propagates a mount back to the host."""
    mount(None, "/", None, flags)


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
    switch_root, each resolved inside the root and mounted on through its fd. A path this
    kernel or image does not have is skipped."""
    root_fd = open_root("/")
    try:
        for path in MASKED_PATHS if masked is None else masked:
            fd = _existing(root_fd, path)
            if fd is None:
                continue
            try:
                if stat.S_ISDIR(os.fstat(fd).st_mode):
                    mount("tmpfs", fd_path(fd), "tmpfs", MS_RDONLY, "size=0")
                else:
                    mount("/dev/null", fd_path(fd), None, MS_BIND)
            finally:
                os.close(fd)
        for path in READONLY_PATHS if readonly is None else readonly:
            fd = _existing(root_fd, path)
            if fd is None:
                continue
            try:
                bind(fd_path(fd), fd, flags=MS_RDONLY)
            finally:
                os.close(fd)
    finally:
        os.close(root_fd)


def _existing(root_fd: int, path: str) -> int | None:
    return resolve(root_fd, path, missing_ok=True)


def open_workdir(cwd: str) -> int:
    """The working directory, resolved inside the container's root (after switch_root) and
    made if missing, as docker does; the caller fchdir()s to it once it is the user."""
    root_fd = open_root("/")
    try:
        return resolve(root_fd, cwd, "dir", what="working directory")
    finally:
        os.close(root_fd)
