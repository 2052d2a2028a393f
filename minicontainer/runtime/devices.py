"""The device allowlist of cgroup v2: an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE) attached to
the container's cgroup, which the kernel asks on every open and mknod of a device node, as
runc's and crun's device filters do (runc's libcontainer/cgroups/ebpf/devicefilter is the
model, and its cgroup v1 emulator the rule semantics).

A rule is (allow, type, major, minor, access): type "a" (all), "c" or "b"; major and minor a
number or None for any; access a string of r (read), w (write), m (mknod).

    rules, in order  ──emulate cgroup v1──>  default + exceptions  ──>  program:
    deny a, allow c 1:3 rwm, ...             deny all but c 1:3 rwm      for each exception:
                                                                          type, access, major,
                                                                          minor match? -> its
                                                                          verdict; else default

What every container may use, whatever its config says, is ALLOWED: the nodes minicontainer
makes in /dev itself, and mknod of any node (opening one made so is still denied): runc's
default allowed devices, and docker's.
"""
from __future__ import annotations

import os

from minicontainer.errors import ContainerError

ALLOWED = (
    (True, "c", None, None, "m"), (True, "b", None, None, "m"),  # mknod, not open
    (True, "c", 1, 3, "rwm"), (True, "c", 1, 5, "rwm"), (True, "c", 1, 7, "rwm"),  # null zero full
    (True, "c", 1, 8, "rwm"), (True, "c", 1, 9, "rwm"), (True, "c", 5, 0, "rwm"),  # random urandom tty
    (True, "c", 5, 2, "rwm"), (True, "c", 136, None, "rwm"),  # ptmx, the pty slaves
)
# Docker's default for a container that is not privileged: nothing but ALLOWED
DEFAULT_RULES = ((False, "a", None, None, "rwm"), *ALLOWED)

# struct bpf_cgroup_dev_ctx's type and access bits (linux/bpf.h)
DEV_BLOCK, DEV_CHAR = 1, 2
ACCESS = {"m": 1, "r": 2, "w": 4}


def emulate(rules) -> tuple[bool, dict]:
    """(whether the default is allow, {(type, major, minor): access} exceptions to it) after
    applying `rules` in order as cgroup v1's devices.allow/deny would: an "a" rule resets
    everything; a rule with the default's verdict takes access away from an exception,
    another adds to one. Taking away part of a wildcard exception cannot be expressed
    (cgroup v1 ignores it; runc refuses it): refused."""
    default_allow, exceptions = False, {}
    for allow, kind, major, minor, access in rules:
        if kind == "a":
            default_allow, exceptions = allow, {}
            continue
        key = (kind, major, minor)
        if allow != default_allow:
            exceptions[key] = "".join(sorted(set(exceptions.get(key, "")) | set(access)))
            continue
        for (k, ma, mi), have in exceptions.items():
            partial = (ma is None and major is not None) or (mi is None and minor is not None)
            if k == kind and partial and (ma is None or ma == major) and \
                    (mi is None or mi == minor) and set(have) & set(access):
                raise ContainerError(
                    f"linux.resources.devices: a rule for {kind} {_num(major)}:{_num(minor)} "
                    f"{access} punches a hole in the wildcard rule {k} {_num(ma)}:{_num(mi)}, "
                    "which the device cgroup cannot express")
        left = "".join(c for c in exceptions.get(key, "") if c not in access)
        if left:
            exceptions[key] = left
        else:
            exceptions.pop(key, None)
    return default_allow, exceptions


def program(rules) -> bytes | None:
    """The filter for `rules` as BPF instructions; None when it would allow everything."""
    default_allow, exceptions = emulate(rules)
    if default_allow and not exceptions:
        return None
    # r1: the context; r2 <- type, r3 <- access, r4 <- major, r5 <- minor
    code = [_insn(0x61, 2, 1, 0, 0), _insn(0x54, 2, 0, 0, 0xFFFF),   # ldxw, and32
            _insn(0x61, 3, 1, 0, 0), _insn(0x74, 3, 0, 0, 16),       # ldxw, rsh32
            _insn(0x61, 4, 1, 4, 0), _insn(0x61, 5, 1, 8, 0)]
    for (kind, major, minor), access in sorted(exceptions.items(), key=str):
        mask = sum(ACCESS[c] for c in access)
        tests = [(0x55, 2, 0, DEV_CHAR if kind == "c" else DEV_BLOCK)]  # jne r2, type
        if mask != 7:  # not rwm: every bit asked must be in the rule's access
            tests += [(0xbc, 1, 3, 0), (0x54, 1, 0, mask), (0x5d, 1, 3, 0)]  # r1=r3&mask; jne r1,r3
        if major is not None:
            tests.append((0x55, 4, 0, major))
        if minor is not None:
            tests.append((0x55, 5, 0, minor))
        block = len(tests) + 2  # then: r0 = verdict; exit
        for i, (op, dst, src, imm) in enumerate(tests):
            jump = op in (0x55, 0x5d)
            code.append(_insn(op, dst, src, block - i - 1 if jump else 0, imm))
        code += [_insn(0xb4, 0, 0, 0, 0 if default_allow else 1), _insn(0x95, 0, 0, 0, 0)]
    code += [_insn(0xb4, 0, 0, 0, 1 if default_allow else 0), _insn(0x95, 0, 0, 0, 0)]
    return b"".join(code)


def attach(cgroup: str, rules) -> None:
    """Load the filter for `rules` and attach it to the cgroup directory `cgroup` (before any
    process is in it). The attachment holds the program: no fd to keep, and it goes with
    the cgroup."""
    code = program(rules)
    if code is None:
        return
    from minicontainer.kernel import syscalls

    fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    prog = -1
    try:
        prog = syscalls.bpf_device_prog_load(code)
        syscalls.bpf_device_attach(fd, prog)
    except OSError as e:
        raise ContainerError(f"cannot enforce the device allowlist on {cgroup} (an eBPF "
                             f"program of the cgroup v2 device controller): {e}") from None
    finally:
        os.close(fd)
        if prog >= 0:
            os.close(prog)


def _insn(code: int, dst: int, src: int, off: int, imm: int) -> bytes:
    """struct bpf_insn: opcode, dst and src registers, 16-bit offset, 32-bit immediate."""
    return bytes((code, src << 4 | dst)) + off.to_bytes(2, "little", signed=True) + \
        imm.to_bytes(4, "little", signed=imm < 0)


def _num(n) -> str:
    return "*" if n is None else str(n)
