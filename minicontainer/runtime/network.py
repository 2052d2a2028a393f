"""Container networking: `--network bridge`, `--network container:NAME` and `-p/--publish`.

    none (default)   a new network namespace with only `lo` (the child brings it up itself):
                     this module is never imported, nothing to clean up
    host             no new network namespace: the container shares the host's
    bridge           a new namespace, joined to a host bridge by a veth pair (below)
    container:NAME   the child setns()es into NAME's network namespace instead of a new one

Bridge mode, one network per state root (so two roots, two test sessions say, never share one):

    host                                            container (own network namespace)
    bridge mc-TAG, 10.86.N.1/24 ── veth mcTAGv<id> ═══════ eth0 10.86.N.x/24
                                                          default via 10.86.N.1
    nft table ip minicontainer_TAG: masquerade for the subnet going out, and DNAT of
    published ports through four maps (one element per -p) in prerouting and output

Files under <root>/network/ (every change happens holding `lock`):
    lock            flock(2) on it serialises starts and stops of bridge containers
    config          bridge name and subnet, written before anything exists and kept while
                    anything does: gc tears down exactly what was built
    up              written once the bridge and nft table are complete
    leases/<ip>     "cid hostname [name]": an address in use, created with O_EXCL
    cursor          the last address handed out; the search starts after it so a just-freed
                    address (still in some neighbour cache) is not handed out again at once
    hosts           bind-mounted read-only at /etc/hosts in every container of the network,
                    rewritten in place as containers come and go: names resolve both ways
    resolv.conf     the host's non-loopback nameservers, bind-mounted at /etc/resolv.conf

Lifetime: each container records ("owns", see state.py) a lease, then its port forwards, then
its veth, each before creating it; they are released newest first, and releasing the last
lease tears down the bridge, the nft table and these files. A SIGKILLed runtime's leases are
released the same way by the next start's (or `minicontainer gc`'s) garbage collection.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import ipaddress
import json
import os
import socket

from minicontainer.errors import ContainerError, UsageError
from minicontainer.kernel import trace
from minicontainer.runtime.state import write_atomic  # `config` is read without the lock
from minicontainer.spec import Mount, Port

PEER_NAME = "eth0"
# The subnet of the default state root; any other root gets a /24 derived from its path
# (MINICONTAINER_SUBNET and MINICONTAINER_BRIDGE override both). 10.88/16 is podman's.
DEFAULT_SUBNET = "10.87.0.0/16"
# Present while minicontainer has switched IPv4 forwarding on (it was off before).
FORWARDING_MARK = "/run/minicontainer.ip_forward"

# Published host ports, held while their container runs: owned value ("port" record) ->
# socket; release_port closes it (this process's, if it holds it: the API runs many).
_reserved: dict[str, socket.socket] = {}
_netlink = None  # this process's netlink socket in the host namespace, opened on first use


def parse_publish(text: str) -> Port:
    """-p [[HOSTIP:][HOSTPORT]:]CONTAINERPORT[/tcp|udp] (IPv4 only). No HOSTPORT (`-p 80`,
    `-p 127.0.0.1::80`): a free one is picked at start (_publish), as docker does."""
    want = f"invalid --publish {text!r}: want [[HOSTIP:][HOSTPORT]:]CONTAINERPORT[/tcp|udp]"
    body, slash, protocol = text.partition("/")
    protocol = protocol if slash else "tcp"
    if protocol not in ("tcp", "udp"):
        raise UsageError(f"{want} (protocol {protocol!r})")
    parts = body.split(":")
    if len(parts) == 1:
        parts = ["", body]
    if len(parts) not in (2, 3):
        raise UsageError(want)
    host_ip = None
    if len(parts) == 3 and parts[0]:
        try:
            host_ip = str(ipaddress.IPv4Address(parts[0]))
        except ValueError:
            raise UsageError(f"{want} ({parts[0]!r} is not an IPv4 address)") from None
        if host_ip == "0.0.0.0":
            host_ip = None
    ports = []
    for p in parts[-2:]:
        if p == "" and not ports:
            ports.append(None)  # the host port: pick a free one
        elif not p.isdigit() or not 1 <= int(p) <= 65535:
            raise UsageError(f"{want} ({p!r} is not a port number)")
        else:
            ports.append(int(p))
    return Port(host_ip=host_ip, host_port=ports[0], container_port=ports[1], protocol=protocol)


def prepare(spec, container) -> list:
    """Before the fork: claim an address, make sure the bridge exists, publish the ports and
    add /etc/hosts and /etc/resolv.conf to the mounts. Returns the step that wires the
    child's new network namespace once it exists (launch.py runs it with the child's pid)."""
    if spec.network.startswith("container:"):
        _join(spec, container, spec.network[len("container:"):])
        return []
    if spec.network != "bridge":
        raise ContainerError(f"unknown network mode {spec.network!r}")
    from minicontainer.kernel.netlink import Netlink

    net = Network(container.store.root)
    host = _host_netlink()
    container.own("lease", f"{net.dir} {container.id}")
    with net.locked():
        address = net.allocate(container.id, spec.hostname or container.id[:12], spec.name)
        trace.note(f"lease {address} in {net.subnet} for {container.id}")
        bridge = net.ensure(host)
        net.write_hosts()
        _publish(spec.ports, address, net, container)
    # For `minicontainer port` and the Python API's ip and host_port(): what was chosen.
    container.update(ip=address, ports=[
        {"host_ip": p.host_ip or "0.0.0.0", "host_port": p.host_port,
         "container_port": p.container_port, "protocol": p.protocol} for p in spec.ports])
    spec.mounts[:0] = net.mounts(spec.root)
    veth = net.veth_prefix + container.id[:15 - len(net.veth_prefix)]  # IFNAMSIZ - 1

    def connect(pid: int) -> None:
        container.own("veth", f"{veth} {os.stat(f'/proc/{pid}/ns/net').st_ino}")
        host.add_veth_into(veth, PEER_NAME, pid, bridge)
        trace.note(f"veth {veth} on {net.bridge} <-> {PEER_NAME} in the container's network "
                   "namespace (netlink)")
        with Netlink(pid=pid) as inside:
            eth0 = inside.index(PEER_NAME)
            inside.add_address(eth0, address, net.subnet.prefixlen)
            inside.set_up(eth0)
            inside.add_default_route(net.gateway)
        trace.note(f"{PEER_NAME}: {address}/{net.subnet.prefixlen} up, default via {net.gateway}")

    return [connect]


class Network:
    """The bridge network of one state root: its names, its subnet and its files."""

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

    def _path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def _read_config(self) -> dict:
        try:
            with open(self._path("config")) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def locked(self) -> "_Lock":
        os.makedirs(self.leases, 0o700, exist_ok=True)
        return _Lock(self._path("lock"))

    # Addresses (hold the lock).

    def allocate(self, cid: str, hostname: str, name: str | None) -> str:
        """Claim a free address for container `cid`; the lease names it for /etc/hosts."""
        if not os.path.exists(self._path("config")):  # pin what we are about to build
            write_atomic(self._path("config"), json.dumps({"bridge": self.bridge,
                                                     "subnet": str(self.subnet)}))
        used = set(os.listdir(self.leases))
        first, count = 2, self.subnet.num_addresses - 3  # not network, gateway, broadcast
        last = _read_int(self._path("cursor"), first - 1)
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
            write_atomic(self._path("cursor"), str(offset))
            return address
        raise ContainerError(f"no free address left in {self.subnet} ({len(used)} in use)")

    def _lease_records(self) -> list[tuple[str, list[str]]]:
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
        for address, fields in self._lease_records():
            if fields[:1] == [cid]:
                return address
        return None

    def release(self, cid: str) -> bool:
        """Drop the leases of `cid`; True if no lease at all remains."""
        records = self._lease_records()
        for address, fields in records:
            if fields[:1] == [cid]:
                try:
                    os.unlink(os.path.join(self.leases, address))
                except FileNotFoundError:
                    pass
        return all(fields[:1] == [cid] for _, fields in records)

    # The bridge, its NAT table and files (hold the lock).

    def ensure(self, host) -> int:
        """The bridge's ifindex, building the bridge and the nft table if not complete."""
        index = host.index(self.bridge)
        if index is not None and os.path.exists(self._path("up")):
            return index
        if index is not None:  # half built by a runtime that died: start again
            host.delete_link(self.bridge)
        self._check_subnet_free(host)
        write_atomic(self._path("resolv.conf"), _resolv_conf())
        index = host.add_bridge(self.bridge)
        host.add_address(index, self.gateway, self.subnet.prefixlen)
        # Let DNATed connections from 127.0.0.1 leave through the bridge (the kernel drops
        # packets with a loopback source on other devices unless asked): this device only.
        _write_sysctl(f"/proc/sys/net/ipv4/conf/{self.bridge}/route_localnet", "1")
        host.set_up(index)
        _nft(self._ruleset())
        _forwarding_on()
        write_atomic(self._path("up"), "")
        trace.note(f"bridge {self.bridge} {self.gateway}/{self.subnet.prefixlen} up, nft table ip "
                   f"{self.table} (masquerade, DNAT maps)")
        return index

    def teardown(self, host) -> None:
        """Remove the bridge, the nft table and the files: nothing uses them any more."""
        _unlink(self._path("up"))
        _nft(f"delete table ip {self.table}", missing_ok=True)
        host.delete_link(self.bridge)
        _forwarding_restore(self.table)
        for name in ("hosts", "resolv.conf", "cursor", "config"):
            _unlink(self._path(name))

    def _check_subnet_free(self, host) -> None:
        for dst, length, oif in host.ipv4_routes():
            if length == 0:
                continue  # the default route overlaps everything
            route = ipaddress.IPv4Network(f"{dst}/{length}", strict=False)
            if route.overlaps(self.subnet):
                raise ContainerError(
                    f"bridge subnet {self.subnet} overlaps the host's route to {route}: "
                    "choose another with MINICONTAINER_SUBNET")

    def _ruleset(self) -> str:
        # Published ports: HOSTPORT -> CONTAINERIP . PORT, or HOSTIP . HOSTPORT -> ...
        # Map elements are added and deleted one by one, with no rule handles to track.
        maps = "".join(
            f"  map {proto}_any {{ type inet_service : ipv4_addr . inet_service; }}\n"
            f"  map {proto}_at {{ type ipv4_addr . inet_service : ipv4_addr . inet_service; }}\n"
            for proto in ("tcp", "udp"))
        return f"""\
table ip {self.table}
delete table ip {self.table}
table ip {self.table} {{
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
    ip saddr {self.subnet} oifname != "{self.bridge}" masquerade
    oifname "{self.bridge}" ip saddr 127.0.0.0/8 masquerade
    oifname "{self.bridge}" ip saddr {self.subnet} ct status dnat masquerade
  }}
}}
"""

    def write_hosts(self) -> None:
        """Rewrite the shared hosts file in place (it is bind-mounted: a rename would not be
        seen) with one pwrite, padded to its old length, so a reader never sees it empty."""
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        lines += [f"{address}\t{' '.join(fields[1:])}" for address, fields in self._lease_records()]
        data = ("\n".join(lines) + "\n").encode()
        fd = os.open(self._path("hosts"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            pad = os.fstat(fd).st_size - len(data)
            if pad > 0:
                data += b"#" * (pad - 1) + b"\n"
            os.pwrite(fd, data, 0)
        finally:
            os.close(fd)

    def mounts(self, root) -> list[Mount]:
        """Read-only binds of the network's hosts and resolv.conf (skipped where a read-only
        rootfs has no file to mount on, or has a symlink there)."""
        found = []
        for name in ("hosts", "resolv.conf"):
            target = "/etc/" + name
            inside = root.path + target
            if os.path.islink(inside) or (root.readonly and not os.path.exists(inside)):
                continue
            found.append(Mount(kind="bind", source=self._path(name), target=target,
                               readonly=True))
        return found


def _publish(ports: list, address: str, net: Network, container) -> None:
    """Hold each host port (so nothing else can take it, and a taken one fails here), then
    add its DNAT map elements in one nft transaction. A port without a host port gets a
    free one from the kernel (bind to port 0): held, under the network's lock, it is never
    handed to two containers."""
    elements = []
    for port in ports:
        sock = _reserve(port)
        port.host_port = sock.getsockname()[1]
        if port.host_ip:
            table_map, key = f"{port.protocol}_at", f"{port.host_ip} . {port.host_port}"
        else:
            table_map, key = f"{port.protocol}_any", str(port.host_port)
        owned = f"{net.table} {table_map} {key.replace(' . ', ':')}"
        _reserved[owned] = sock
        container.own("port", owned)
        elements.append(f"add element ip {net.table} {table_map} "
                        f"{{ {key} : {address} . {port.container_port} }}")
    if elements:
        try:
            _nft("\n".join(elements) + "\n")
            for element in elements:
                trace.call("nft", (element,), 0)
        except ContainerError as e:
            if "File exists" not in str(e):
                raise
            wanted = ", ".join(f"{p.host_ip or '0.0.0.0'}:{p.host_port}/{p.protocol}" for p in ports)
            raise ContainerError(f"cannot publish {wanted}: already forwarded to another "
                                 "container") from None


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


def _join(spec, container, name: str) -> None:
    """--network container:NAME: the child joins NAME's network namespace through an fd we
    open now (so the namespace cannot vanish or be swapped between here and its setns)."""
    root = container.store.root
    try:
        cid = os.readlink(os.path.join(root, "names", name))
    except OSError:
        raise ContainerError(f'cannot join the network of "{name}": no such container') from None
    pid = _container_pid(root, cid)
    if pid is None:
        raise ContainerError(f'cannot join the network of "{name}": it is not running')
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    spec.namespace_paths = dict(spec.namespace_paths or {}, net=f"/proc/self/fd/{fd}")
    net = Network(root)
    if os.path.isdir(net.leases) and net.lease_of(cid):
        spec.mounts[:0] = net.mounts(spec.root)


def _container_pid(root: str, cid: str) -> int | None:
    """The container's first process, as recorded in its state (pid and start time)."""
    from minicontainer.runtime.state import process_start_time

    try:
        with open(os.path.join(root, "containers", cid, "state.json")) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    pid = record.get("pid")
    if pid and record.get("pid_start") and process_start_time(pid) == record["pid_start"]:
        return pid
    return None


# Releasers (state.RELEASERS): each succeeds when its resource is already gone.

def release_lease(value: str) -> None:
    """VALUE "NETDIR CID": drop the container's address; the last one out tears down."""
    netdir, cid = value.rsplit(" ", 1)
    if not os.path.isdir(os.path.join(netdir, "leases")):
        return  # the lease was never taken
    net = Network(os.path.dirname(netdir))
    with net.locked() as lock:
        if not net.release(cid):
            net.write_hosts()
            return
        _unlink(net._path("up"))  # from here on the network counts as not built
        trace.note(f"last lease gone: nft delete table ip {net.table}, delete link {net.bridge} "
                   "(in a background process)")
        # Deleting a bridge takes 30-50 ms (the kernel waits for RCU grace periods): leave it
        # to a detached process that inherits the lock, so the container's exit is not held
        # up, while the next start still waits (on the lock) until the teardown is complete.
        _in_background(lambda: net.teardown(_host_netlink()), keep_fd=lock.fd)


def release_veth(value: str) -> None:
    """VALUE "NAME NETNS-INODE": the host end, and the container's network namespace.

    The kernel deletes a veth pair with the namespace that holds one end, so when no process
    is left in that namespace there is nothing to do (and deleting it ourselves would only
    wait for the kernel's teardown of the namespace: 20-40 ms). When `container:` joiners
    still live in it, the veth is deleted here: they lose the network with it, as in docker."""
    name, _, inode = value.partition(" ")
    if inode and not _namespace_in_use(f"net:[{inode}]"):
        trace.note(f"veth {name}: deleted by the kernel with its network namespace")
        return
    trace.call("delete_link", (name,), _host_netlink().delete_link(name))


def release_port(value: str) -> None:
    """VALUE "TABLE MAP KEY": one published port's DNAT map element (KEY: PORT or IP:PORT)."""
    held = _reserved.pop(value, None)
    if held is not None:
        held.close()
    table, table_map, key = value.split(" ")
    script = f"delete element ip {table} {table_map} {{ {key.replace(':', ' . ')} }}"
    _nft(script, missing_ok=True)
    trace.call("nft", (script,), 0)


# Helpers.

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


class _Lock:
    def __init__(self, path: str):
        self.path = path

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # releases the flock


def _in_background(work, keep_fd: int) -> None:
    """Run `work` in a detached grandchild (no zombie left to us, no terminal, no stdio, no
    inherited fd but `keep_fd`) and return at once."""
    child = os.fork()
    if child:
        os.waitpid(child, 0)
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)  # the grandchild is reparented to init, which reaps it
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, keep_fd)
        os.closerange(keep_fd + 1, 65536)
        global _netlink
        _netlink = None  # its socket was the parent's (and is closed now): open our own
        from minicontainer.kernel import nftables

        nftables.reset()
        work()
        os._exit(0)
    except BaseException:
        os._exit(1)


def _host_netlink():
    global _netlink
    if _netlink is None:
        from minicontainer.kernel.netlink import Netlink

        _netlink = Netlink()
    return _netlink


def _nft(script: str, missing_ok: bool = False) -> str:
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
    listing = _nft("list tables")
    others = [line for line in listing.splitlines()
              if line.startswith("table ip minicontainer") and line.split()[2] != table]
    if not others:  # no other minicontainer network (another state root) still needs it
        _write_sysctl("/proc/sys/net/ipv4/ip_forward", "0")
        _unlink(FORWARDING_MARK)


def _resolv_conf() -> str:
    """The host's resolver settings minus loopback nameservers (a stub resolver on the host's
    127.0.0.53 is not reachable from the container's namespace)."""
    for source in ("/run/systemd/resolve/resolv.conf", "/etc/resolv.conf"):
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


def _write_sysctl(path: str, text: str) -> None:
    """A /proc/sys setting: written in place (procfs has no rename)."""
    with open(path, "w") as f:
        f.write(text)


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
