"""The plan applied in C (kernel/native.c): the container's set-up with no Python in the child.

Why. A start forks the calling interpreter and applies the plan (runtime/plan.py) in the
copy (launch._child). fork() copies the caller's page tables and write-protects its pages;
each page either side writes afterwards faults, and is copied while both share it; and the
interpreter runs the steps. bench/harness.py shows what that costs per start (docs/harness.md,
"Speed"). Here the same steps run in C, in a child made with clone3(CLONE_VM | CLONE_VFORK):
it shares our memory until its execve (we wait, suspended), so nothing is copied.

Which plans (`prepare`): the default kind of `run` — the overlay root, the system mounts,
the masked and read-only paths, pivot_root, network none or host — with any user, group,
environment, working directory the image has, capabilities, no_new_privs and seccomp
profile, in the foreground or detached. Anything else in the plan (a volume, a tmpfs, a
terminal, --init, hooks, joined namespaces, rlimits, sysctl, a bridge...) and every run
under --trace or the syscall recorder goes the Python way, as does any plan on a kernel
without openat2 or on another architecture than x86-64. Both ways apply the same steps in
the same order (tests/test_native.py compares what each leaves in the container).

What the Python child computes between its steps, this module computes before the fork,
with the same functions on the same files: the user in /etc/passwd and /etc/group
(process.resolve_user), the environment (build_env) and the path to exec
(find_executable). In such a plan nothing is mounted over /etc, the working directory or
$PATH before the process looks (the system mounts are /proc, /dev and /sys, whose paths a
plan here may not use), so the image's files are the ones the container would read.
"""
from __future__ import annotations

import errno
import os
import stat

from minicontainer.errors import ContainerError
from minicontainer.kernel import caps, syscalls, trace
from minicontainer.kernel._kernel import ffi, lib
from minicontainer.runtime import plan, process, rootfs

# The steps native.c does, in the order it does them (optional ones may be absent).
ORDER = (plan.Unshare, plan.SetHostname, plan.LoopbackUp, plan.MakeMountsPrivate,
         plan.MountRoot) + (plan.SystemMount,) * len(rootfs.SYSTEM_MOUNTS) + (
         plan.SwitchRoot, plan.MaskPath, plan.ReadonlyPath, plan.SetUser, plan.Environment,
         plan.OpenWorkdir, plan.OutliveRuntime, plan.SessionKeyring, plan.Seccomp,
         plan.DropPrivileges, plan.Chdir, plan.FindExecutable, plan.Seccomp, plan.Exec)
REPEATED = (plan.MaskPath, plan.ReadonlyPath)
OPTIONAL = (plan.SetHostname, plan.LoopbackUp, plan.OutliveRuntime, plan.SessionKeyring,
            plan.Seccomp)
# Paths the container sees differently from the image: a plan that looks there is not ours.
MOUNTED = ("/proc", "/dev", "/sys")
_fits = []  # [True or False] once probed: openat2, mount_setattr, x86-64
_clone = lib.mc_native_spawn  # (a test stands a refusing clone3 in its place)


class _NotOurs(Exception):
    """What the image holds is for the Python child to meet, inside the container."""


class Prepared:
    """A filled-in struct mc_native, with the cffi objects it points to kept alive."""

    __slots__ = ("struct", "keep", "clone_flags", "null_stdin")


def prepare(spec, ops, how, seccomp_filter, channel) -> Prepared | None:
    """The struct for native.c if it can apply `ops`, else None (the Python child will).
    Raises what the Python child would raise for the user and the command (unable to find
    user, command not found or not executable), with the same lines and exit codes."""
    if trace.enabled or syscalls.is_recording() or how.exec_fifo is not None or \
            spec.namespace_paths or spec.process.terminal or not _kernel_fits() or \
            not _in_order(ops):
        return None
    of = {type(op): op for op in ops}
    mount_root = of[plan.MountRoot]
    if mount_root.remember or not spec.root.overlay or not of[plan.SwitchRoot].pivot or \
            [op.entry for op in ops if type(op) is plan.SystemMount] != list(rootfs.SYSTEM_MOUNTS):
        return None
    image = os.open(spec.root.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return _fill(spec, of, ops, how, seccomp_filter, channel, image)
    finally:
        os.close(image)


def _fill(spec, of, ops, how, seccomp_filter, channel, image) -> Prepared | None:
    # the mount points native.c does not make: /proc, /dev and /sys of the image
    for name in {point.split("/")[1] for point, *_ in rootfs.SYSTEM_MOUNTS}:
        try:
            if not stat.S_ISDIR(os.stat(name, dir_fd=image, follow_symlinks=False).st_mode):
                return None
        except FileNotFoundError:
            return None
    sec = spec.security
    set_user = of[plan.SetUser]
    try:
        user = process.resolve_user(set_user.user, set_user.groups,
                                    read_table=lambda path: _read_table(image, path))
    except _NotOurs:
        return None
    environment = of[plan.Environment]
    env = process.build_env(environment.env, environment.hostname, user, environment.terminal)
    cwd = os.path.normpath("/" + of[plan.OpenWorkdir].cwd)
    try:
        workdir = syscalls.openat2(image, cwd.lstrip("/") or ".", os.O_PATH | os.O_CLOEXEC,
                                   syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_MAGICLINKS)
    except OSError:
        return None  # to be made (or refused) by the Python child, which knows how
    try:  # a symlink into /proc, /dev or /sys: the container has another directory there
        if not stat.S_ISDIR(os.fstat(workdir).st_mode) or _mounted(image, workdir):
            return None
    finally:
        os.close(workdir)
    command = of[plan.FindExecutable].command
    path_var = env.get("PATH", "")
    looked_at = [os.path.normpath(os.path.join(cwd, c))
                 for c in process.candidates(command, path_var)]
    if any(_under_mounted(p) for p in looked_at):
        return None
    sets = caps.sets_of(sec)
    try:
        path = process.find_executable(
            command, path_var, stat=lambda c: _stat_in(image, cwd, c),
            may_execute=lambda c, st: _may_execute(st, user, sets) and
            _may_search(image, cwd, c, user, sets))
    except _NotOurs:
        return None
    if sets is not None:
        caps.check_grantable(sets)

    keep = []

    def c_str(text):
        if text is None:
            return ffi.NULL
        keep.append(ffi.new("char[]", os.fsencode(text)))
        return keep[-1]

    def c_strings(texts):
        keep.append(ffi.new("char *[]", [c_str(t) for t in texts] + [ffi.NULL]))
        return keep[-1]

    n = ffi.new("struct mc_native *")
    n.err_fd, n.alive_fd = channel.err_w, channel.alive_r
    n.parent_fds = [-1 if fd is None else fd for fd in (channel.err_r, channel.alive_w,
                                                          channel.ready_r)]
    stdio = [-1, -1, -1]  # as launch._child: /dev/null in, the log out, the caller's pipes
    if how.log_fd is not None:
        stdio[1] = stdio[2] = how.log_fd
    for target, fd in enumerate(how.stdio or ()):
        if fd is not None:
            stdio[target] = fd
    n.stdio = stdio
    n.foreground = plan.OutliveRuntime not in of
    flags = 0
    for ns in of[plan.Unshare].namespaces:
        flags |= syscalls.NAMESPACE_FLAGS[ns]
    n.unshare_flags = flags
    n.hostname = c_str(of[plan.SetHostname].name) if plan.SetHostname in of else ffi.NULL
    n.lo_up = plan.LoopbackUp in of
    n.root = c_str(of[plan.MountRoot].target)
    if spec.root.readonly:  # run --read-only: the rootfs itself, read-only all the way down
        n.bind_source = c_str(spec.root.path)
    else:
        n.overlay = c_str(of[plan.MountRoot].options)
    mounts = [op.entry for op in ops if type(op) is plan.SystemMount]  # rootfs.SYSTEM_MOUNTS
    table = ffi.new("struct mc_native_mount[]", len(mounts))
    keep.append(table)
    for m, (point, source, fstype, flags, data) in zip(table, mounts):
        m.path, m.source, m.fstype, m.data = (c_str(point.lstrip("/")), c_str(source),
                                              c_str(fstype), c_str(data))
        m.flags = flags
        m.make = point.startswith("/dev/")  # in our own /dev; the others: _fill checked them
        m.fill_dev = point == "/dev" and fstype == "tmpfs"  # as rootfs._mount_at
    n.mounts, n.nmounts = table, len(mounts)
    nodes = ffi.new("struct mc_native_node[]", len(rootfs.DEVICES))
    keep.append(nodes)
    for node, (name, major, minor) in zip(nodes, rootfs.DEVICES):
        node.name, node.major, node.minor = c_str(name), major, minor
    n.nodes, n.nnodes = nodes, len(rootfs.DEVICES)
    n.links = c_strings(text for link in rootfs.DEV_LINKS for text in link)
    n.masked = c_strings(op.path.lstrip("/") for op in ops if type(op) is plan.MaskPath)
    n.readonly = c_strings(op.path.lstrip("/") for op in ops if type(op) is plan.ReadonlyPath)
    n.workdir = c_str(cwd.lstrip("/"))
    n.new_keyring = plan.SessionKeyring in of
    n.last_cap = caps.last_cap()
    if sets is not None:
        n.cut_caps = 1
        n.bounding, n.effective = caps.mask(sets["bounding"]), caps.mask(sets["effective"])
        n.permitted, n.inheritable = caps.mask(sets["permitted"]), caps.mask(sets["inheritable"])
        n.ambient = caps.mask(sets["ambient"])
    n.uid, n.gid = user.uid, user.gid
    groups = ffi.new("unsigned int[]", list(user.groups) or [0])
    keep.append(groups)
    n.ngroups, n.groups = len(user.groups), groups
    n.no_new_privs = bool(sec.no_new_privs)
    if seccomp_filter is not None:
        bpf, seccomp_flags = seccomp_filter
        keep.append(bpf)
        n.bpf, n.bpf_len, n.bpf_flags = ffi.from_buffer(bpf), len(bpf), seccomp_flags
    exec_op = of[plan.Exec]
    envp = [f"{k}={v}" for k, v in env.items()]
    if any("\0" in text for text in (*exec_op.args, *envp)):
        return None  # C would cut it at the NUL; os.execve in the Python child refuses it
    n.path = c_str(path)
    n.argv = c_strings(exec_op.args)
    n.envp = c_strings(envp)
    n.preserve_fds = exec_op.preserve_fds
    prepared = Prepared()
    prepared.struct, prepared.keep = n, keep
    prepared.null_stdin = not spec.process.interactive and stdio[0] < 0
    prepared.clone_flags = syscalls.CLONE_NEWPID if "pid" in spec.namespaces else 0
    return prepared


def spawn(prepared: Prepared, unblocked, cgroup: str | None) -> int | None:
    """Start the child; returns its pid once it has exec'd or failed (CLONE_VFORK), or None
    if clone3 is refused with ENOSYS (a seccomp filter around us, as docker's answers it):
    the Python child then, whose fork falls back to clone(2). unblocked: the signal mask
    the command gets (protocol.hold_signals)."""
    n = prepared.struct
    n.exec_mask = sum(1 << (int(sig) - 1) for sig in unblocked)
    fds = []
    try:
        if prepared.null_stdin:
            fds.append(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
            n.stdio[0] = fds[-1]
        fd = -1
        if cgroup:
            fds.append(os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
            fd = fds[-1]
        pid = _clone(n, fd, prepared.clone_flags)
    finally:
        for fd in fds:
            os.close(fd)
    if pid == -errno.ENOSYS:
        return None
    if pid < 0:
        raise OSError(-pid, f"clone3: {os.strerror(-pid)}")
    return pid


def failure(report: bytes, command: str) -> ContainerError:
    """The error for native.c's report ("Native\\n<errno> <what>"), as the Python child would
    have raised it: exec failures by their kind (127, 126), any other step by what failed."""
    err, _, what = report.decode(errors="surrogateescape").partition("\n")[2].partition(" ")
    if what == "exec":
        return process.exec_error(command, int(err))
    return ContainerError(f"{what}: {os.strerror(int(err))}")


def _kernel_fits() -> bool:
    if not _fits:
        try:
            os.close(syscalls.openat2(-100, "/", os.O_PATH | os.O_CLOEXEC, 0))
            try:  # and the new mount API (5.12): EBADF for this fd, ENOSYS without it
                syscalls.mount_setattr(-1, syscalls.MOUNT_ATTR_RDONLY)
            except OSError as e:
                if e.errno == errno.ENOSYS:
                    raise
            _fits.append(os.uname().machine == "x86_64")
        except OSError:
            _fits.append(False)
    return _fits[0]


def _in_order(ops) -> bool:
    """Whether `ops` are ORDER's kinds in ORDER's order (optional ones left out, the
    repeated ones any number of times)."""
    i = 0
    for want in ORDER:
        if want in REPEATED:
            while i < len(ops) and type(ops[i]) is want:
                i += 1
        elif i < len(ops) and type(ops[i]) is want:
            i += 1
        elif want not in OPTIONAL:
            return False
    return i == len(ops)


def _open_in(image: int, path: str, flags: int) -> int:
    return syscalls.openat2(image, os.path.normpath("/" + path).lstrip("/") or ".",
                            flags | os.O_CLOEXEC,
                            syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_MAGICLINKS)


# The largest /etc/passwd or /etc/group read here; a bigger one is read by the Python
# child, inside the container and its cgroup's memory limit, not by the runtime.
MAX_TABLE = 1 << 20


def _read_table(image: int, path: str) -> list[list[str]]:
    """process._read_table, on the image's file. Only a regular file is opened: a FIFO
    would block the runtime itself (with its signals held: unkillable but for SIGKILL), a
    device node would be read on the host, outside the container's cgroup. Anything but a
    regular file of sane size, a symlink into /proc, /dev or /sys, or what is not UTF-8
    raises _NotOurs: the Python child then meets it in the container."""
    try:
        fd = _open_in(image, path, os.O_PATH)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return []
        raise _NotOurs(path) from None  # /etc a file, a loop: the Python child reports it
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_TABLE or _mounted(image, fd):
            raise _NotOurs(path)
        # the same inode, now for reading (a regular file: opening it does nothing more)
        data = os.open(rootfs.fd_path(fd), os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC)
    finally:
        os.close(fd)
    try:  # what the Python child cannot decode, it reports: let it
        with open(data, encoding="utf-8") as f:
            return [line.rstrip("\n").split(":") for line in f if line.strip() and line[0] != "#"]
    except UnicodeDecodeError:
        raise _NotOurs(path) from None


def _open_candidate(image: int, cwd: str, candidate: str) -> int:
    """O_PATH fd of `candidate` (relative: from cwd) in the image, its `..` the kernel's."""
    return syscalls.openat2(image, os.path.join(cwd, candidate).lstrip("/") or ".",
                            os.O_PATH | os.O_CLOEXEC,
                            syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_MAGICLINKS)


def _stat_in(image: int, cwd: str, candidate: str):
    """os.stat of `candidate` as the container will see it (relative: from the working
    directory), following symlinks inside the root. The path is not normalized: the kernel
    takes each `..` after the symlink before it, as execve will in the container. A
    candidate that ends up under /proc, /dev or /sys (a symlink there) raises _NotOurs:
    the container sees other files there than the image has."""
    try:
        fd = _open_candidate(image, cwd, candidate)
    except OSError as e:
        if e.errno == errno.ENOENT:
            raise FileNotFoundError(e.errno, os.strerror(e.errno)) from None
        if e.errno == errno.ENOTDIR:
            raise NotADirectoryError(e.errno, os.strerror(e.errno)) from None
        raise _NotOurs(candidate) from None  # ELOOP, say: the Python child says it its way
    try:
        if _mounted(image, fd):
            raise _NotOurs(candidate)
        return os.fstat(fd)
    finally:
        os.close(fd)


def _under_mounted(path: str) -> bool:
    return any(path == m or path.startswith(m + "/") for m in MOUNTED)


def _mounted(image: int, fd: int) -> bool:
    """Whether what `fd` names (opened in the image, symlinks followed) is under /proc, /dev
    or /sys of the image, which the container sees mounted over."""
    where = os.path.relpath(os.readlink(rootfs.fd_path(fd)), os.readlink(rootfs.fd_path(image)))
    return _under_mounted("/" + where)


def _may_search(image: int, cwd: str, candidate: str, user, sets) -> bool:
    """access(X_OK) also wants search permission on each directory on the way: the
    directories the candidate is in, from the root down (as resolved in the image), each
    searched as _may_execute says, or with CAP_DAC_READ_SEARCH for root."""
    if user.uid == 0 and (sets is None or {"dac_override", "dac_read_search"} & sets["permitted"]):
        return True
    fd = _open_candidate(image, cwd, candidate)  # (found by _stat_in)
    try:
        top = os.readlink(rootfs.fd_path(image))
        directory = os.path.dirname(os.readlink(rootfs.fd_path(fd)))
    finally:
        os.close(fd)
    while True:
        if not _may_execute(os.stat(directory), user, sets):
            return False
        if directory == top or len(directory) <= len(top):
            return True
        directory = os.path.dirname(directory)


def _may_execute(st, user, sets) -> bool:
    """access(X_OK) as the container's process will ask it, after the privileges are dropped:
    root holding CAP_DAC_OVERRIDE (permitted: what access() uses for root) may run what has
    any x bit; anyone else by the owner, group or other bits that apply to them."""
    any_x = st.st_mode & 0o111
    if user.uid == 0 and (sets is None or "dac_override" in sets["permitted"]):
        return bool(any_x)
    if st.st_uid == user.uid:
        return bool(st.st_mode & 0o100)
    if st.st_gid == user.gid or st.st_gid in user.groups:
        return bool(st.st_mode & 0o010)
    return bool(st.st_mode & 0o001)
