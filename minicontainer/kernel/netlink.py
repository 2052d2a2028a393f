"""Links, addresses and routes over rtnetlink, through pyroute2: a thin typed layer, no policy.

Importing this module imports pyroute2 (its IPRoute part: about 75 ms, see _import_pyroute2),
so only the network code that needs it imports this, never the launch path of a
`--network none` container.

A `Netlink` talks to one network namespace: the runtime's own, or a container's. For the
latter we open the netlink socket *inside* the container's namespace (setns there and straight
back, in this process) and hand it to pyroute2: a socket belongs to the namespace it was
created in for its whole life. pyroute2's own netns support forks a helper process for that,
which costs more than the whole rest of the network set-up.
"""
from __future__ import annotations

import errno
import os
import socket
import sys

from minicontainer.kernel import syscalls


def _import_pyroute2():
    """IPRoute and NetlinkError, for about half of `import pyroute2`'s cost.

    pyroute2/__init__.py eagerly imports everything the library speaks (NDB, IPDB,
    conntrack, nftables, wireguard...), ~150 ms here; IPRoute alone needs ~75 ms. So when
    nothing has imported pyroute2 yet, register the package without running its __init__
    and import just the two submodules. Should a pyroute2 version not cope, undo that and
    import it the ordinary way."""
    if "pyroute2" not in sys.modules:
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec("pyroute2")
        if spec is not None and spec.submodule_search_locations:
            package = type(sys)("pyroute2")
            package.__path__ = list(spec.submodule_search_locations)
            package.__spec__ = spec
            package.__file__ = spec.origin
            sys.modules["pyroute2"] = package
            try:
                from pyroute2.iproute.linux import IPRoute
                from pyroute2.netlink.exceptions import NetlinkError

                return IPRoute, NetlinkError
            except Exception:
                for name in [m for m in sys.modules if m == "pyroute2" or m.startswith("pyroute2.")]:
                    del sys.modules[name]
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    return IPRoute, NetlinkError


IPRoute, NetlinkError = _import_pyroute2()

__all__ = ["Netlink", "NetlinkError"]

NETLINK_ROUTE = 0


class Netlink:
    """One rtnetlink socket. `Netlink()` is the runtime's namespace; `Netlink(pid=N)` is the
    network namespace of process N."""

    def __init__(self, pid: int | None = None):
        fileno = None
        if pid is not None:
            fileno = _socket_in_netns(f"/proc/{pid}/ns/net")
        # groups=0: no multicast subscriptions, so no event messages pile up in our buffer.
        self._ipr = IPRoute(fileno=fileno, groups=0)

    def close(self) -> None:
        self._ipr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # Links.

    def index(self, ifname: str) -> int | None:
        found = self._ipr.link_lookup(ifname=ifname)
        return found[0] if found else None

    def add_bridge(self, ifname: str) -> int:
        self._ipr.link("add", ifname=ifname, kind="bridge")
        return self.index(ifname)

    def add_veth_into(self, ifname: str, peer: str, peer_pid: int, master: int) -> None:
        """A veth pair: `ifname` here, up and enslaved to bridge `master`; its peer created
        directly inside the network namespace of `peer_pid` as `peer` (down). One message,
        so there is never a moment where the peer sits in the host with a clashing name."""
        self._ipr.link("add", ifname=ifname, kind="veth",
                       peer={"ifname": peer, "net_ns_pid": peer_pid},
                       master=master, state="up")

    def add_veth(self, ifname: str, peer: str, peer_pid: int) -> None:
        """A plain veth pair: `ifname` here, `peer` inside the network namespace of
        `peer_pid`, both down and unattached (the workshop's veth by hand)."""
        self._ipr.link("add", ifname=ifname, kind="veth",
                       peer={"ifname": peer, "net_ns_pid": peer_pid})

    def set_up(self, index: int) -> None:
        self._ipr.link("set", index=index, state="up")

    def delete_link(self, ifname: str) -> bool:
        """Delete a link by name; False if it was already gone."""
        try:
            self._ipr.link("del", ifname=ifname)
        except NetlinkError as e:
            if e.code in (errno.ENODEV, errno.ENOENT):
                return False
            raise
        return True

    # Addresses and routes.

    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        self._ipr.addr("add", index=index, address=address, prefixlen=prefixlen)

    def add_default_route(self, gateway: str) -> None:
        self._ipr.route("add", dst="0.0.0.0/0", gateway=gateway)

    def ipv4_routes(self) -> list[tuple[str, int, int | None]]:
        """(destination, prefix length, output ifindex) of every IPv4 route in the main
        table, the default route included as ("0.0.0.0", 0, ...)."""
        routes = []
        for msg in self._ipr.get_routes(family=socket.AF_INET, table=254):
            routes.append((msg.get_attr("RTA_DST") or "0.0.0.0", msg["dst_len"],
                           msg.get_attr("RTA_OIF")))
        return routes


def _socket_in_netns(path: str) -> int:
    """A netlink socket created inside the network namespace at `path`; returns its fd."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.setns(target, syscalls.CLONE_NEWNET)
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)
        finally:
            syscalls.setns(own, syscalls.CLONE_NEWNET)
        return sock.detach()
    finally:
        os.close(own)
        os.close(target)
