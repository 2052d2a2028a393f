"""A seccomp profile, in docker's format or the OCI one (config.json's linux.seccomp), turned
into libseccomp rules and compiled to BPF. Imported only when runtime/seccomp.py has no cached
BPF for the profile (and by `features` and the tests).

The two formats share defaultAction, syscalls[].names/action/errnoRet/args; docker's adds
defaultErrnoRet, archMap and per-rule includes/excludes (by capability, architecture, kernel
version), resolved here against the container's capabilities and this machine, as dockerd
does before it writes config.json; the OCI one adds architectures and flags. Whatever a
profile asks for that we cannot do (SCMP_ACT_NOTIFY, listenerPath, an unknown operator...)
is refused with one line naming it: never dropped.

Which rule wins is libseccomp's business, and runc's conventions are kept: a rule whose action
is the default action is skipped; a rule with two conditions on the same argument becomes one
rule per condition (libseccomp would AND them, runc ORs them); a syscall name libseccomp does
not know is skipped when skipping changes nothing (the default action already refuses it),
and refused otherwise.
"""
from __future__ import annotations

import errno as _errno
import json
import os

from minicontainer.errors import ContainerError
from minicontainer.kernel import seccomp as scmp
from minicontainer.runtime.seccomp import DEFAULT_PROFILE

ACTIONS = {
    "SCMP_ACT_KILL": scmp.ACT_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": scmp.ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": scmp.ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": scmp.ACT_TRAP,
    "SCMP_ACT_ERRNO": None,  # with errnoRet (EPERM if none), below
    "SCMP_ACT_TRACE": None,  # with errnoRet as the tracer's message
    "SCMP_ACT_LOG": scmp.ACT_LOG,
    "SCMP_ACT_ALLOW": scmp.ACT_ALLOW,
}
OPERATORS = {
    "SCMP_CMP_NE": scmp.CMP_NE, "SCMP_CMP_LT": scmp.CMP_LT, "SCMP_CMP_LE": scmp.CMP_LE,
    "SCMP_CMP_EQ": scmp.CMP_EQ, "SCMP_CMP_GE": scmp.CMP_GE, "SCMP_CMP_GT": scmp.CMP_GT,
    "SCMP_CMP_MASKED_EQ": scmp.CMP_MASKED_EQ,
}
FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": scmp.FLAG_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": scmp.FLAG_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": scmp.FLAG_SPEC_ALLOW,
}
ARCHES = ("X86", "X86_64", "X32", "ARM", "AARCH64", "MIPS", "MIPS64", "MIPS64N32", "MIPSEL",
          "MIPSEL64", "MIPSEL64N32", "PPC", "PPC64", "PPC64LE", "S390", "S390X", "PARISC",
          "PARISC64", "RISCV64")
# libseccomp's name for an architecture -> the one docker's includes/excludes.arches use
DOCKER_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}

PROFILE_KEYS = {"defaultAction", "defaultErrnoRet", "defaultErrno", "architectures", "archMap",
                "flags", "syscalls", "comment", "listenerPath", "listenerMetadata"}
RULE_KEYS = {"names", "name", "action", "errnoRet", "errno", "args", "comment", "includes",
             "excludes"}
FILTER_KEYS = {"caps", "arches", "minKernel"}
ARG_KEYS = {"index", "value", "valueTwo", "op"}


def refuse(what: str) -> None:
    raise ContainerError(f"seccomp profile: {what}")


def load_default() -> dict:
    with open(DEFAULT_PROFILE) as f:
        return json.load(f)


def load_file(path: str) -> dict:
    """A profile file (--security-opt seccomp=PATH), checked at once: a bad one is refused
    before any container exists."""
    try:
        with open(path) as f:
            profile = json.load(f)
    except OSError as e:
        raise ContainerError(f"cannot read seccomp profile {path}: {e.strerror}") from None
    except ValueError as e:
        raise ContainerError(f"seccomp profile {path}: invalid JSON: {e}") from None
    return check(profile)


def check(profile) -> dict:
    """Refuse now, before any container exists, what cannot be applied whatever the
    capabilities. The profile is kept in the container's record (for exec), whose encoder
    takes integers, strings, lists and objects: nothing else is expected here."""
    def plain(value, where: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                plain(v, f"{where}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                plain(v, f"{where}[{i}]")
        elif not isinstance(value, (str, int)) and value is not None:
            refuse(f"{where[1:]}: {value!r} is not a string or an integer")

    if not isinstance(profile, dict):
        refuse("not a JSON object")
    plain(profile, "")
    rules(profile, frozenset())
    return profile


def _arch_names() -> dict[int, str]:
    """libseccomp token -> "SCMP_ARCH_..." for every architecture it knows."""
    out = {}
    for arch in ARCHES:
        token = scmp.arch_token(arch.lower())
        if token:
            out[token] = "SCMP_ARCH_" + arch
    return out


def native_arch() -> str:
    return _arch_names()[scmp.lib.seccomp_arch_native()]


def _errno_of(entry: dict, ret_key: str, name_key: str, where: str) -> int:
    if entry.get(ret_key) is not None:
        value = entry[ret_key]
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFF:
            refuse(f"{where}{ret_key} {value!r} is not an errno number")
        return value
    if entry.get(name_key):  # containers-common's profiles name it too ("errno": "EPERM")
        value = getattr(_errno, str(entry[name_key]), None)
        if not isinstance(value, int):
            refuse(f"{where}{name_key} {entry[name_key]!r} is not an errno name")
        return value
    return _errno.EPERM  # runc's default


def _action(name, err: int, where: str) -> int:
    if name == "SCMP_ACT_NOTIFY":
        refuse(f"{where}SCMP_ACT_NOTIFY is not supported (no seccomp agent here)")
    if name not in ACTIONS:
        refuse(f"{where}unknown action {name!r}")
    if name == "SCMP_ACT_ERRNO":
        return scmp.act_errno(err)
    if name == "SCMP_ACT_TRACE":
        return scmp.act_trace(err)
    return ACTIONS[name]


def _kernel_at_least(version: str) -> bool:
    def numbers(text: str) -> tuple[int, ...]:  # "6.18.44-fc" -> (6, 18, 44)
        out = []
        for part in text.split(".")[:3]:
            digits = ""
            for c in part:
                if not c.isdigit():
                    break
                digits += c
            out.append(int(digits or 0))
        return tuple(out)

    return numbers(os.uname().release) >= numbers(str(version))


def _applies(rule: dict, caps: frozenset, arch: str, where: str) -> bool:
    """docker's includes (all must hold) and excludes (none may)."""
    docker_arch = DOCKER_ARCH.get(arch, arch)
    for key in ("includes", "excludes"):
        cond = rule.get(key) or {}
        if not isinstance(cond, dict):
            refuse(f"{where}{key} is not a JSON object")
        unknown = set(cond) - FILTER_KEYS
        if unknown:
            refuse(f"{where}unknown {key} field {sorted(unknown)[0]!r}")
        held = [c.lower().removeprefix("cap_") in caps for c in cond.get("caps") or ()]
        on_arch = docker_arch in (cond.get("arches") or ())
        if key == "includes":
            if not all(held) or (cond.get("arches") and not on_arch) or \
                    (cond.get("minKernel") and not _kernel_at_least(cond["minKernel"])):
                return False
        else:
            if any(held) or on_arch or \
                    (cond.get("minKernel") and _kernel_at_least(cond["minKernel"])):
                return False
    return True


def _conditions(args, where: str) -> list[list[tuple]]:
    """args -> lists of (index, op, a, b), each list one rule: conditions on distinct
    arguments are ANDed in one rule; repeated ones are split, as runc does."""
    conds = []
    for arg in args or ():
        if not isinstance(arg, dict) or set(arg) - ARG_KEYS or "index" not in arg:
            refuse(f"{where}args entry {arg!r}: want index, value, valueTwo, op")
        op = arg.get("op")
        if op not in OPERATORS:
            refuse(f"{where}unknown operator {op!r}")
        index = arg.get("index")
        if not isinstance(index, int) or not 0 <= index <= 5:
            refuse(f"{where}argument index {index!r} (syscalls have arguments 0 to 5)")
        values = [arg.get(k) or 0 for k in ("value", "valueTwo")]
        for v in values:
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << 64:
                refuse(f"{where}argument value {v!r} is not a 64-bit unsigned number")
        conds.append((index, OPERATORS[op], values[0], values[1]))
    if len({c[0] for c in conds}) == len(conds):
        return [conds]
    return [[c] for c in conds]


def _arches(profile: dict, native: str) -> list[str]:
    arches = [native]
    for arch in profile.get("architectures") or ():
        arches.append(arch)
    for entry in profile.get("archMap") or ():
        if entry.get("architecture") == native:
            arches += entry.get("subArchitectures") or []
    known = set(_arch_names().values())
    for arch in arches:
        if arch not in known:
            refuse(f"unknown architecture {arch!r}")
    return list(dict.fromkeys(arches))


def rules(profile: dict, caps: frozenset) -> tuple[int, list[str], int, list[tuple]]:
    """(default action, architectures, seccomp(2) flags, [(action, syscall name, conditions)])
    for `profile` and a container holding `caps`; refuses what cannot be applied."""
    if not isinstance(profile, dict):
        refuse("not a JSON object")
    unknown = set(profile) - PROFILE_KEYS
    if unknown:
        refuse(f"unknown field {sorted(unknown)[0]!r}")
    if profile.get("listenerPath") or profile.get("listenerMetadata"):
        refuse("listenerPath/listenerMetadata are not supported (no seccomp agent here)")
    default = _action(profile.get("defaultAction"),
                      _errno_of(profile, "defaultErrnoRet", "defaultErrno", ""),
                      "defaultAction: ")
    flags = 0
    for flag in profile.get("flags") or ():
        if flag not in FLAGS:
            refuse(f"flag {flag!r} is not supported")
        flags |= FLAGS[flag]
    native = native_arch()
    arches = _arches(profile, native)
    arch = native.removeprefix("SCMP_ARCH_").lower()
    out = []
    for i, rule in enumerate(profile.get("syscalls") or ()):
        if not isinstance(rule, dict):
            refuse(f"syscalls[{i}] is not a JSON object")
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            refuse(f"syscalls[{i}]: names must be a list of syscall names")
        where = f"syscalls[{i}] ({','.join(names[:3])}{',...' if len(names) > 3 else ''}): "
        unknown = set(rule) - RULE_KEYS
        if unknown:
            refuse(f"{where}unknown field {sorted(unknown)[0]!r}")
        action = _action(rule.get("action"), _errno_of(rule, "errnoRet", "errno", where), where)
        conditions = _conditions(rule.get("args"), where)
        if not names:
            refuse(f"{where}no syscall names")
        if not _applies(rule, caps, arch, where) or action == default:
            continue
        for name in names:
            for conds in conditions:
                out.append((action, name, conds))
    return default, arches, flags, out


def compile_profile(profile: dict, caps: frozenset) -> tuple[bytes, int]:
    """(BPF, seccomp(2) flags) for `profile` and a container holding `caps`."""
    default, arches, flags, todo = rules(profile, caps)
    permissive = (scmp.ACT_ALLOW, scmp.ACT_LOG)
    f = scmp.Filter(default)
    try:
        for arch in arches:
            f.add_arch(scmp.arch_token(arch.removeprefix("SCMP_ARCH_").lower()))
        for action, name, conds in todo:
            nr = scmp.syscall_number(name)
            if nr is None:
                if default in permissive and action not in permissive:
                    refuse(f"syscall {name!r} is unknown to libseccomp "
                           f"{scmp.LIBSECCOMP_VERSION}: it cannot be refused")
                continue  # it gets the default action, which refuses it already
            try:
                f.add_rule(action, nr, conds)
            except OSError as e:
                refuse(f"rule for {name!r} rejected by libseccomp: {e.strerror}")
        return f.export_bpf(), flags
    finally:
        f.release()


def features() -> dict:
    """What `features` reports under linux.seccomp (as runc)."""
    return {
        "enabled": True,
        "actions": sorted(ACTIONS),
        "operators": sorted(OPERATORS),
        "archs": sorted(_arch_names().values()),
        "knownFlags": sorted(FLAGS),
        "supportedFlags": sorted(FLAGS),
    }
