"""libseccomp (build a filter, export its BPF) and seccomp(2) (install BPF), typed; plus the
session keyring. No policy: which rules a container gets is runtime/seccomp.py's business.

libseccomp reports failure as a negative errno rather than -1 and errno: `_scmp` turns that
into the same SyscallError (and --trace line) as every other call, through syscalls._call.
"""
from __future__ import annotations

import errno
import os

from minicontainer.kernel._kernel import ffi, lib
from minicontainer.kernel.syscalls import _call

ACT_KILL_PROCESS = lib.SCMP_ACT_KILL_PROCESS
ACT_KILL_THREAD = lib.SCMP_ACT_KILL_THREAD
ACT_TRAP = lib.SCMP_ACT_TRAP
ACT_LOG = lib.SCMP_ACT_LOG
ACT_ALLOW = lib.SCMP_ACT_ALLOW
ACT_NOTIFY = lib.SCMP_ACT_NOTIFY

CMP_NE = lib.SCMP_CMP_NE
CMP_LT = lib.SCMP_CMP_LT
CMP_LE = lib.SCMP_CMP_LE
CMP_EQ = lib.SCMP_CMP_EQ
CMP_GE = lib.SCMP_CMP_GE
CMP_GT = lib.SCMP_CMP_GT
CMP_MASKED_EQ = lib.SCMP_CMP_MASKED_EQ

FLAG_TSYNC = lib.SECCOMP_FILTER_FLAG_TSYNC
FLAG_LOG = lib.SECCOMP_FILTER_FLAG_LOG
FLAG_SPEC_ALLOW = lib.SECCOMP_FILTER_FLAG_SPEC_ALLOW

LIBSECCOMP_VERSION = f"{lib.SCMP_VER_MAJOR}.{lib.SCMP_VER_MINOR}.{lib.SCMP_VER_MICRO}"


def act_errno(err: int) -> int:
    """SCMP_ACT_ERRNO(err): the call fails with errno `err`."""
    return lib.MC_SCMP_ACT_ERRNO | (err & 0xFFFF)


def act_trace(value: int) -> int:
    """SCMP_ACT_TRACE(value): a ptrace tracer is notified."""
    return lib.MC_SCMP_ACT_TRACE | (value & 0xFFFF)


def _scmp(name: str, fn, cargs: tuple, args: tuple, ok: tuple = ()) -> int:
    """syscalls._call for a libseccomp function: its -errno becomes -1 and errno (an errno
    in `ok` is success)."""
    def call(*c):
        rc = fn(*c)
        if rc < 0 and -rc in ok:
            return 0
        if rc < 0:
            ffi.errno = -rc
            return -1
        return rc

    return _call(name, call, cargs, args)


def arch_token(name: str) -> int | None:
    """libseccomp's token for an architecture name ("x86_64", "x32", "aarch64"...), or None."""
    token = lib.seccomp_arch_resolve_name(name.encode())
    return token or None


def syscall_number(name: str) -> int | None:
    """The syscall's number on this architecture (a negative pseudo-number for one that only
    other architectures of the filter have), or None if libseccomp does not know the name."""
    nr = lib.seccomp_syscall_resolve_name(name.encode())
    return None if nr == -1 else nr  # __NR_SCMP_ERROR


class Filter:
    """A filter being built: seccomp_init(default_action), rules, then export_bpf()."""

    def __init__(self, default_action: int):
        self._ctx = lib.seccomp_init(default_action)
        if self._ctx == ffi.NULL:  # its only way to fail: an invalid action
            _scmp("seccomp_init", lambda: -errno.EINVAL, (), (default_action,))
        # The BPF is exported, not loaded by libseccomp: whether no_new_privs is set is the
        # runtime's decision (process.drop_privileges), never a side effect of loading.
        _scmp("seccomp_attr_set", lib.seccomp_attr_set,
              (self._ctx, lib.SCMP_FLTATR_CTL_NNP, 0), ("CTL_NNP", 0))
        # A binary tree of syscall numbers rather than a list: docker's profile loads in
        # ~0.3 ms instead of ~0.9 ms (the kernel runs the filter for every syscall number
        # when it installs it, to cache the constant answers).
        _scmp("seccomp_attr_set", lib.seccomp_attr_set,
              (self._ctx, lib.SCMP_FLTATR_CTL_OPTIMIZE, 2), ("CTL_OPTIMIZE", 2))

    def add_arch(self, token: int) -> None:
        # EEXIST: the native one is there from the start
        _scmp("seccomp_arch_add", lib.seccomp_arch_add, (self._ctx, token), (token,),
              ok=(errno.EEXIST,))

    def add_rule(self, action: int, nr: int, conditions=()) -> None:
        """conditions: [(argument index, CMP_*, datum_a, datum_b)], all of which must hold."""
        n = len(conditions)
        array = ffi.new("struct scmp_arg_cmp[]", max(n, 1))
        for i, (index, op, a, b) in enumerate(conditions):
            array[i].arg, array[i].op, array[i].datum_a, array[i].datum_b = index, op, a, b
        rc = lib.seccomp_rule_add_array(self._ctx, action, nr, n, array)
        if rc < 0:  # traced only when refused: a profile has hundreds of rules
            _scmp("seccomp_rule_add", lambda: rc, (), (hex(action), nr, list(conditions)))

    def export_bpf(self) -> bytes:
        """The filter as BPF, ready for load()."""
        fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            _scmp("seccomp_export_bpf", lib.seccomp_export_bpf, (self._ctx, fd), (fd,))
            size = os.lseek(fd, 0, os.SEEK_CUR)
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._ctx is not None:
            lib.seccomp_release(self._ctx)
            self._ctx = None


def load(bpf: bytes, flags: int = 0) -> None:
    """seccomp(SECCOMP_SET_MODE_FILTER, flags, bpf): from here on every syscall of this
    thread and its future children is checked. Needs no_new_privs or CAP_SYS_ADMIN."""
    _call("seccomp", lib.mc_seccomp_load, (bpf, len(bpf), flags),
          (f"<{len(bpf) // 8} insns>", flags))


def join_session_keyring(name: str | None = None) -> int:
    """keyctl(KEYCTL_JOIN_SESSION_KEYRING, name): a new session keyring (anonymous with no
    name), replacing the one inherited from whoever started us. Returns its serial."""
    raw = ffi.NULL if name is None else name.encode()
    return _call("keyctl(JOIN_SESSION_KEYRING)", lib.mc_join_session_keyring, (raw,), (name,))
