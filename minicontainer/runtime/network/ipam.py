"""Address allocation (IPAM) for the bridge network of one state root: files only.

A `Network` is the network's identity (bridge, nft table and veth names, subnet, gateway,
derived from the state root's path and pinned in `config` once used) and its address pool:
one lease file per address in use under <root>/network/leases/. Nothing here touches a
link, a route or a socket, so all of it runs as any user on a temp directory
(tests/unit/test_ipam.py); links.py builds what these names name.

Every change to the leases happens holding the network's lock (`Network.locked`).
"""
from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import json
import os

from minicontainer.errors import ContainerError
from minicontainer.runtime.state import write_atomic  # `config` is read without the lock

# The subnet of the default state root; any other root gets a /24 derived from its path
# (MINICONTAINER_SUBNET and MINICONTAINER_BRIDGE override both). 10.88/16 is podman's.
DEFAULT_SUBNET = "10.87.0.0/16"


class Network:
    """The bridge network of one state root: its names, its subnet and its lease files."""

    def __init__(self, root: str):
        self.dir = os.path.join(root, "network")
        real = os.path.realpath(root)
        tag = hashlib.sha256(real.encode()).hexdigest()[:4]
        from minicontainer.runtime.state import DEFAULT_ROOT

        derived = DEFAULT_SUBNET if real == os.path.realpath(DEFAULT_ROOT) else \
            f"10.86.{int(tag, 16) % 254 + 1}.0/24"
        pinned = self._read_config()
        self.bridge = pinned.get("bridge") or os.environ.get("MINICONTAINER_BRIDGE") or f"mc-{tag}"
        subnet = pinned.get("subnet") or os.environ.get("MINICONTAINER_SUBNET") or derived
        self.table = f"minicontainer_{tag}"
        self.veth_prefix = f"mc{tag}v"
        try:
            self.subnet = ipaddress.IPv4Network(subnet)
        except ValueError as e:
            raise ContainerError(f"bad bridge subnet {subnet!r}: {e}") from None
        if self.subnet.prefixlen > 29:
            raise ContainerError(f"bridge subnet {subnet} is too small (at most /29)")
        if not 0 < len(self.bridge) < 16 or "/" in self.bridge or " " in self.bridge:
            raise ContainerError(f"bad bridge name {self.bridge!r}")
        self.gateway = str(self.subnet.network_address + 1)
        self.leases = os.path.join(self.dir, "leases")

    def path(self, name: str) -> str:
        """A file of this network: config, cursor, lock, up, hosts, resolv.conf."""
        return os.path.join(self.dir, name)

    def veth(self, cid: str) -> str:
        """The host end of container `cid`'s veth: the prefix, then as much of the id as fits
        in IFNAMSIZ - 1."""
        return self.veth_prefix + cid[:15 - len(self.veth_prefix)]

    def _read_config(self) -> dict:
        try:
            with open(self.path("config")) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def locked(self) -> "Lock":
        os.makedirs(self.leases, 0o700, exist_ok=True)
        return Lock(self.path("lock"))

    def in_use(self) -> bool:
        """Whether any lease was ever taken here (the leases directory exists)."""
        return os.path.isdir(self.leases)

    # Addresses (hold the lock).

    def allocate(self, cid: str, hostname: str, name: str | None) -> str:
        """Claim a free address for container `cid`; the lease names it for /etc/hosts.
        The search starts after the last address handed out (`cursor`), so a just-freed
        address, still in some neighbour cache, is not handed out again at once."""
        if not os.path.exists(self.path("config")):  # pin what we are about to build
            write_atomic(self.path("config"), json.dumps({"bridge": self.bridge,
                                                          "subnet": str(self.subnet)}))
        used = set(os.listdir(self.leases))
        first, count = 2, self.subnet.num_addresses - 3  # not network, gateway, broadcast
        last = _read_int(self.path("cursor"), first - 1)
        for i in range(count):
            offset = first + (last - first + 1 + i) % count
            address = str(self.subnet.network_address + offset)
            if address in used:
                continue
            try:
                fd = os.open(os.path.join(self.leases, address),
                             os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            os.write(fd, " ".join(filter(None, (cid, hostname, name))).encode() + b"\n")
            os.close(fd)
            write_atomic(self.path("cursor"), str(offset))
            return address
        raise ContainerError(f"no free address left in {self.subnet} ({len(used)} in use)")

    def lease_records(self) -> list[tuple[str, list[str]]]:
        """(address, [cid, hostname, name...]) of every lease, in address order."""
        records = []
        for address in os.listdir(self.leases):
            try:
                with open(os.path.join(self.leases, address)) as f:
                    records.append((address, f.read().split()))
            except FileNotFoundError:
                continue
        records.sort(key=lambda r: ipaddress.IPv4Address(r[0]))
        return records

    def lease_of(self, cid: str) -> str | None:
        for address, fields in self.lease_records():
            if fields[:1] == [cid]:
                return address
        return None

    def release(self, cid: str) -> bool:
        """Drop the leases of `cid`; True if no lease at all remains."""
        records = self.lease_records()
        for address, fields in records:
            if fields[:1] == [cid]:
                _unlink(os.path.join(self.leases, address))
        return all(fields[:1] == [cid] for _, fields in records)

    def forget(self) -> None:
        """Drop the pinned config and the cursor: the network is gone (the last lease was
        released and links.teardown has run), the next one starts afresh."""
        for name in ("cursor", "config"):
            _unlink(self.path(name))


class Lock:
    """flock(2) on the network's `lock` file: serialises starts and stops of bridge
    containers. `fd` stays open (and the lock held) until the block ends; a forked process
    that keeps the fd keeps the lock."""

    def __init__(self, path: str):
        self.path = path

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # releases the flock


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _read_int(path: str, default: int) -> int:
    try:
        with open(path) as f:
            return int(f.read())
    except (OSError, ValueError):
        return default
