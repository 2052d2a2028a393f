"""Capabilities, through python-prctl: the bounding set and the effective, permitted and
inheritable sets; the ambient set through raw prctl(2), which python-prctl 1.8 does not wrap.

Names are the kernel's without the CAP_ prefix, lower case: "net_admin".
"""
from __future__ import annotations

import prctl  # imported here, not lazily: the child calls us after pivot_root, where the
              # host's site-packages can no longer be imported from (runtime/process.preload)

from minicontainer.kernel import syscalls

# Docker's default set (moby's oci/caps/defaults.go) less MKNOD: without a device cgroup,
# CAP_MKNOD would let a container make and open a node for the host's disks.
DEFAULT = (
    "chown", "dac_override", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
    "net_bind_service", "net_raw", "sys_chroot", "audit_write", "setfcap",
)


def all_names() -> tuple[str, ...]:
    return tuple(n for n in prctl.ALL_CAP_NAMES if not n.startswith("unknown_"))


def normalize(name: str) -> str:
    """'CAP_NET_ADMIN', 'NET_ADMIN' and 'net_admin' are the same capability; 'ALL' is all."""
    n = name.strip().lower()
    if n.startswith("cap_"):
        n = n[4:]
    if n != "all" and n not in all_names():
        raise ValueError(f"unknown capability {name!r}")
    return n


def limit_bounding(keep: frozenset[str]) -> None:
    """Cut the bounding set to `keep` (no exec can ever regain what is dropped here) and
    empty the ambient set. Dropping needs CAP_SETPCAP, which we still hold at this point."""
    prctl.capbset.drop(*(c for c in all_names() if c not in keep))
    syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL)


def limit_sets(keep: frozenset[str]) -> None:
    """Effective and permitted to `keep`, inheritable empty (as docker does since
    CVE-2022-24769). Call it after switching uid: a change to a non-zero uid has already
    cleared effective and permitted, which is what docker gives a non-root user too."""
    everything = all_names()
    prctl.set_caps(
        ([c for c in everything if c not in keep], [prctl.CAP_EFFECTIVE, prctl.CAP_PERMITTED], False),
        (list(everything), prctl.CAP_INHERITABLE, False),
    )


def no_new_privs() -> None:
    """After this no exec can gain privileges (setuid bits and file capabilities are ignored)."""
    syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
