"""Networking (issue 5): none, host, bridge, container:NAME, published ports, and cleanup.

Traffic goes only between the host's loopback, the test's own bridge and the namespaces of
the containers started here: never anywhere else. Outbound masquerading is checked by
reading the nft ruleset, not by sending anything out.

Every test here is also checked for network leftovers: the session's bridge, veths, nft
table, leases, named network namespaces.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import PYTHON
from minicontainer.runtime.network.ipam import Network
from minicontainer.runtime.network.links import FORWARDING_MARK


@pytest.fixture(scope="module")
def net(state_root) -> Network:
    """Names and subnet of this session's bridge network (derived from its state root)."""
    return Network(state_root)


def _links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def _nft_tables() -> list[str]:
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return [line.strip() for line in out.splitlines()]


def _named_netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def network_leftovers(net: Network, netns_before: set[str]) -> list[str]:
    problems = []
    links = [n for n in _links() if n == net.bridge or n.startswith(net.veth_prefix)]
    if links:
        problems.append(f"links: {links}")
    if f"table ip {net.table}" in _nft_tables():
        problems.append(f"nft table {net.table}")
    if os.path.isdir(net.leases) and os.listdir(net.leases):
        problems.append(f"leases: {os.listdir(net.leases)}")
    if _named_netns() - netns_before:
        problems.append(f"named netns: {_named_netns() - netns_before}")
    if os.path.exists(FORWARDING_MARK) and \
            not any(t.startswith("table ip minicontainer") for t in _nft_tables()):
        problems.append(f"{FORWARDING_MARK} without any minicontainer network")
    return problems


def settled(net: Network, netns_before: set[str] | None = None) -> list[str]:
    """network_leftovers once the kernel and the background teardown have had their moment:
    the last container's runtime hands the bridge's deletion to a detached process, and a
    veth goes when the kernel frees the container's namespace."""
    before = _named_netns() if netns_before is None else netns_before
    deadline = time.monotonic() + 5
    problems = network_leftovers(net, before)
    while problems and time.monotonic() < deadline:
        time.sleep(0.05)
        problems = network_leftovers(net, before)
    return problems


@pytest.fixture(autouse=True)
def no_network_left_behind(request, net):
    before = _named_netns()
    yield
    problems = settled(net, before)
    if problems:
        for link in _links():
            if link == net.bridge or link.startswith(net.veth_prefix):
                subprocess.run(["ip", "link", "del", link], capture_output=True)
        subprocess.run(["nft", "delete", "table", "ip", net.table], capture_output=True)
        pytest.fail(f"network left behind after {request.node.name}: {'; '.join(problems)}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(host: str, port: int, deadline: float) -> str:
    """GET / over a raw socket (no proxy settings can send it elsewhere), retried until the
    server answers or the deadline passes."""
    while True:
        try:
            with socket.create_connection((host, port), timeout=2) as s:
                s.sendall(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
                chunks = []
                while chunk := s.recv(65536):
                    chunks.append(chunk)
            reply = b"".join(chunks).decode(errors="replace")
            if reply:
                return reply
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no HTTP answer from {host}:{port}")
        time.sleep(0.1)


def lease_of(net: Network, name: str) -> str | None:
    for address in os.listdir(net.leases):
        with open(os.path.join(net.leases, address)) as f:
            if name in f.read().split()[2:]:
                return address
    return None


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM a runtime (it forwards it to the container), then wait for it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --network none and host


def test_none_is_the_default_and_sees_only_lo(mc, rootfs):
    for args in ([], ["--network", "none"]):
        r = mc("run", *args, rootfs, "ip", "-o", "link", "show")
        assert r.returncode == 0, r.stderr
        names = [line.split(":")[1].strip() for line in r.stdout.splitlines()]
        assert names == ["lo"]
        assert "UP" in r.stdout.split("<", 1)[1].split(">")[0]


def test_none_imports_no_network_code(mc_cmd, rootfs):
    r = subprocess.run([PYTHON, "-X", "importtime", *mc_cmd[1:], "run", rootfs, "true"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "pyroute2" not in r.stderr
    assert "minicontainer.runtime.network" not in r.stderr


def test_host_shares_the_host_network(mc, rootfs):
    r = mc("run", "--network", "host", rootfs, "ip", "-o", "link", "show")
    assert r.returncode == 0, r.stderr
    inside = {line.split(":")[1].strip().split("@")[0] for line in r.stdout.splitlines()}
    assert inside == set(_links())


# --network bridge


def test_bridge_gives_address_route_hosts_and_nat(mc, rootfs, net):
    script = ("ip -4 -o addr show dev eth0; ip route; echo =====; cat /etc/hosts; echo =====; "
              "cat /etc/resolv.conf; echo =====; ping -c 1 -W 2 " + net.gateway)
    r = mc("run", "--network", "bridge", "--hostname", "box", "--name", "netbox", rootfs,
           "sh", "-c", script)
    assert r.returncode == 0, r.stdout + r.stderr
    addr_route, hosts, resolv, ping = r.stdout.split("=====\n")
    address = addr_route.split()[3].split("/")[0]
    assert address in [str(a) for a in net.subnet.hosts()] and address != net.gateway
    assert f"default via {net.gateway} dev eth0" in addr_route
    assert f"{address}\tbox netbox" in hosts
    assert "127.0.0.1\tlocalhost" in hosts
    assert not any(line.split()[1].startswith("127.") for line in resolv.splitlines()
                   if line.startswith("nameserver"))
    assert "1 packets received" in ping


def test_two_containers_talk_tcp_by_name_and_address(mc, mc_cmd, rootfs, net):
    server = subprocess.Popen(
        [*mc_cmd, "run", "--name", "srv", "--network", "bridge", rootfs, "sh", "-c",
         "echo pong-by-name | nc -l -p 5000; echo pong-by-address | nc -l -p 5000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        address = wait_for(lambda: os.path.isdir(net.leases) and lease_of(net, "srv"), 20,
                           "the server's lease")
        client = ("for i in $(seq 50); do nc -w 2 srv 5000 2>/dev/null && break; sleep 0.1; done; "
                  f"for i in $(seq 50); do nc -w 2 {address} 5000 2>/dev/null && break; sleep 0.1; done")
        r = mc("run", "--network", "bridge", rootfs, "sh", "-c", client)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["pong-by-name", "pong-by-address"]
        assert server.wait(timeout=15) == 0
    finally:
        stop(server)


def test_a_running_container_sees_names_of_later_ones(mc, mc_cmd, rootfs):
    early = subprocess.Popen(
        [*mc_cmd, "run", "--network", "bridge", rootfs, "sh", "-c",
         "n=0; until grep -q ' late$' /etc/hosts; do sleep 0.1; n=$((n+1)); "
         "[ $n -gt 300 ] && exit 1; done; echo saw-late"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        r = mc("run", "--network", "bridge", "--name", "late", rootfs, "sleep", "1")
        assert r.returncode == 0, r.stderr
        out, err = early.communicate(timeout=40)
        assert early.returncode == 0 and out.split() == ["saw-late"], err
    finally:
        stop(early)


def test_published_port_answers_http_on_loopback_and_host_address(mc_cmd, rootfs, net):
    port, port_at = free_port(), free_port()
    www = tempfile.mkdtemp(prefix="mc-www-")
    with open(os.path.join(www, "index.html"), "w") as f:
        f.write("hello from the container\n")
    web = subprocess.Popen(
        [*mc_cmd, "run", "--init", "--network", "bridge", "-p", f"{port}:80",
         "-p", f"127.0.0.1:{port_at}:8080/tcp", "-v", f"{www}:/www:ro", rootfs,
         "sh", "-c", "httpd -p 8080 -h /www; exec httpd -f -p 80 -h /www"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 20
        assert "hello from the container" in http_get("127.0.0.1", port, deadline)
        assert "hello from the container" in http_get("127.0.0.1", port_at, deadline)
        # The host's own (non-loopback) address: the bridge's, which this test created.
        assert "hello from the container" in http_get(net.gateway, port, deadline)
        # From another container, through the host's address (hairpin NAT).
        r = subprocess.run([*mc_cmd, "run", "--network", "bridge", rootfs, "wget", "-q", "-O",
                            "-", f"http://{net.gateway}:{port}/"],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
        assert r.returncode == 0 and "hello from the container" in r.stdout, r.stderr

        # The NAT is there to be seen, and the port is held against other users.
        ruleset = subprocess.run(["nft", "list", "table", "ip", net.table],
                                 capture_output=True, text=True).stdout
        assert f'ip saddr {net.subnet} oifname != "{net.bridge}" masquerade' in ruleset
        assert f"{port} : " in ruleset and f"127.0.0.1 . {port_at} : " in ruleset
        with open(f"/proc/sys/net/ipv4/conf/{net.bridge}/route_localnet") as f:
            assert f.read().strip() == "1"
        with open("/proc/sys/net/ipv4/ip_forward") as f:
            assert f.read().strip() == "1"
        with pytest.raises(OSError):
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))
    finally:
        stop(web)
        subprocess.run(["rm", "-rf", www])
    # Gone with the container: the port is free again.
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_twenty_concurrent_containers_get_distinct_addresses(mc_cmd, rootfs, net):
    sync = tempfile.mkdtemp(prefix="mc-sync-")
    # Each container checks in, waits until all 20 are up at once, then reaches the bridge.
    script = ("touch /sync/$(hostname); n=0; "
              "while [ $(ls /sync | wc -l) -lt 20 ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done; "
              "ip -4 -o addr show dev eth0 | awk '{print $4}'; "
              f"ping -c 1 -W 5 {net.gateway} >/dev/null && echo reached")
    procs = [subprocess.Popen([*mc_cmd, "run", "--network", "bridge", "-v", f"{sync}:/sync",
                               rootfs, "sh", "-c", script],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True)
             for _ in range(20)]
    try:
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        subprocess.run(["rm", "-rf", sync])
    assert [p.returncode for p in procs] == [0] * 20, [err for _, err in results]
    addresses = [out.split()[0] for out, _ in results]
    assert all(out.split()[1:] == ["reached"] for out, _ in results), results
    assert len(set(addresses)) == 20, addresses


def test_nothing_remains_after_100_sequential_runs(mc_cmd, rootfs, net):
    failures = []
    for i in range(100):
        r = subprocess.run([*mc_cmd, "run", "--network", "bridge", rootfs, "true"],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
        if r.returncode != 0:
            failures.append((i, r.stderr))
    assert not failures, failures[:3]
    assert settled(net) == []


def test_sigkill_of_the_runtime_mid_start_then_gc_leaves_nothing(mc, mc_cmd, rootfs, net):
    port = free_port()
    args = [*mc_cmd, "run", "--network", "bridge", "-p", f"{port}:80", rootfs, "sleep", "30"]

    def veth_exists():
        return any(n.startswith(net.veth_prefix) for n in _links())

    def lease_exists():
        return os.path.isdir(net.leases) and os.listdir(net.leases)

    # Killed at observed points (address leased; veth made) and at fixed delays, which land
    # in different phases depending on the machine's speed: import, nft, veth, child set-up.
    moments = [("lease", lease_exists), ("veth", veth_exists)] + \
              [(f"{d}s", d) for d in (0.03, 0.1, 0.15, 0.2, 0.3, 0.5)]
    for label, moment in moments:
        runtime = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        if callable(moment):
            deadline = time.monotonic() + 20
            while not moment() and runtime.poll() is None and time.monotonic() < deadline:
                time.sleep(0.001)
        else:
            time.sleep(moment)
        runtime.kill()
        runtime.wait()
        r = mc("gc")
        assert r.returncode == 0, (label, r.stderr)
        assert settled(net) == [], label
    with socket.socket() as s:
        s.bind(("0.0.0.0", port))  # the port is no longer held


# --network container:NAME


def test_container_joins_another_containers_network(mc, mc_cmd, rootfs, net):
    first = subprocess.Popen(
        [*mc_cmd, "run", "--init", "--name", "first", "--network", "bridge", rootfs,
         "sh", "-c", "echo from-first | nc -l -p 6000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        address = wait_for(lambda: os.path.isdir(net.leases) and lease_of(net, "first"), 20,
                           "the first container's lease")
        script = ("ip -4 -o addr show dev eth0 | awk '{print $4}'; "
                  "for i in $(seq 50); do nc -w 2 127.0.0.1 6000 && break; sleep 0.1; done")
        deadline = time.monotonic() + 20
        while True:  # until the first container runs (its lease comes before its process)
            r = mc("run", "--network", "container:first", rootfs, "sh", "-c", script)
            if r.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert r.returncode == 0, r.stderr
        # Same namespace: same eth0 address, and the first one's loopback listener.
        assert r.stdout.split() == [f"{address}/{net.subnet.prefixlen}", "from-first"]
    finally:
        stop(first)


def test_container_network_by_id_prefix(rootfs, state_root):
    """container:NAME takes an id or a unique id prefix too, as docker's does."""
    import minicontainer
    from minicontainer.runtime import api

    with minicontainer.Container(rootfs, ["sleep", "60"], root=state_root) as owner:
        r = minicontainer.run(rootfs, ["readlink", "/proc/self/ns/net"], root=state_root,
                              network=f"container:{owner.id[:12]}", check=True, text=True)
        pid = api.state(owner.id, state_root)["pid"]
        assert r.stdout.strip() == os.readlink(f"/proc/{pid}/ns/net")


def test_joining_leaves_no_fd_in_a_long_lived_caller(rootfs, state_root):
    """The Python API runs in the caller's process: the fd of the other container's network
    namespace, held for the child's setns, is closed with the container, not collected."""
    import minicontainer

    with minicontainer.Container(rootfs, ["sleep", "60"], root=state_root, name="netowner"):
        minicontainer.run(rootfs, ["true"], root=state_root, network="container:netowner",
                          check=True)  # the first run imports what it needs
        before = sorted(os.listdir("/proc/self/fd"))
        for _ in range(3):
            minicontainer.run(rootfs, ["true"], root=state_root,
                              network="container:netowner", check=True)
        assert sorted(os.listdir("/proc/self/fd")) == before


def test_joining_a_missing_container_fails_cleanly(mc, rootfs):
    r = mc("run", "--network", "container:nosuch", rootfs, "true")
    assert r.returncode == 125
    assert r.stderr.strip() == 'minicontainer: cannot join the network of "nosuch": no such container'


# Bad input


@pytest.mark.parametrize("publish", ["abc:80", "0:80", "8080:70000", "8080:80/sctp",
                                     "1.2.3:8080:80", "a:b:c:d", "::1:8080:80", "8080:"])
def test_malformed_publish_is_refused(mc, rootfs, publish):
    r = mc("run", "-p", publish, rootfs, "true")
    assert r.returncode == 125
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("minicontainer: invalid --publish"), r.stderr


def test_publish_needs_a_bridge(mc, rootfs):
    r = mc("run", "--network", "none", "-p", "8080:80", rootfs, "true")
    assert r.returncode == 125
    assert "needs --network bridge" in r.stderr


def test_taken_port_is_refused_and_nothing_is_left(mc, rootfs, net):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for host_ip in ("0.0.0.0", "127.0.0.1"):
            r = mc("run", "-p", f"{host_ip}:{port}:80", rootfs, "true")
            assert r.returncode == 125
            assert r.stderr.splitlines() == [
                f"minicontainer: cannot publish {host_ip}:{port}/tcp: "
                "the port is already in use on the host"]
            assert settled(net) == []


def test_publishing_on_an_address_the_host_lacks_is_refused(mc, rootfs, net):
    r = mc("run", "-p", f"{net.subnet.network_address + 7}:8080:80", rootfs, "true")
    assert r.returncode == 125
    assert "is not an address of this host" in r.stderr
