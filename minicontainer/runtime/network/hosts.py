"""The files every container of a bridge network sees: /etc/hosts and /etc/resolv.conf.

Both live under <root>/network/ and are bind-mounted read-only into each container
(`mounts`). The hosts file lists every lease (ipam.py), so containers resolve each other's
hostnames and names; it is rewritten in place as containers come and go. resolv.conf is the
host's, minus nameservers a container cannot reach.
"""
from __future__ import annotations

import os

from minicontainer.runtime.network.ipam import Network
from minicontainer.runtime.state import write_atomic
from minicontainer.spec import Mount

FILES = ("hosts", "resolv.conf")


def write_hosts(net: Network) -> None:
    """Rewrite the shared hosts file in place (it is bind-mounted: a rename would not be
    seen) with one pwrite, padded to its old length, so a reader never sees it empty.
    Hold the network's lock."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{address}\t{' '.join(fields[1:])}" for address, fields in net.lease_records()]
    data = ("\n".join(lines) + "\n").encode()
    fd = os.open(net.path("hosts"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        pad = os.fstat(fd).st_size - len(data)
        if pad > 0:
            data += b"#" * (pad - 1) + b"\n"
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)


def write_resolv_conf(net: Network) -> None:
    """The network's resolv.conf, written once per network (it is bind-mounted: replacing it
    later would not be seen by running containers)."""
    if not os.path.exists(net.path("resolv.conf")):
        write_atomic(net.path("resolv.conf"), resolv_conf())


def resolv_conf(sources=("/run/systemd/resolve/resolv.conf", "/etc/resolv.conf")) -> str:
    """The host's resolver settings (the first of `sources` there is) minus loopback
    nameservers (a stub resolver on the host's 127.0.0.53 is not reachable from the
    container's namespace)."""
    for source in sources:
        try:
            with open(source) as f:
                text = f.read()
            break
        except OSError:
            text = ""
    kept = []
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1:
            if not (words[1].startswith("127.") or words[1] == "::1"):
                kept.append(line)
        elif words[:1] in (["search"], ["domain"], ["options"]):
            kept.append(line)
    if not any(line.startswith("nameserver") for line in kept):
        kept.append("# the host has no nameserver reachable from a container")
    return "\n".join(kept) + "\n"


def mounts(net: Network, root) -> list[Mount]:
    """Read-only binds of the network's hosts and resolv.conf into the container whose
    spec.Root is `root` (skipped where a read-only rootfs has no file to mount on, or has a
    symlink there)."""
    found = []
    for name in FILES:
        target = "/etc/" + name
        inside = root.path + target
        if os.path.islink(inside) or (root.readonly and not os.path.exists(inside)):
            continue
        found.append(Mount(kind="bind", source=net.path(name), target=target, readonly=True))
    return found


def remove(net: Network) -> None:
    """The network is gone: so are its files."""
    for name in FILES:
        try:
            os.unlink(net.path(name))
        except FileNotFoundError:
            pass
