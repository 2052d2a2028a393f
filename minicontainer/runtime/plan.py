"""Plan, then apply: the child's set-up as a list of operations (bubblewrap's SetupOp list).

    plan(spec, container, hostname, ...) -> [Op]   pure data: what the child will do, in
                                                   order; no syscall, nothing read or made
    apply(ops, Context)                            in the child: each op calls rootfs.py or
                                                   process.py, which do the work

What the plan decides is what and in which order; how each step is done stays in rootfs.py
(mounts, pivot_root, masked paths) and process.py (user, capabilities, seccomp, execve).
`minicontainer run --dry-run` prints a plan (Op.describe, one line each). The runtime's work
from outside (cgroup, the network's veth, prestart and createRuntime hooks) is not in the
plan: the child stops for it at its points (Point, runtime/protocol.py).

The ops are plain slotted classes (no dataclasses, enum or collections: start-up time).
A step that needs what an earlier one made (the root's fd, the resolved user, the
environment, the path to exec) finds it in the Context, which carries it from op to op.
"""
from __future__ import annotations

import os

from minicontainer.kernel import syscalls, trace
from minicontainer.runtime import process, protocol, rootfs


class Context:
    """One child's set-up while its plan is applied: what it is given (the spec, the
    container's paths, the channel to the runtime, the seccomp filter, the pty's size, the
    exec fifo) and what the ops make on the way (the root and its fd, the user, ...)."""

    __slots__ = ("spec", "container", "channel", "seccomp_filter", "winsize", "fifo",
                 "root", "root_fd", "came_with", "slave", "user", "env", "cwd", "path",
                 "start_state")

    def __init__(self, spec, container, channel, seccomp_filter=None, winsize=None):
        self.spec, self.container, self.channel = spec, container, channel
        self.seccomp_filter, self.winsize = seccomp_filter, winsize
        self.fifo = self.root = self.root_fd = self.slave = self.user = self.env = None
        self.cwd = self.path = self.start_state = None
        self.came_with = []


class Op:
    """One step. phase: the trace phase it opens (kernel/trace.py), if it opens one."""

    __slots__ = ()
    phase = None

    def __init__(self, *values):
        if len(values) != len(self.__slots__):  # zip(strict=True) is Python 3.10+
            raise TypeError(f"{type(self).__name__} takes {len(self.__slots__)} values")
        for name, value in zip(self.__slots__, values):
            setattr(self, name, value)

    def __eq__(self, other):
        return type(self) is type(other) and all(
            getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(repr(getattr(self, n)) for n in self.__slots__)})"

    def describe(self) -> str:
        raise NotImplementedError

    def apply(self, c: Context) -> None:
        raise NotImplementedError


# --- namespaces and the runtime's points -----------------------------------------------

class JoinNamespaces(Op):
    """Namespaces given by path (container:NAME, an OCI config): all opened first, the mount
    namespace joined last (after it, paths name another tree); pid was joined at the fork."""
    __slots__ = ("paths",)

    def describe(self):
        return "join namespaces " + ", ".join(f"{ns}={self.paths[ns]}" for ns in _join_order(self.paths))

    def apply(self, c):
        joined = {ns: os.open(path, os.O_RDONLY | os.O_CLOEXEC) for ns, path in self.paths.items()}
        for ns in _join_order(joined):
            syscalls.setns(joined[ns], syscalls.NAMESPACE_FLAGS[ns])
            os.close(joined[ns])


def _join_order(namespaces):
    return sorted(namespaces, key=lambda ns: ns == "mnt")


class Unshare(Op):
    """New namespaces but pid (made by clone3). Born in its cgroup, the child's cgroup
    namespace is rooted there."""
    __slots__ = ("namespaces",)

    def describe(self):
        return "unshare " + (" ".join(self.namespaces) or "nothing (every namespace joined)")

    def apply(self, c):
        flags = 0
        for ns in self.namespaces:
            flags |= syscalls.NAMESPACE_FLAGS[ns]
        syscalls.unshare(flags)


class Point(Op):
    """Stop: tell the runtime we reached this point and wait for its go-on (protocol.py)."""
    __slots__ = ("byte", "why")

    def describe(self):
        return f"stop at point {self.byte.decode()!r}: {self.why}"

    def apply(self, c):
        c.channel.point(self.byte)


class EndPoints(Op):
    __slots__ = ()

    def describe(self):
        return "no more stops: close the ready pipe (the runtime stops waiting)"

    def apply(self, c):
        c.channel.end_points()


class SetHostname(Op):
    __slots__ = ("name",)

    def describe(self):
        return f"set the hostname to {self.name}"

    def apply(self, c):
        syscalls.sethostname(self.name)


class SetDomainname(Op):
    __slots__ = ("name",)

    def describe(self):
        return f"set the domain name to {self.name}"

    def apply(self, c):
        syscalls.setdomainname(self.name)


class LoopbackUp(Op):
    __slots__ = ()
    phase = "network"

    def describe(self):
        return "bring lo up in the new network namespace"

    def apply(self, c):
        syscalls.loopback_up()


# --- the root filesystem ----------------------------------------------------------------

class MakeMountsPrivate(Op):
    __slots__ = ()
    phase = "rootfs"

    def describe(self):
        return "make every mount a slave of the host's (rslave): nothing propagates back"

    def apply(self, c):
        rootfs.make_mounts_private()


class MountRoot(Op):
    """The container's root at its mount point (rootfs.mount_root decides how, from the
    spec: kind and options only say it); remember: the submounts it came with, for
    ReadonlyRoot (an OCI read-only root)."""
    __slots__ = ("kind", "source", "target", "options", "remember")

    def describe(self):
        what = "mount overlay" if self.kind == "overlay" else f"bind {self.source}"
        return f"{what} on {self.target} ({self.options})"

    def apply(self, c):
        c.root = rootfs.mount_root(c.spec, c.container)
        # Every mount below is resolved inside the root through this fd (rootfs.resolve).
        c.root_fd = rootfs.open_root(c.root)
        if self.remember:
            c.came_with = rootfs.submounts(c.root)


class SystemMount(Op):
    """One of rootfs.SYSTEM_MOUNTS (`run`'s /proc, /dev, /sys)."""
    __slots__ = ("entry",)

    def describe(self):
        path, source, fstype, flags, data = self.entry
        extra = ", then runc's device nodes and links" if path == "/dev" else ""
        return f"mount {fstype} on {path} ({_options(flags, data)}){extra}"

    def apply(self, c):
        rootfs.mount_system(c.root_fd, (self.entry,))


class UserMount(Op):
    """A spec.Mount: -v, --tmpfs, the network's /etc/hosts, an OCI config's mounts."""
    __slots__ = ("mount",)

    def describe(self):
        m = self.mount
        flags = m.flags | (syscalls.MS_RDONLY if m.readonly else 0)
        if m.kind == "bind":
            what = f"bind {m.source} on {m.target}"
            options = _options(flags, None, ["recursive"] if m.recursive else [])
        else:
            what = f"mount {m.kind} on {m.target}"
            options = _options(flags, m.options, ["tmpcopyup"] if m.copy_up else [])
        options += "".join(f",{_propagation(p)}" for p in m.propagation)
        return f"{what} ({options.lstrip(',')})" if options else what

    def apply(self, c):
        rootfs.mount_user_mounts(c.root_fd, [self.mount])


class MakeDevice(Op):
    """An OCI linux.devices node."""
    __slots__ = ("node",)

    def describe(self):
        path, kind, major, minor, mode, uid, gid = self.node
        return f"make device {path} ({kind} {major}:{minor}, mode {mode:04o}, owner {uid}:{gid})"

    def apply(self, c):
        rootfs.oci_extras(c.root_fd, [self.node])


class OpenConsole(Op):
    """-t: the pty from the container's own devpts; its master goes to the runtime."""
    __slots__ = ()

    def describe(self):
        return "open a pty in the container's devpts, hand its master to the runtime"

    def apply(self, c):
        from minicontainer.runtime import terminal  # preloaded: no file read

        master, c.slave = terminal.open_console(c.root_fd, c.winsize)
        c.channel.console.send(master)


class ContainerHooks(Op):
    """An OCI config's hooks: createContainer now, in the container before pivot_root; the
    state startContainer hooks will get, while json can still be imported."""
    __slots__ = ("count",)

    def describe(self):
        return f"run {self.count} createContainer hook(s)"

    def apply(self, c):
        from minicontainer.runtime import hooks  # preloaded: no file read

        hooks.run("createContainer", c.spec.hooks.get("createContainer") or [],
                  hooks.state(c.container, "creating", os.getpid()))
        c.start_state = hooks.state(c.container, "created", os.getpid())


class ReadonlyRoot(Op):
    """OCI root.readonly: after the hooks, which may write (runc: after pivot_root)."""
    __slots__ = ()

    def describe(self):
        return "remount the root and the mounts it came with read-only"

    def apply(self, c):
        rootfs.finish_readonly_root(c.root, c.came_with)


class SwitchRoot(Op):
    __slots__ = ("pivot", "target")

    def describe(self):
        if self.pivot:
            return f"pivot_root into {self.target}, detach the host's root"
        return f"chroot into {self.target} (teaching mode: the host's tree stays mounted)"

    def apply(self, c):
        os.close(c.root_fd)
        rootfs.switch_root(c.root, self.pivot)


class Sysctl(Op):
    __slots__ = ("key", "value")

    def describe(self):
        return f"sysctl {self.key}={self.value}"

    def apply(self, c):
        rootfs.write_sysctls({self.key: self.value})


class MaskPath(Op):
    __slots__ = ("path",)

    def describe(self):
        return f"mask {self.path} (if present)"

    def apply(self, c):
        rootfs.mask_paths([self.path], [])


class ReadonlyPath(Op):
    __slots__ = ("path",)

    def describe(self):
        return f"make {self.path} read-only (if present)"

    def apply(self, c):
        rootfs.mask_paths([], [self.path])


class RootPropagation(Op):
    __slots__ = ("flags",)

    def describe(self):
        return f"make / {_propagation(self.flags)} (OCI rootfsPropagation)"

    def apply(self, c):
        rootfs.set_root_propagation(self.flags)


# --- the process ------------------------------------------------------------------------

class SetUser(Op):
    """Resolved in the container's /etc/passwd and /etc/group (after switch_root)."""
    __slots__ = ("user", "groups")
    phase = "process"

    def describe(self):
        groups = "" if self.groups is None else f", groups {self.groups}"
        return f"look up user {self.user or '0'} in the container's /etc/passwd{groups}"

    def apply(self, c):
        c.user = process.resolve_user(self.user, self.groups)


class Environment(Op):
    __slots__ = ("env", "hostname", "terminal")

    def describe(self):
        defaults = "PATH HOSTNAME HOME" + (" TERM" if self.terminal else "")
        return f"environment: {defaults}" + (f", then {' '.join(self.env)}" if self.env else "")

    def apply(self, c):
        c.env = process.build_env(self.env, self.hostname, c.user, self.terminal)


class OpenWorkdir(Op):
    __slots__ = ("cwd",)

    def describe(self):
        return f"open the working directory {self.cwd} inside the root (made if missing)"

    def apply(self, c):
        c.cwd = rootfs.open_workdir(self.cwd)


class SessionLeader(Op):
    __slots__ = ()

    def describe(self):
        return "become session leader with the pty as controlling terminal"

    def apply(self, c):
        from minicontainer.runtime import terminal  # preloaded: no file read

        terminal.become_session_leader(c.slave)


class Rlimits(Op):
    __slots__ = ("rlimits",)

    def describe(self):
        return "rlimits " + ", ".join(f"{kind}={soft}:{hard}" for kind, soft, hard in self.rlimits)

    def apply(self, c):
        process.set_rlimits(self.rlimits)


class Umask(Op):
    __slots__ = ("mask",)

    def describe(self):
        return f"umask {self.mask:04o}"

    def apply(self, c):
        os.umask(self.mask)


class OomScoreAdj(Op):
    __slots__ = ("value",)

    def describe(self):
        return f"oom_score_adj {self.value}"

    def apply(self, c):
        process.set_oom_score_adj(self.value)


class OutliveRuntime(Op):
    __slots__ = ()

    def describe(self):
        return "outlive whoever made us: PR_SET_PDEATHSIG 0"

    def apply(self, c):
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, 0)


class SessionKeyring(Op):
    __slots__ = ()

    def describe(self):
        return "join a new, empty session keyring"

    def apply(self, c):
        process.isolate_keyring(c.spec.security)


class Seccomp(Op):
    """process.load_seccomp: with no_new_privs as late as can be, else while CAP_SYS_ADMIN
    is held."""
    __slots__ = ("profile", "late")

    def describe(self):
        what = "docker's default profile" if self.profile == "default" else "the given profile"
        when = "" if self.late else " (without no_new_privs: while CAP_SYS_ADMIN is held)"
        return f"load the seccomp filter: {what}{when}"

    def apply(self, c):
        process.load_seccomp(c.seccomp_filter, c.spec.security, self.late)


class DropPrivileges(Op):
    __slots__ = ("capabilities", "sets", "no_new_privs")

    def describe(self):
        if self.sets is not None:
            caps = "; ".join(f"{kind} {','.join(sorted(names)) or 'none'}"
                             for kind, names in sorted(self.sets.items()))
        else:
            caps = ",".join(sorted(self.capabilities)) or "none"
        return (f"become the user (groups, gid, uid); capabilities {caps}" +
                ("; no_new_privs" if self.no_new_privs else ""))

    def apply(self, c):
        process.drop_privileges(c.user, c.spec.security)


class Chdir(Op):
    __slots__ = ()

    def describe(self):
        return "change to the working directory (fchdir: no second lookup)"

    def apply(self, c):
        os.chdir(c.cwd)
        os.close(c.cwd)


class FindExecutable(Op):
    __slots__ = ("command",)
    phase = "exec"

    def describe(self):
        return f"find {self.command} in the container's $PATH" if "/" not in self.command else \
            f"check that {self.command} can be executed"

    def apply(self, c):
        c.path = process.find_executable(self.command, c.env.get("PATH", ""))


class WaitForStart(Op):
    """OCI create: what exec would fail on has been checked; now wait for `start`."""
    __slots__ = ("start_hooks",)

    def describe(self):
        hooks = f", then run {self.start_hooks} startContainer hook(s)" if self.start_hooks else ""
        return f"close the error pipe (create is done) and wait at the exec fifo for start{hooks}"

    def apply(self, c):
        c.channel.close_error_pipe()
        protocol.wait_for_start(c.fifo, c.spec.hooks.get("startContainer"), c.start_state)


class Init(Op):
    """--init: stay PID 1, run the command as our child (process.run_as_init)."""
    __slots__ = ("args",)

    def describe(self):
        return f"stay PID 1 as init: execve {' '.join(self.args)} in a child, forward " \
            "signals, reap zombies"

    def apply(self, c):
        process.run_as_init(c.path, self.args, c.env, c.channel, c.slave is not None)


class Exec(Op):
    __slots__ = ("args", "preserve_fds")

    def describe(self):
        fds = f" (fds 3..{2 + self.preserve_fds} kept)" if self.preserve_fds else ""
        return f"execve {' '.join(self.args)}{fds}"

    def apply(self, c):
        protocol.restore_signals(c.channel.unblocked)  # held since before the fork (launch)
        process.exec_command(c.path, self.args, c.env, self.preserve_fds)


# --- the plan ---------------------------------------------------------------------------

def parent_hooks(spec) -> bool:
    """prestart and createRuntime: run by the runtime while the child stops (point "h")."""
    return bool(spec.hooks.get("prestart") or spec.hooks.get("createRuntime"))


def plan(spec, container, hostname: str, outside: bool = False, foreground: bool = True,
         create: bool = False) -> list:
    """The child's set-up for `spec`, in order, from unshare to execve. container: its
    paths (rootfs, upper, work); hostname: the one it gets (the spec's, else the short id);
    outside: the runtime has steps to do from outside once the namespaces exist (a veth);
    foreground: the container dies with its runtime; create: OCI create, wait for start."""
    p = spec.process
    sec = spec.security
    ops = []
    joined = {ns: path for ns, path in spec.namespace_paths.items() if ns != "pid"}
    if joined:
        ops.append(JoinNamespaces(joined))
    ops.append(Unshare(tuple(ns for ns in spec.namespaces if ns != "pid")))
    hooks = parent_hooks(spec)
    points = outside or hooks
    if points:
        ops.append(Point(b"r", "the runtime wires the network from outside" if outside else
                         "it has its namespaces"))
    if "uts" in spec.namespaces or ("uts" in spec.namespace_paths and spec.hostname):
        ops.append(SetHostname(hostname))
    if spec.domainname:  # oci.py: only with a uts namespace of its own
        ops.append(SetDomainname(spec.domainname))
    if "net" in spec.namespaces:
        ops.append(LoopbackUp())

    ops.append(MakeMountsPrivate())
    root = spec.root
    bundle_readonly = root.readonly and not root.overlay
    if root.overlay and not root.readonly:
        ops.append(MountRoot("overlay", root.path, container.rootfs,
                             f"lowerdir={root.path},upperdir={container.upper},"
                             f"workdir={container.work},volatile", False))
    else:
        ops.append(MountRoot("bind", root.path, container.rootfs,
                             "recursive, read-only all the way down" if root.readonly and
                             root.overlay else "recursive", bundle_readonly))
    if spec.system_mounts:
        ops += [SystemMount(entry) for entry in rootfs.SYSTEM_MOUNTS]
    ops += [UserMount(m) for m in spec.mounts]
    ops += [MakeDevice(node) for node in spec.devices]
    if p.terminal:
        ops.append(OpenConsole())
    if hooks:
        ops.append(Point(b"h", "the runtime runs the prestart and createRuntime hooks"))
    if points:
        ops.append(EndPoints())
    if spec.hooks:
        ops.append(ContainerHooks(len(spec.hooks.get("createContainer") or [])))
    if bundle_readonly:
        ops.append(ReadonlyRoot())
    ops.append(SwitchRoot(root.pivot_root, container.rootfs))
    ops += [Sysctl(key, value) for key, value in spec.sysctl.items()]
    masked = rootfs.MASKED_PATHS if spec.masked_paths is None else spec.masked_paths
    readonly = rootfs.READONLY_PATHS if spec.readonly_paths is None else spec.readonly_paths
    ops += [MaskPath(path) for path in masked]
    ops += [ReadonlyPath(path) for path in readonly]
    if spec.rootfs_propagation:
        ops.append(RootPropagation(spec.rootfs_propagation))

    ops += [SetUser(p.user, p.groups), Environment(p.env, hostname, p.terminal),
            OpenWorkdir(p.cwd or "/")]
    if p.terminal:
        ops.append(SessionLeader())
    if p.rlimits:
        ops.append(Rlimits(p.rlimits))
    if p.umask is not None:
        ops.append(Umask(p.umask))
    if p.oom_score_adj is not None:
        ops.append(OomScoreAdj(p.oom_score_adj))
    if not foreground:
        ops.append(OutliveRuntime())
    if sec.new_keyring:
        ops.append(SessionKeyring())
    if sec.seccomp is not None and not sec.no_new_privs:
        ops.append(Seccomp(sec.seccomp, False))
    ops += [DropPrivileges(sec.capabilities, sec.sets, sec.no_new_privs), Chdir(),
            FindExecutable(p.args[0])]
    if create:
        ops.append(WaitForStart(len(spec.hooks.get("startContainer") or [])))
    if sec.seccomp is not None and sec.no_new_privs:
        ops.append(Seccomp(sec.seccomp, True))  # --init: both it and the command filtered
    ops.append(Init(p.args) if p.init else Exec(p.args, p.preserve_fds))
    return ops


def has_points(ops) -> bool:
    """Whether the child will stop for the runtime (it then needs a ready pipe)."""
    return any(type(op) is Point for op in ops)


def apply(ops, c: Context) -> None:
    """The interpreter: each op in order, each phase marked in the trace as it starts."""
    for op in ops:
        if op.phase:
            trace.phase(op.phase)
        op.apply(c)


def describe(ops) -> list[str]:
    """One numbered line per op, as `run --dry-run` prints them."""
    width = len(str(len(ops)))
    return [f"{i:>{width}}  {op.describe()}" for i, op in enumerate(ops, 1)]


# --- words for flags --------------------------------------------------------------------

# MS_* flags as mount -o spells them, in its order
_FLAG_WORDS = ((syscalls.MS_RDONLY, "ro"), (syscalls.MS_NOSUID, "nosuid"),
               (syscalls.MS_NODEV, "nodev"), (syscalls.MS_NOEXEC, "noexec"),
               (syscalls.MS_NOATIME, "noatime"), (syscalls.MS_NODIRATIME, "nodiratime"),
               (syscalls.MS_RELATIME, "relatime"), (syscalls.MS_STRICTATIME, "strictatime"))
_PROPAGATION_WORDS = ((syscalls.MS_SHARED, "shared"), (syscalls.MS_SLAVE, "slave"),
                      (syscalls.MS_PRIVATE, "private"), (syscalls.MS_UNBINDABLE, "unbindable"))


def _options(flags: int, data, extra=()) -> str:
    words = [word for flag, word in _FLAG_WORDS if flags & flag] + list(extra)
    if data:
        words.append(data)
    return ",".join(words)


def _propagation(flags: int) -> str:
    rec = "r" if flags & syscalls.MS_REC else ""
    return ",".join(rec + word for flag, word in _PROPAGATION_WORDS if flags & flag)
