"""Typed wrappers over the syscalls Python's os module lacks, through one choke point.

Every call goes through `_call`, which raises SyscallError naming the call, its arguments and
errno when the kernel says no, and narrates the call on stderr when tracing is on
(`minicontainer --trace run ...`, kernel/trace.py). No policy lives here: the runtime
decides what to call.

`_call` is also the seam for unit tests: inside `with recording() as calls:` no call reaches
the kernel; each is appended to `calls` as (name, args) and answered by a Recorder (youki's
test Syscall implementation), so a test can assert the exact sequence a launch step issues
without root (tests/unit/test_sequences.py).
"""
from __future__ import annotations

import os

import _signal  # the C module under `signal` (which would import enum): the signals' numbers

from minicontainer.kernel import trace
from minicontainer.kernel._kernel import ffi, lib

# Namespace flags for unshare(2)/setns(2).
CLONE_NEWNS = lib.CLONE_NEWNS
CLONE_NEWUTS = lib.CLONE_NEWUTS
CLONE_NEWIPC = lib.CLONE_NEWIPC
CLONE_NEWUSER = lib.CLONE_NEWUSER
CLONE_NEWPID = lib.CLONE_NEWPID
CLONE_NEWNET = lib.CLONE_NEWNET
CLONE_NEWCGROUP = lib.CLONE_NEWCGROUP
CLONE_NEWTIME = lib.CLONE_NEWTIME

# Mount flags for mount(2)/umount2(2).
MS_RDONLY = lib.MS_RDONLY
MS_NOSUID = lib.MS_NOSUID
MS_NODEV = lib.MS_NODEV
MS_NOEXEC = lib.MS_NOEXEC
MS_REMOUNT = lib.MS_REMOUNT
MS_BIND = lib.MS_BIND
MS_MOVE = lib.MS_MOVE
MS_REC = lib.MS_REC
MS_PRIVATE = lib.MS_PRIVATE
MS_SLAVE = lib.MS_SLAVE
MS_STRICTATIME = lib.MS_STRICTATIME
MS_RELATIME = lib.MS_RELATIME
MNT_DETACH = lib.MNT_DETACH

PR_SET_PDEATHSIG = lib.PR_SET_PDEATHSIG
PR_SET_NO_NEW_PRIVS = lib.PR_SET_NO_NEW_PRIVS
PR_GET_NO_NEW_PRIVS = lib.PR_GET_NO_NEW_PRIVS
PR_SET_CHILD_SUBREAPER = lib.PR_SET_CHILD_SUBREAPER
PR_CAP_AMBIENT = lib.PR_CAP_AMBIENT
PR_CAP_AMBIENT_CLEAR_ALL = lib.PR_CAP_AMBIENT_CLEAR_ALL
PR_SET_KEEPCAPS = lib.PR_SET_KEEPCAPS
PR_SET_DUMPABLE = lib.PR_SET_DUMPABLE

# clone3: the child's parent is our parent (exec's visible child belongs to the runtime)
CLONE_PARENT = lib.CLONE_PARENT
# clone3: the child starts in the cgroup given by fd (linux/sched.h). mc_fork (_build.py) sets
# it itself when given a cgroup fd; named here so that the trace can say so.
CLONE_INTO_CGROUP = 0x200000000
CLOSE_RANGE_CLOEXEC = lib.CLOSE_RANGE_CLOEXEC
PR_CAP_AMBIENT_RAISE = lib.PR_CAP_AMBIENT_RAISE
PR_CAPBSET_READ = lib.PR_CAPBSET_READ
PR_CAPBSET_DROP = lib.PR_CAPBSET_DROP

NAMESPACE_FLAGS = {
    "mnt": CLONE_NEWNS,
    "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC,
    "user": CLONE_NEWUSER,
    "pid": CLONE_NEWPID,
    "net": CLONE_NEWNET,
    "cgroup": CLONE_NEWCGROUP,
    "time": CLONE_NEWTIME,
}

_CLONE_NAMES = {v: f"CLONE_NEW{k.upper() if k != 'mnt' else 'NS'}" for k, v in NAMESPACE_FLAGS.items()}
_CLONE_NAMES[CLONE_PARENT] = "CLONE_PARENT"
_CLONE_NAMES[CLONE_INTO_CGROUP] = "CLONE_INTO_CGROUP"
_MOUNT_NAMES = {MS_RDONLY: "MS_RDONLY", MS_NOSUID: "MS_NOSUID", MS_NODEV: "MS_NODEV",
                MS_NOEXEC: "MS_NOEXEC", MS_REMOUNT: "MS_REMOUNT", MS_BIND: "MS_BIND",
                MS_MOVE: "MS_MOVE", MS_REC: "MS_REC", MS_PRIVATE: "MS_PRIVATE",
                MS_SLAVE: "MS_SLAVE", MS_STRICTATIME: "MS_STRICTATIME", MS_RELATIME: "MS_RELATIME"}
_UMOUNT_NAMES = {MNT_DETACH: "MNT_DETACH"}
_PRCTL_NAMES = {PR_SET_PDEATHSIG: "PR_SET_PDEATHSIG", PR_SET_NO_NEW_PRIVS: "PR_SET_NO_NEW_PRIVS",
                PR_CAP_AMBIENT: "PR_CAP_AMBIENT", PR_SET_KEEPCAPS: "PR_SET_KEEPCAPS",
                PR_SET_CHILD_SUBREAPER: "PR_SET_CHILD_SUBREAPER", PR_SET_DUMPABLE: "PR_SET_DUMPABLE",
                PR_CAPBSET_DROP: "PR_CAPBSET_DROP", PR_CAPBSET_READ: "PR_CAPBSET_READ"}
_PRCTL_NAMES[PR_GET_NO_NEW_PRIVS] = "PR_GET_NO_NEW_PRIVS"
# The signals a trace may show by name (PR_SET_PDEATHSIG's); 0 is "none".
_SIGNAL_NAMES = {0: "0", _signal.SIGKILL: "SIGKILL", _signal.SIGTERM: "SIGTERM",
                 _signal.SIGINT: "SIGINT", _signal.SIGHUP: "SIGHUP", _signal.SIGQUIT: "SIGQUIT"}
# Capabilities by number (linux/capability.h; fixed by the kernel's ABI), for PR_CAPBSET_*.
_CAP_NAMES = dict(enumerate((
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE")))
_PRCTL_ARG2 = {PR_SET_PDEATHSIG: _SIGNAL_NAMES, PR_CAPBSET_READ: _CAP_NAMES,
               PR_CAPBSET_DROP: _CAP_NAMES,
               PR_CAP_AMBIENT: {PR_CAP_AMBIENT_CLEAR_ALL: "PR_CAP_AMBIENT_CLEAR_ALL"}}
_OPEN_NAMES = {getattr(os, n): n for n in (
    "O_CREAT", "O_EXCL", "O_NOCTTY", "O_TRUNC", "O_APPEND", "O_NONBLOCK", "O_DIRECTORY",
    "O_NOFOLLOW", "O_CLOEXEC", "O_PATH")}
# (call, argument index) -> how to spell that argument in a trace: {bit: name}, or a function
_FLAG_ARGS = {("unshare", 0): _CLONE_NAMES, ("clone3", 0): _CLONE_NAMES,
              ("setns", 1): _CLONE_NAMES, ("mount", 3): _MOUNT_NAMES,
              ("umount2", 1): _UMOUNT_NAMES, ("prctl", 0): _PRCTL_NAMES,
              ("close_range", 2): {CLOSE_RANGE_CLOEXEC: "CLOSE_RANGE_CLOEXEC"}}


class SyscallError(OSError):
    """A syscall failed: carries the call, its arguments and errno."""

    def __init__(self, call: str, args: tuple, err: int):
        super().__init__(err, None)
        self.call = call
        self.call_args = args
        self._message = None

    # The message is spelled out when someone reads it, not when the call fails: the secure
    # join (runtime/rootfs.py) expects ENOENT for a missing mount point on every start, and
    # formatting it (the errno module's first import, repr of each argument) cost ~1 ms.
    @property
    def strerror(self) -> str:
        if self._message is None:
            shown = ", ".join(_show(a) for a in self.call_args)
            self._message = (f"{self.call}({shown}) failed: {os.strerror(self.errno)} "
                             f"[{_errno_name(self.errno)}]")
        return self._message

    @strerror.setter
    def strerror(self, text: str) -> None:
        self._message = text

    def __str__(self) -> str:
        return self.strerror


def _errno_name(err: int) -> str:
    import errno

    return errno.errorcode.get(err, str(err))


def _show(value) -> str:
    if isinstance(value, int) and value > 0xFF:
        return hex(value)
    return repr(value)


def _flag_names(value: int, names: dict[int, str]) -> trace.Name:
    """`value` as NAME|NAME|0xrest; a name of several bits (MOUNT_ATTR__ATIME) takes them
    only all together, and first, so their single-bit names are not shown as well."""
    parts, rest = [], value
    for bits, name in names.items():
        if bits and rest & bits == bits:
            parts.append(name)
            rest &= ~bits
    if rest:
        parts.append(hex(rest))
    return trace.Name("|".join(parts) or "0")


def _open_flags(value: int) -> trace.Name:
    names = _flag_names(value & ~3, _OPEN_NAMES)
    if value & os.O_PATH:
        return names
    access = ("O_RDONLY", "O_WRONLY", "O_RDWR", "0x3")[value & 3]
    return trace.Name(access if names == "0" else f"{access}|{names}")


def _spell(name: str, args: tuple) -> list:
    """The arguments of a call as a trace shows them: flags and constants by name."""
    if name == "prctl":  # the meaning of arg2 depends on the option; trailing zeros dropped
        option, arg2, arg3 = args
        spell = _PRCTL_ARG2.get(option)
        return [trace.Name(_PRCTL_NAMES.get(option, str(option))),
                trace.Name(spell.get(arg2, str(arg2))) if spell else arg2] + ([arg3] if arg3 else [])
    if name == "clone3":  # the C helper adds CLONE_INTO_CGROUP when given a cgroup fd
        flags, fd = args
        if fd < 0:
            return [_flag_names(flags, _CLONE_NAMES)]
        try:
            where = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # a recorded call in a unit test may name no real fd
            where = str(fd)
        return [_flag_names(flags | CLONE_INTO_CGROUP, _CLONE_NAMES),
                trace.Name(f"cgroup={trace.short_ids(where)}")]
    shown = []
    for i, a in enumerate(args):
        spell = _FLAG_ARGS.get((name, i))
        if spell is None or not isinstance(a, int):
            shown.append(a)
        else:
            shown.append(spell(a) if callable(spell) else _flag_names(a, spell))
    return shown


def _trace(name: str, rc: int, args: tuple, err: int) -> None:
    """One line per call, flags spelled out, so `--trace` reads like the docs."""
    trace.call(name, _spell(name, args), rc, _errno_name(err) if rc == -1 else None)


def note(text: str) -> None:
    """Narrate a step made outside this module (python-prctl) in the trace."""
    trace.note(text)


def narrate(name: str, args=(), result=None) -> None:
    """Narrate one call made outside this module (os.execve, os.setuid) as a call."""
    trace.call(name, args, result)


class Recorder:
    """Stands in for the kernel behind `_call`: records (name, args) of every call and
    answers it. results: {name: return value, or a function of the args} (default 0; give
    clone3 a pid, or the caller takes itself for the child); errors: {name: errno} makes that
    call fail as the kernel would, raising SyscallError; passthrough: names of calls that
    only look (openat2 with O_PATH) and are made for real, and recorded, so that the code
    under test gets real descriptors."""

    def __init__(self, results: dict | None = None, errors: dict | None = None,
                 passthrough=()):
        self.calls: list[tuple[str, tuple]] = []
        self.results = results or {}
        self.errors = errors or {}
        self.passthrough = frozenset(passthrough)

    def call(self, name: str, args: tuple) -> tuple[int, int]:
        self.calls.append((name, args))
        if name in self.errors:
            return -1, self.errors[name]
        value = self.results.get(name, 0)
        return (value(args) if callable(value) else value), 0


_recorder: Recorder | None = None


class recording:
    """`with recording(Recorder(...)) as calls:` routes every call to the recorder (for unit
    tests only: nothing reaches the kernel), and yields its list of calls."""

    def __init__(self, recorder: Recorder | None = None):
        self.recorder = recorder or Recorder()

    def __enter__(self) -> list:
        global _recorder
        if _recorder is not None:
            raise RuntimeError("already recording")
        _recorder = self.recorder
        return self.recorder.calls

    def __exit__(self, *exc) -> None:
        global _recorder
        _recorder = None


def is_recording() -> bool:
    """Whether calls go to a recorder now (runtime/native.py then leaves the plan to Python,
    whose every call the recorder sees)."""
    return _recorder is not None


def _call(name: str, fn, cargs: tuple, args: tuple) -> int:
    """The choke point: make the call (fn(*cargs): C arguments) or let the recorder answer
    it, trace it (args: the Python arguments, as shown), turn a -1 into a SyscallError."""
    if _recorder is None or name in _recorder.passthrough:
        rc = fn(*cargs)
        err = ffi.errno if rc == -1 else 0
        if _recorder is not None:
            _recorder.calls.append((name, args))
    else:
        rc, err = _recorder.call(name, args)
    if trace.enabled:
        _trace(name, rc, args, err)
    if rc == -1:
        raise SyscallError(name, args, err)
    return rc


def _c(s: str | None):
    """Paths and arguments are bytes to the kernel: a non-UTF-8 name (carried in a str by
    Python's surrogateescape) goes back to its own bytes."""
    return ffi.NULL if s is None else os.fsencode(s)


def unshare(flags: int) -> None:
    _call("unshare", lib.unshare, (flags,), (flags,))


def setns(fd: int, nstype: int = 0) -> None:
    _call("setns", lib.setns, (fd, nstype), (fd, nstype))


def mount(source: str | None, target: str, fstype: str | None = None, flags: int = 0,
          data: str | None = None) -> None:
    _call("mount", lib.mount, (_c(source), _c(target), _c(fstype), flags, _c(data)),
          (source, target, fstype, flags, data))


def umount2(target: str, flags: int = 0) -> None:
    _call("umount2", lib.umount2, (_c(target), flags), (target, flags))


def pivot_root(new_root: str, put_old: str) -> None:
    _call("pivot_root", lib.mc_pivot_root, (_c(new_root), _c(put_old)),
          (new_root, put_old))


def fork(flags: int = 0, cgroup_fd: int = -1) -> int:
    """fork() through clone3: the child starts in the new namespaces in `flags` (CLONE_NEWPID
    makes it PID 1 of a new pid namespace) and, given a cgroup directory fd, in that cgroup.
    Returns 0 in the child and the child's pid in the parent."""
    return _call("clone3", lib.mc_fork, (flags, cgroup_fd), (flags, cgroup_fd))


def sethostname(name: str) -> None:
    raw = _c(name)
    _call("sethostname", lib.sethostname, (raw, len(raw)), (name,))


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _call("prctl", lib.prctl, (option, arg2, arg3, arg4, arg5), (option, arg2, arg3))


def loopback_up() -> None:
    _call("ioctl", lib.mc_loopback_up, (),
          ("lo", trace.Name("SIOCSIFFLAGS"), trace.Name("IFF_UP")))


def open_pty(ptmx: str) -> tuple[int, int]:
    """Open a pty pair from the devpts instance whose ptmx is given; returns (master, slave)."""
    fds = ffi.new("int[2]")
    _call("open_pty", lib.mc_open_pty, (_c(ptmx), fds, fds + 1), (ptmx,))
    return fds[0], fds[1]


def init_supervise(child: int) -> int:
    """Run the --init loop (see _build.py) until `child` exits; returns its shell status."""
    return lib.mc_init_supervise(child)


# ---- Mount targets resolved inside the root, and the new mount API (runtime/rootfs.py) ----
MS_SHARED = lib.MS_SHARED
MS_UNBINDABLE = lib.MS_UNBINDABLE
MS_NOATIME = lib.MS_NOATIME
MS_NODIRATIME = lib.MS_NODIRATIME
_MOUNT_NAMES.update({MS_SHARED: "MS_SHARED", MS_UNBINDABLE: "MS_UNBINDABLE",
                     MS_NOATIME: "MS_NOATIME", MS_NODIRATIME: "MS_NODIRATIME"})
RESOLVE_NO_MAGICLINKS = lib.MC_RESOLVE_NO_MAGICLINKS
RESOLVE_NO_SYMLINKS = lib.MC_RESOLVE_NO_SYMLINKS
RESOLVE_IN_ROOT = lib.MC_RESOLVE_IN_ROOT
AT_RECURSIVE = lib.MC_AT_RECURSIVE
OPEN_TREE_CLONE = lib.MC_OPEN_TREE_CLONE
MOUNT_ATTR_RDONLY = lib.MC_MOUNT_ATTR_RDONLY
MOUNT_ATTR_NOSUID = lib.MC_MOUNT_ATTR_NOSUID
MOUNT_ATTR_NODEV = lib.MC_MOUNT_ATTR_NODEV
MOUNT_ATTR_NOEXEC = lib.MC_MOUNT_ATTR_NOEXEC
MOUNT_ATTR__ATIME = lib.MC_MOUNT_ATTR__ATIME
MOUNT_ATTR_RELATIME = lib.MC_MOUNT_ATTR_RELATIME
MOUNT_ATTR_NOATIME = lib.MC_MOUNT_ATTR_NOATIME
MOUNT_ATTR_STRICTATIME = lib.MC_MOUNT_ATTR_STRICTATIME
MOUNT_ATTR_NODIRATIME = lib.MC_MOUNT_ATTR_NODIRATIME
AT_EMPTY_PATH = 0x1000  # fcntl.h
_MOUNT_ATTR_NAMES = {MOUNT_ATTR_RDONLY: "MOUNT_ATTR_RDONLY", MOUNT_ATTR_NOSUID: "MOUNT_ATTR_NOSUID",
                     MOUNT_ATTR_NODEV: "MOUNT_ATTR_NODEV", MOUNT_ATTR_NOEXEC: "MOUNT_ATTR_NOEXEC",
                     MOUNT_ATTR__ATIME: "MOUNT_ATTR__ATIME",
                     MOUNT_ATTR_NOATIME: "MOUNT_ATTR_NOATIME",
                     MOUNT_ATTR_STRICTATIME: "MOUNT_ATTR_STRICTATIME",
                     MOUNT_ATTR_NODIRATIME: "MOUNT_ATTR_NODIRATIME"}
_RESOLVE_NAMES = {RESOLVE_NO_MAGICLINKS: "RESOLVE_NO_MAGICLINKS",
                  RESOLVE_NO_SYMLINKS: "RESOLVE_NO_SYMLINKS", RESOLVE_IN_ROOT: "RESOLVE_IN_ROOT"}
_AT_NAMES = {AT_EMPTY_PATH: "AT_EMPTY_PATH", AT_RECURSIVE: "AT_RECURSIVE",
             OPEN_TREE_CLONE: "OPEN_TREE_CLONE"}
_FLAG_ARGS.update({("openat2", 2): _open_flags, ("openat2", 3): _RESOLVE_NAMES,
                   ("open_tree", 1): _AT_NAMES, ("mount_setattr", 1): _AT_NAMES,
                   ("mount_setattr", 2): _MOUNT_ATTR_NAMES, ("mount_setattr", 3): _MOUNT_ATTR_NAMES,
                   ("mount_setattr", 4): _MOUNT_NAMES})


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2): an fd for `path` under `dirfd`, resolved as `resolve` says (RESOLVE_*)."""
    return _call("openat2", lib.mc_openat2, (dirfd, _c(path), flags, mode, resolve),
                 (dirfd, path, flags, resolve))


def open_tree_clone(path: str, recursive: bool) -> int:
    """open_tree(2) OPEN_TREE_CLONE: a detached copy of the mount at `path` (and of every
    mount under it if recursive), as an fd, to be set up and then attached with move_mount."""
    flags = OPEN_TREE_CLONE | (AT_RECURSIVE if recursive else 0)
    return _call("open_tree", lib.mc_open_tree, (-100, _c(path), flags), (path, flags))


def move_mount(tree_fd: int, target_fd: int) -> None:
    """move_mount(2): attach a detached tree on what `target_fd` names (no path lookup)."""
    _call("move_mount", lib.mc_move_mount_fd, (tree_fd, target_fd), (tree_fd, target_fd))


def mount_setattr(fd: int, attr_set: int, attr_clr: int = 0, propagation: int = 0,
                  recursive: bool = True) -> None:
    """mount_setattr(2) on the mount `fd` names (AT_EMPTY_PATH): with recursive, on every
    mount under it too, at once."""
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    _call("mount_setattr", lib.mc_mount_setattr, (fd, b"", flags, attr_set, attr_clr, propagation),
          (fd, flags, attr_set, attr_clr, propagation))


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    """close_range(2): every fd from first to last (default: all the rest), or with
    CLOSE_RANGE_CLOEXEC marks them close-on-exec instead."""
    _call("close_range", lib.mc_close_range, (first, last, flags), (first, last, flags))


def setdomainname(name: str) -> None:
    """setdomainname(2): the NIS domain name of the current uts namespace."""
    raw = _c(name)
    _call("setdomainname", lib.setdomainname, (raw, len(raw)), (name,))


def capget() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) capability masks of this process."""
    sets = ffi.new("unsigned long long[3]")
    _call("capget", lib.mc_capget, (sets, sets + 1, sets + 2), ())
    return sets[0], sets[1], sets[2]


def capset(effective: int, permitted: int, inheritable: int) -> None:
    _call("capset", lib.mc_capset, (effective, permitted, inheritable),
          (effective, permitted, inheritable))


def bpf_device_prog_load(insns: bytes) -> int:
    """BPF_PROG_LOAD of a BPF_PROG_TYPE_CGROUP_DEVICE program (8-byte instructions); its fd.
    On failure the verifier's last word is in the error."""
    code, count = ffi.from_buffer(insns), len(insns) // 8
    try:
        return _call("bpf(BPF_PROG_LOAD)", lib.mc_bpf_device_prog_load,
                     (code, count, ffi.NULL, 0), (f"{count} insns",))
    except SyscallError as e:
        log = ffi.new("char[]", 65536)  # once more, for the verifier's explanation
        lib.mc_bpf_device_prog_load(code, count, log, 65536)
        text = ffi.string(log).decode(errors="replace").strip().splitlines()
        if text:
            e.strerror += f": {text[-1]}"
        raise


def bpf_device_attach(cgroup_fd: int, prog_fd: int) -> None:
    """BPF_PROG_ATTACH (BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI) to the cgroup's directory fd."""
    _call("bpf(BPF_PROG_ATTACH)", lib.mc_bpf_device_attach, (cgroup_fd, prog_fd),
          (cgroup_fd, prog_fd))
