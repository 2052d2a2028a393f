"""Capabilities, by number, through raw syscalls: the bounding set (prctl PR_CAPBSET_DROP),
the effective, permitted and inheritable sets (capset(2), version 3: 64 bits each) and the
ambient set (prctl PR_CAP_AMBIENT). Every capability up to the kernel's cap_last_cap counts,
including those python-prctl 1.8 does not know (CAP_CHECKPOINT_RESTORE).

Names are the kernel's without the CAP_ prefix, lower case: "net_admin".
"""
from __future__ import annotations

from minicontainer.errors import ContainerError
from minicontainer.kernel import syscalls

# The kernel's numbering (include/uapi/linux/capability.h): NAMES[n] is capability n.
NAMES = (
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid",
    "setuid", "setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin",
    "net_raw", "ipc_lock", "ipc_owner", "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace",
    "sys_pacct", "sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time",
    "sys_tty_config", "mknod", "lease", "audit_write", "audit_control", "setfcap",
    "mac_override", "mac_admin", "syslog", "wake_alarm", "block_suspend", "audit_read",
    "perfmon", "bpf", "checkpoint_restore",
)
NUMBER = {name: n for n, name in enumerate(NAMES)}

# Docker's default set (moby's oci/caps/defaults.go). CAP_MKNOD comes with the device
# allowlist that makes it harmless (runtime/devices.py): a node made for the host's disk
# cannot be opened.
DEFAULT = (
    "chown", "dac_override", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
    "net_bind_service", "net_raw", "sys_chroot", "mknod", "audit_write", "setfcap",
)

# The five sets a process has, in the OCI spec's names
KINDS = ("bounding", "effective", "permitted", "inheritable", "ambient")

_last_cap = None


def last_cap() -> int:
    """The highest capability number this kernel has (read once, before switch_root)."""
    global _last_cap
    if _last_cap is None:
        try:
            with open("/proc/sys/kernel/cap_last_cap") as f:
                _last_cap = int(f.read())
        except OSError:
            _last_cap = len(NAMES) - 1
    return _last_cap


def all_names() -> tuple[str, ...]:
    """Every capability this kernel has that we can name."""
    return NAMES[:last_cap() + 1]


def normalize(name: str) -> str:
    """'CAP_NET_ADMIN', 'NET_ADMIN' and 'net_admin' are the same capability; 'ALL' is all."""
    n = name.strip().lower()
    if n.startswith("cap_"):
        n = n[4:]
    if n != "all" and n not in all_names():
        raise ValueError(f"unknown capability {name!r}")
    return n


def sets_of(security) -> dict | None:
    """The five sets to give the container's process: Security.sets (an OCI config names all
    five), else the docker-like meaning of Security.capabilities (bounding, effective and
    permitted that set; inheritable and ambient empty, as docker since CVE-2022-24769).
    None for a privileged container: nothing is cut."""
    if security.sets is not None:
        return security.sets
    if security.privileged:
        return None
    keep = frozenset(security.capabilities)
    return {"bounding": keep, "effective": keep, "permitted": keep,
            "inheritable": frozenset(), "ambient": frozenset()}


def mask(names) -> int:
    """The capabilities `names` as a bit mask (capget/capset's, and runtime/native.py's)."""
    bits = 0
    for name in names:
        bits |= 1 << NUMBER[name]
    return bits


def limit_bounding(keep) -> None:
    """Cut the bounding set to `keep` (no exec can ever regain what is dropped here).
    Dropping needs CAP_SETPCAP, which we still hold at this point."""
    wanted = mask(keep)
    for n in range(last_cap() + 1):
        if not wanted & (1 << n) and syscalls.prctl(syscalls.PR_CAPBSET_READ, n):
            syscalls.prctl(syscalls.PR_CAPBSET_DROP, n)


def held() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of this process, as bit masks."""
    return syscalls.capget()


def apply(sets) -> None:
    """Effective, permitted and inheritable exactly as `sets` has them, then the ambient set.
    Call it after switching uid with PR_SET_KEEPCAPS set (permitted survives the switch).
    A capability the runtime does not hold itself cannot be granted: refused by name."""
    check_grantable(sets)
    syscalls.capset(mask(sets["effective"]), mask(sets["permitted"]),
                    mask(sets["inheritable"]))
    syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL)
    for name in sorted(sets["ambient"], key=NUMBER.get):
        syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_RAISE, NUMBER[name])


def check_grantable(sets) -> None:
    """A capability the runtime does not hold itself cannot be granted: refused by name."""
    _, permitted_now, _ = held()
    missing = mask(sets["permitted"]) & ~permitted_now
    if missing:
        names = [f"CAP_{NAMES[n].upper()}" for n in range(len(NAMES)) if missing & (1 << n)]
        raise ContainerError(f"process.capabilities.permitted: {', '.join(names)} not held by "
                             "the runtime itself, so it cannot be granted")


def limit_sets(keep) -> None:
    """Effective and permitted to `keep`, inheritable and ambient empty, in one call: the
    docker-like sets for a process that stays root (the workshop's levels 10 and 11)."""
    keep = frozenset(keep)
    apply({"effective": keep, "permitted": keep, "inheritable": frozenset(),
           "ambient": frozenset()})


def no_new_privs() -> None:
    """After this no exec can gain privileges (setuid bits and file capabilities are ignored)."""
    syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
