"""Bridge address allocation (runtime/network.py Network: leases, cursor, hosts file) on a
temp state root: files only, no root, no netlink. And the -p syntax."""
from __future__ import annotations

import os

import pytest

from minicontainer.errors import ContainerError
from minicontainer.runtime.network import Network


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
    net.write_hosts()
    with open(os.path.join(net.dir, "hosts")) as f:
        hosts = f.read()
    assert f"{a}\thost-a web\n" in hosts and f"{b}\thost-b\n" in hosts
    assert hosts.startswith("127.0.0.1\tlocalhost\n")


def test_the_hosts_file_is_rewritten_in_place_never_shorter(net):
    allocate(net, "a", "a-long-hostname")
    allocate(net, "b")
    net.write_hosts()
    path = os.path.join(net.dir, "hosts")
    inode, size = os.stat(path).st_ino, os.stat(path).st_size
    net.release("a")
    net.write_hosts()
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
    mounts = net.mounts(Root(path=str(rootfs), readonly=False))
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
