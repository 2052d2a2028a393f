"""The host side of a bridge network: the bridge, each container's veth, the nft table and
the published ports. Netlink (kernel/netlink.py, pyroute2) and nft (kernel/nftables.py).

    host                                            container (own network namespace)
    bridge mc-TAG, 10.86.N.1/24 ── veth mcTAGv<id> ═══════ eth0 10.86.N.x/24
                                                          default via 10.86.N.1
    nft table ip minicontainer_TAG: masquerade for the subnet going out, and DNAT of
    published ports through four maps (one element per -p) in prerouting and output

The names and the subnet come from ipam.Network. Functions that build take a `host`
Netlink (the runtime's own namespace) from their caller, who opens and closes it.
"""
from __future__ import annotations

import errno
import ipaddress
import os
import socket

from minicontainer.errors import ContainerError
from minicontainer.kernel import trace
from minicontainer.runtime.network.ipam import Network
from minicontainer.runtime.state import write_atomic
from minicontainer.spec import Port

PEER_NAME = "eth0"
# Present while minicontainer has switched IPv4 forwarding on (it was off before).
FORWARDING_MARK = "/run/minicontainer.ip_forward"


# The bridge and its NAT table (hold the network's lock).

def ensure(net: Network, host) -> int:
    """The bridge's ifindex, building the bridge and the nft table if not complete (the
    `up` file marks a complete one)."""
    index = host.index(net.bridge)
    if index is not None and os.path.exists(net.path("up")):
        return index
    if index is not None:  # half built by a runtime that died: start again
        host.delete_link(net.bridge)
    _check_subnet_free(net, host)
    index = host.add_bridge(net.bridge)
    host.add_address(index, net.gateway, net.subnet.prefixlen)
    # Let DNATed connections from 127.0.0.1 leave through the bridge (the kernel drops
    # packets with a loopback source on other devices unless asked): this device only.
    _write_sysctl(f"/proc/sys/net/ipv4/conf/{net.bridge}/route_localnet", "1")
    host.set_up(index)
    nft(ruleset(net))
    _forwarding_on()
    write_atomic(net.path("up"), "")
    trace.note(f"bridge {net.bridge} {net.gateway}/{net.subnet.prefixlen} up, nft table ip "
               f"{net.table} (masquerade, DNAT maps)")
    return index


def mark_down(net: Network) -> None:
    """From here on the network counts as not built (a start rebuilds it)."""
    try:
        os.unlink(net.path("up"))
    except FileNotFoundError:
        pass


def teardown(net: Network, host) -> None:
    """Remove the bridge and the nft table: nothing uses them any more."""
    mark_down(net)
    nft(f"delete table ip {net.table}", missing_ok=True)
    host.delete_link(net.bridge)
    _forwarding_restore(net.table)


def _check_subnet_free(net: Network, host) -> None:
    for dst, length, oif in host.ipv4_routes():
        if length == 0:
            continue  # the default route overlaps everything
        route = ipaddress.IPv4Network(f"{dst}/{length}", strict=False)
        if route.overlaps(net.subnet):
            raise ContainerError(
                f"bridge subnet {net.subnet} overlaps the host's route to {route}: "
                "choose another with MINICONTAINER_SUBNET")


def ruleset(net: Network) -> str:
    """The network's nft table, replaced whole."""
    # Published ports: HOSTPORT -> CONTAINERIP . PORT, or HOSTIP . HOSTPORT -> ...
    # Map elements are added and deleted one by one, with no rule handles to track.
    maps = "".join(
        f"  map {proto}_any {{ type inet_service : ipv4_addr . inet_service; }}\n"
        f"  map {proto}_at {{ type ipv4_addr . inet_service : ipv4_addr . inet_service; }}\n"
        for proto in ("tcp", "udp"))
    return f"""\
table ip {net.table}
delete table ip {net.table}
table ip {net.table} {{
{maps}
  chain publish {{
    dnat ip to ip daddr . tcp dport map @tcp_at
    dnat ip to tcp dport map @tcp_any
    dnat ip to ip daddr . udp dport map @udp_at
    dnat ip to udp dport map @udp_any
  }}
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    fib daddr type local jump publish
  }}
  chain output {{
    type nat hook output priority -100; policy accept;
    fib daddr type local jump publish
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {net.subnet} oifname != "{net.bridge}" masquerade
    oifname "{net.bridge}" ip saddr 127.0.0.0/8 masquerade
    oifname "{net.bridge}" ip saddr {net.subnet} ct status dnat masquerade
  }}
}}
"""


# A container's veth.

def connect(net: Network, host, bridge: int, veth: str, pid: int, address: str) -> None:
    """A veth pair from the bridge into the network namespace of process `pid`, whose end
    there becomes eth0 with `address` and a default route through the bridge."""
    from minicontainer.kernel.netlink import Netlink

    host.add_veth_into(veth, PEER_NAME, pid, bridge)
    trace.note(f"veth {veth} on {net.bridge} <-> {PEER_NAME} in the container's network "
               "namespace (netlink)")
    with Netlink(pid=pid) as inside:
        eth0 = inside.index(PEER_NAME)
        inside.add_address(eth0, address, net.subnet.prefixlen)
        inside.set_up(eth0)
        inside.add_default_route(net.gateway)
    trace.note(f"{PEER_NAME}: {address}/{net.subnet.prefixlen} up, default via {net.gateway}")


def delete_veth(name: str, netns_inode: str) -> None:
    """The host end of a veth whose other end is in the network namespace `netns_inode`.

    The kernel deletes a veth pair with the namespace that holds one end, so when no process
    is left in that namespace there is nothing to do (and deleting it ourselves would only
    wait for the kernel's teardown of the namespace: 20-40 ms). When `container:` joiners
    still live in it, the veth is deleted here: they lose the network with it, as in docker."""
    if netns_inode and not _namespace_in_use(f"net:[{netns_inode}]"):
        trace.note(f"veth {name}: deleted by the kernel with its network namespace")
        return
    from minicontainer.kernel.netlink import Netlink

    with Netlink() as host:
        trace.call("delete_link", (name,), host.delete_link(name))


def _namespace_in_use(link: str) -> bool:
    """Whether any process is in the namespace whose /proc/PID/ns/* link reads `link`."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/net") == link:
                    return True
            except OSError:
                continue
    return False


# Published ports (hold the network's lock).

def publish(net: Network, ports: list[Port], address: str, container) -> list[Port]:
    """Forward each of `ports` to `address`; returns them with their host ports (a port
    given without one gets a free one from the kernel: bind to port 0).

    Each host port is bound first and held in `container.held` while the container runs,
    so nothing else can take it, a taken one fails here, and, under the network's lock,
    no port is handed to two containers. The container owns (state.py) each DNAT map
    element before all of them are added in one nft transaction."""
    published, elements = [], []
    for port in ports:
        sock = _reserve(port)
        container.held.append(sock)
        port = Port(host_ip=port.host_ip, host_port=sock.getsockname()[1],
                    container_port=port.container_port, protocol=port.protocol)
        published.append(port)
        if port.host_ip:
            table_map, key = f"{port.protocol}_at", f"{port.host_ip} . {port.host_port}"
        else:
            table_map, key = f"{port.protocol}_any", str(port.host_port)
        container.own("port", f"{net.table} {table_map} {key.replace(' . ', ':')}")
        elements.append(f"add element ip {net.table} {table_map} "
                        f"{{ {key} : {address} . {port.container_port} }}")
    if elements:
        try:
            nft("\n".join(elements) + "\n")
            for element in elements:
                trace.call("nft", (element,), 0)
        except ContainerError as e:
            if "File exists" not in str(e):
                raise
            wanted = ", ".join(f"{p.host_ip or '0.0.0.0'}:{p.host_port}/{p.protocol}"
                               for p in published)
            raise ContainerError(f"cannot publish {wanted}: already forwarded to another "
                                 "container") from None
    return published


def check_publishable(ports: list[Port]) -> None:
    """Refuse, with publish's own line, a port publish would refuse (taken on the host, an
    address this host does not have, the same host port twice): all bound as publish binds
    them, then let go (`run --dry-run`)."""
    held = []
    try:
        for port in ports:
            held.append(_reserve(port))
    finally:
        for sock in held:
            sock.close()


def _reserve(port: Port) -> socket.socket:
    kind = socket.SOCK_STREAM if port.protocol == "tcp" else socket.SOCK_DGRAM
    where = f"{port.host_ip or '0.0.0.0'}:{port.host_port or 'any'}/{port.protocol}"
    sock = socket.socket(socket.AF_INET, kind)
    try:
        sock.bind((port.host_ip or "0.0.0.0", port.host_port or 0))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ContainerError(f"cannot publish {where}: the port is already in use on the host") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise ContainerError(f"cannot publish {where}: {port.host_ip} is not an address of this host") from None
        raise ContainerError(f"cannot publish {where}: {e.strerror}") from None
    return sock


def unpublish(owned: str) -> None:
    """One published port's DNAT map element, as owned: "TABLE MAP KEY" (KEY: PORT or
    IP:PORT). Its host port was held by the process that ran the container, which closes
    it (state.Container.held)."""
    table, table_map, key = owned.split(" ")
    script = f"delete element ip {table} {table_map} {{ {key.replace(':', ' . ')} }}"
    nft(script, missing_ok=True)
    trace.call("nft", (script,), 0)


# nft and sysctls.

def nft(script: str, missing_ok: bool = False) -> str:
    """Run an nft script as one transaction (kernel/nftables.py); missing_ok: a table or
    element that is not there is not an error (releasers)."""
    from minicontainer.kernel import nftables

    try:
        return nftables.run(script)
    except nftables.NftError as e:
        if missing_ok and "No such file or directory" in str(e):
            return ""
        raise ContainerError(f"nft failed: {e}") from None


def _forwarding_on() -> None:
    """Masquerading needs IPv4 forwarding; switch it on if it is off, and leave a mark so
    the last minicontainer network to go switches it off again."""
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        if f.read().strip() == "1":
            return
    write_atomic(FORWARDING_MARK, "")
    _write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")


def _forwarding_restore(table: str) -> None:
    if not os.path.exists(FORWARDING_MARK):
        return  # it was on before us: not ours to switch off
    listing = nft("list tables")
    others = [line for line in listing.splitlines()
              if line.startswith("table ip minicontainer") and line.split()[2] != table]
    if not others:  # no other minicontainer network (another state root) still needs it
        _write_sysctl("/proc/sys/net/ipv4/ip_forward", "0")
        try:
            os.unlink(FORWARDING_MARK)
        except FileNotFoundError:
            pass


def _write_sysctl(path: str, text: str) -> None:
    """A /proc/sys setting: written in place (procfs has no rename)."""
    with open(path, "w") as f:
        f.write(text)
