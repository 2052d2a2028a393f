"""Container networking: `--network bridge`, `--network container:NAME` and `-p/--publish`.

    none (default)   a new network namespace with only `lo` (the child brings it up itself):
                     this package is never imported, nothing to clean up
    host             no new network namespace: the container shares the host's
    bridge           a new namespace, joined to a host bridge by a veth pair (links.py)
    container:NAME   the child setns()es into NAME's network namespace instead of a new one

One bridge network per state root (so two roots, two test sessions say, never share one),
in three parts:

    ipam.py    the network's names and subnet, and its addresses: one lease file each
    links.py   the bridge, each container's veth, the nft table, the published ports
    hosts.py   /etc/hosts and /etc/resolv.conf, shared by the network's containers

This module puts them together: `prepare` before the container's fork, and the releasers
state.py calls when a container goes. `-p` arrives parsed (spec.Port: cli/run.py parses it).

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

import os

from minicontainer.errors import ContainerError
from minicontainer.kernel import trace
from minicontainer.runtime.network import hosts, links
from minicontainer.runtime.network.ipam import Network


class Attachment:
    """What `prepare` gives the launch: the mounts to add before the spec's own (the
    network's /etc/hosts and resolv.conf), the namespaces to join instead of new ones
    ({"net": path}), and the steps that wire the child's new network namespace once it
    exists (each called with the child's pid)."""

    __slots__ = ("mounts", "namespace_paths", "steps")

    def __init__(self, mounts=(), namespace_paths=None, steps=()):
        self.mounts, self.steps = list(mounts), list(steps)
        self.namespace_paths = namespace_paths or {}

    def applied_to(self, spec):
        """A new spec: `spec` (left as it is) with these mounts and namespaces."""
        return spec.replace(mounts=self.mounts + spec.mounts,
                            namespace_paths={**spec.namespace_paths, **self.namespace_paths})


def prepare(spec, container) -> Attachment:
    """Before the fork: claim an address, make sure the bridge exists, publish the ports and
    write the hosts file; or, for container:NAME, open NAME's network namespace. Records the
    address and the published ports in the container's record (for `minicontainer port`
    and the Python API's ip and host_port())."""
    if spec.network.startswith("container:"):
        return _join(spec, container, spec.network[len("container:"):])
    if spec.network != "bridge":
        raise ContainerError(f"unknown network mode {spec.network!r}")
    from minicontainer.kernel.netlink import Netlink

    net = Network(container.store.root)
    container.own("lease", f"{net.dir} {container.id}")
    with net.locked(), Netlink() as host:
        address = net.allocate(container.id, spec.hostname or container.id[:12], spec.name)
        trace.note(f"lease {address} in {net.subnet} for {container.id}")
        hosts.write_resolv_conf(net)
        bridge = links.ensure(net, host)
        hosts.write_hosts(net)
        ports = links.publish(net, spec.ports, address, container)
    container.update(ip=address, ports=[
        {"host_ip": p.host_ip or "0.0.0.0", "host_port": p.host_port,
         "container_port": p.container_port, "protocol": p.protocol} for p in ports])
    veth = net.veth(container.id)

    def connect(pid: int) -> None:
        container.own("veth", f"{veth} {os.stat(f'/proc/{pid}/ns/net').st_ino}")
        with Netlink() as host:
            links.connect(net, host, bridge, veth, pid, address)

    return Attachment(mounts=hosts.mounts(net, spec.root), steps=[connect])


def joinable(store, name: str, own_id: str | None = None):
    """The running container whose network namespace container:NAME joins; ContainerError
    naming why not (also what `run --dry-run` checks)."""
    try:
        other = store.lookup(name)
    except ContainerError as e:  # none by that name or id, or an id prefix matching several
        why = str(e)
        raise ContainerError(f'cannot join the network of "{name}": ' + (
            "no such container" if why.startswith("no such container") else why)) from None
    if other.id == own_id or not other.alive():
        raise ContainerError(f'cannot join the network of "{name}": it is not running')
    return other


def planned(spec, store) -> Attachment:
    """What `prepare` would give, for `run --dry-run`, changing nothing: the same mounts, the
    namespace container:NAME joins by NAME's pid (a start opens an fd on it instead), no
    steps; refused where `prepare` would refuse before building anything (a network that
    does not run, a bad bridge subnet or name, a port to publish that is taken)."""
    if spec.network.startswith("container:"):
        other = joinable(store, spec.network[len("container:"):])
        return _joining(spec, store, other, f"/proc/{other.record['pid']}/ns/net")
    if spec.network != "bridge":
        raise ContainerError(f"unknown network mode {spec.network!r}")
    net = Network(store.root)
    links.check_publishable(spec.ports)
    return Attachment(mounts=hosts.mounts(net, spec.root))


def _join(spec, container, name: str) -> Attachment:
    """--network container:NAME: the child joins NAME's network namespace through an fd we
    open now (so the namespace cannot vanish or be swapped between here and its setns)."""
    other = joinable(container.store, name, container.id)
    fd = os.open(f"/proc/{other.record['pid']}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    # ours until the container is released (a long-lived caller, the Python API, must not
    # collect one per container)
    container.held.append(open(fd, "rb", buffering=0))
    if not other.alive():  # its pid was reused between the check and the open: not its net
        raise ContainerError(f'cannot join the network of "{name}": it is not running')
    return _joining(spec, container.store, other, f"/proc/self/fd/{fd}")


def _joining(spec, store, other, path: str) -> Attachment:
    """Joining `other`'s network namespace at `path`; if `other` is on the bridge network,
    its hosts files come too."""
    net = Network(store.root)
    found = net.in_use() and net.lease_of(other.id)
    return Attachment(mounts=hosts.mounts(net, spec.root) if found else (),
                      namespace_paths={"net": path})


# Releasers (state.RELEASERS): each succeeds when its resource is already gone.

def release_lease(value: str) -> None:
    """VALUE "NETDIR CID": drop the container's address; the last one out tears down."""
    netdir, cid = value.rsplit(" ", 1)
    if not os.path.isdir(os.path.join(netdir, "leases")):
        return  # the lease was never taken
    net = Network(os.path.dirname(netdir))
    with net.locked() as lock:
        if not net.release(cid):
            hosts.write_hosts(net)
            return
        links.mark_down(net)  # from here on the network counts as not built
        trace.note(f"last lease gone: nft delete table ip {net.table}, delete link {net.bridge} "
                   "(in a background process)")
        # Deleting a bridge takes 30-50 ms (the kernel waits for RCU grace periods): leave it
        # to a detached process that inherits the lock, so the container's exit is not held
        # up, while the next start still waits (on the lock) until the teardown is complete.
        _in_background(lambda: _teardown(net), keep_fd=lock.fd)


def _teardown(net: Network) -> None:
    """Nothing uses the network any more: the bridge, the nft table, then its files."""
    from minicontainer.kernel import nftables
    from minicontainer.kernel.netlink import Netlink

    nftables.reset()  # its context's netlink socket was our parent's (and is closed now)
    with Netlink() as host:
        links.teardown(net, host)
    hosts.remove(net)
    net.forget()


def release_veth(value: str) -> None:
    """VALUE "NAME NETNS-INODE": the host end, and the container's network namespace."""
    name, _, inode = value.partition(" ")
    links.delete_veth(name, inode)


def release_port(value: str) -> None:
    """VALUE "TABLE MAP KEY": one published port's DNAT map element (KEY: PORT or IP:PORT)."""
    links.unpublish(value)


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
        work()
        os._exit(0)
    except BaseException:
        os._exit(1)
