"""Bridge address allocation (runtime/network/ipam.py: names, leases, cursor) and the files
every container of the network sees (hosts.py), on a temp state root: files only, no root,
no netlink."""
from __future__ import annotations

import os

import pytest

from minicontainer.errors import ContainerError
from minicontainer.runtime.network import hosts
from minicontainer.runtime.network.ipam import Network


@pytest.fixture
def net(tmp_path, monkeypatch):
    monkeypatch.delenv("MINICONTAINER_SUBNET", raising=False)
    monkeypatch.delenv("MINICONTAINER_BRIDGE", raising=False)
    return Network(str(tmp_path))


def allocate(net, cid, hostname=None, name=None):
    with net.locked():
        return net.allocate(cid, hostname or cid, name)


def test_a_root_gets_its_own_slash_24_bridge_and_names(net, tmp_path):
    assert net.subnet.prefixlen == 24 and str(net.subnet).startswith("10.86.")
    assert net.gateway == str(net.subnet.network_address + 1)
    assert net.bridge.startswith("mc-") and len(net.bridge) <= 15
    assert net.table.startswith("minicontainer_") and net.veth_prefix.startswith("mc")
    other = Network(str(tmp_path / "elsewhere"))
    assert other.bridge != net.bridge  # two roots never share a bridge


def test_addresses_are_handed_out_in_order_from_after_the_gateway(net):
    base = net.subnet.network_address
    assert [allocate(net, f"c{i}") for i in range(3)] == [str(base + 2), str(base + 3),
                                                          str(base + 4)]


def test_a_freed_address_is_not_handed_out_again_at_once(net):
    first = allocate(net, "a")
    allocate(net, "b")
    assert net.release("a") is False  # b still holds one
    assert allocate(net, "c") != first  # the cursor moved on
    assert net.lease_of("a") is None and net.lease_of("b") is not None


def test_releasing_the_last_lease_says_so(net):
    allocate(net, "a")
    assert net.release("a") is True


def test_the_search_wraps_around_to_free_addresses(net, monkeypatch, tmp_path):
    monkeypatch.setenv("MINICONTAINER_SUBNET", "10.99.0.0/29")  # 5 usable addresses
    small = Network(str(tmp_path / "small"))
    got = [allocate(small, f"c{i}") for i in range(5)]
    assert got == [f"10.99.0.{i}" for i in range(2, 7)]
    with pytest.raises(ContainerError, match=r"no free address left in 10.99.0.0/29 \(5 in use\)"):
        allocate(small, "c5")
    small.release("c1")
    assert allocate(small, "c6") == "10.99.0.3"


def test_the_subnet_and_bridge_are_pinned_once_used(net, monkeypatch, tmp_path):
    allocate(net, "a")
    monkeypatch.setenv("MINICONTAINER_SUBNET", "10.55.0.0/24")
    monkeypatch.setenv("MINICONTAINER_BRIDGE", "other0")
    again = Network(str(tmp_path))
    assert again.subnet == net.subnet and again.bridge == net.bridge


def test_overrides_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MINICONTAINER_SUBNET", "10.55.0.0/24")
    monkeypatch.setenv("MINICONTAINER_BRIDGE", "br-test")
    n = Network(str(tmp_path))
    assert str(n.subnet) == "10.55.0.0/24" and n.bridge == "br-test" and n.gateway == "10.55.0.1"


@pytest.mark.parametrize("subnet, bridge, words", [
    ("10.55.0.0/30", None, "too small"),
    ("10.55.0.1/24", None, "bad bridge subnet"),
    ("not-a-subnet", None, "bad bridge subnet"),
    (None, "a-name-far-too-long", "bad bridge name"),
    (None, "has space", "bad bridge name"),
])
def test_bad_overrides(monkeypatch, tmp_path, subnet, bridge, words):
    if subnet:
        monkeypatch.setenv("MINICONTAINER_SUBNET", subnet)
    if bridge:
        monkeypatch.setenv("MINICONTAINER_BRIDGE", bridge)
    with pytest.raises(ContainerError, match=words):
        Network(str(tmp_path))


def test_leases_name_their_container_and_the_hosts_file_lists_them(net):
    a = allocate(net, "cid-a", "host-a", "web")
    b = allocate(net, "cid-b", "host-b")
    with open(os.path.join(net.leases, a)) as f:
        assert f.read() == "cid-a host-a web\n"
    hosts.write_hosts(net)
    with open(os.path.join(net.dir, "hosts")) as f:
        text = f.read()
    assert f"{a}\thost-a web\n" in text and f"{b}\thost-b\n" in text
    assert text.startswith("127.0.0.1\tlocalhost\n")


def test_the_hosts_file_is_rewritten_in_place_never_shorter(net):
    allocate(net, "a", "a-long-hostname")
    allocate(net, "b")
    hosts.write_hosts(net)
    path = os.path.join(net.dir, "hosts")
    inode, size = os.stat(path).st_ino, os.stat(path).st_size
    net.release("a")
    hosts.write_hosts(net)
    assert os.stat(path).st_ino == inode  # bind-mounted: a rename would not be seen
    with open(path) as f:
        text = f.read()
    assert len(text) == size and "a-long-hostname" not in text and text.endswith("#\n")


def test_the_network_mounts_of_a_rootfs(net, tmp_path):
    from minicontainer.spec import Root

    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "hosts").write_text("")
    os.symlink("/run/resolv.conf", rootfs / "etc" / "resolv.conf")
    mounts = hosts.mounts(net, Root(path=str(rootfs), readonly=False))
    assert [(m.source, m.target, m.readonly) for m in mounts] == \
        [(os.path.join(net.dir, "hosts"), "/etc/hosts", True)]  # a symlink is left alone


def test_network_files_are_replaced_whole(tmp_path):
    # Network() reads `config` without the lock: a writer must never expose a half-written
    # file (an empty config once failed one of 20 concurrent starts with a JSONDecodeError).
    from minicontainer.runtime.state import write_atomic as _write  # what network.py writes with

    path = str(tmp_path / "config")
    _write(path, '{"old": 1}')
    with open(path) as reader:  # a reader that opened the old file...
        _write(path, '{"new": 2}')
        assert reader.read() == '{"old": 1}'  # ...still reads all of it
    with open(path) as f:
        assert f.read() == '{"new": 2}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config"]


def test_veth_names_fit_ifnamsiz_and_differ_by_container(net):
    names = {net.veth("a" * 64), net.veth("b" * 64)}
    assert len(names) == 2 and all(n.startswith(net.veth_prefix) and len(n) == 15
                                   for n in names)


def test_a_released_address_comes_back_once_the_others_are_taken(net, monkeypatch, tmp_path):
    monkeypatch.setenv("MINICONTAINER_SUBNET", "10.99.0.0/29")
    small = Network(str(tmp_path / "small"))
    first = allocate(small, "a")
    small.release("a")
    assert [allocate(small, f"c{i}") for i in range(5)][-1] == first
    assert small.lease_of("a") is None and small.lease_of("c4") == first


def test_releasing_an_unknown_container_changes_nothing(net):
    a = allocate(net, "a")
    assert net.release("nobody") is False and net.lease_of("a") == a


def test_a_forgotten_network_is_derived_afresh(net, monkeypatch, tmp_path):
    allocate(net, "a")
    net.release("a")
    net.forget()  # the last lease went and the network was torn down
    monkeypatch.setenv("MINICONTAINER_SUBNET", "10.55.0.0/24")
    again = Network(str(tmp_path))
    assert str(again.subnet) == "10.55.0.0/24"
    assert allocate(again, "b") == "10.55.0.2"  # the cursor went with it


def test_resolv_conf_keeps_what_a_container_can_reach(tmp_path):
    source = tmp_path / "resolv.conf"
    source.write_text("nameserver 127.0.0.53\nnameserver 9.9.9.9\nnameserver ::1\n"
                      "search example.org\noptions edns0\n# a comment\n")
    assert hosts.resolv_conf([str(tmp_path / "missing"), str(source)]) == \
        "nameserver 9.9.9.9\nsearch example.org\noptions edns0\n"
    source.write_text("nameserver 127.0.0.53\n")
    assert hosts.resolv_conf([str(source)]) == \
        "# the host has no nameserver reachable from a container\n"


def test_resolv_conf_is_written_once_per_network(net):
    os.makedirs(net.dir)
    hosts.write_resolv_conf(net)
    with open(net.path("resolv.conf"), "a") as f:
        f.write("# kept\n")
    hosts.write_resolv_conf(net)  # bind-mounted into running containers: never replaced
    with open(net.path("resolv.conf")) as f:
        assert f.read().endswith("# kept\n")
    hosts.remove(net)
    assert not os.path.exists(net.path("resolv.conf"))


def test_an_attachment_gives_a_new_spec_and_leaves_the_callers_alone():
    from minicontainer.runtime.network import Attachment
    from minicontainer.spec import ContainerSpec, Mount, Process, Root

    mine = Mount(kind="bind", source="/h", target="/c")
    spec = ContainerSpec(root=Root(path="/r"), process=Process(args=["true"]), mounts=[mine],
                         namespace_paths={"ipc": "/proc/1/ns/ipc"})
    hosts_mount = Mount(kind="bind", source="/n/hosts", target="/etc/hosts", readonly=True)
    got = Attachment(mounts=[hosts_mount], namespace_paths={"net": "/proc/self/fd/9"}
                     ).applied_to(spec)
    assert got.mounts == [hosts_mount, mine] and spec.mounts == [mine]
    assert got.namespace_paths == {"ipc": "/proc/1/ns/ipc", "net": "/proc/self/fd/9"}
    assert spec.namespace_paths == {"ipc": "/proc/1/ns/ipc"}
    assert got.process is spec.process and got.root is spec.root


def test_joining_rechecks_the_pid_once_its_namespace_is_open(tmp_path, monkeypatch):
    """container:NAME: the pid checked alive may be reused before /proc/PID/ns/net is open;
    the check is made again once the file is open, and the join refused."""
    from minicontainer.runtime import network
    from minicontainer.runtime.state import Container, StateStore
    from minicontainer.spec import ContainerSpec, Process, Root

    store = StateStore(str(tmp_path / "state"))
    other = store.create("web", "/r", ["x"], mode="detached")
    other.started(os.getpid(), status="running")  # a pid that is alive: ours
    answers = iter([True, False])  # alive when looked up, gone once the file is open
    monkeypatch.setattr(Container, "alive", lambda self: next(answers))
    joiner = store.create(None, "/r", ["x"])
    spec = ContainerSpec(root=Root(path="/r"), process=Process(args=["x"]),
                         network="container:web")
    with pytest.raises(ContainerError, match='cannot join the network of "web": it is not '
                                             'running'):
        network.prepare(spec, joiner)
    assert len(joiner.held) == 1  # the fd goes with the container's release
    joiner.remove()
    assert joiner.held == []
