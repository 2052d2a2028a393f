"""Skeleton of level 08: a bridge, and NAT out of it. Run as root from the repository:
    .venv/bin/python workshop/08-bridge-nat/solution.py [ROOTFS]

Every namespace here is made by this script, the "host" included: `router` plays the host
(the bridge, IP forwarding, the nftables NAT), `outside` plays the rest of the world. No packet
and no rule touches the real host's network.
"""
import os
import sys

from minicontainer.kernel import nftables, syscalls
from minicontainer.kernel.netlink import Netlink

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "07-net-veth"))
from solution import PING, Box  # noqa: E402  level 07's boxes, unchanged

NAT = """
table ip workshop {
    chain postrouting {
        type nat hook postrouting priority srcnat;
        ip saddr 10.88.0.0/24 oifname "up0" masquerade
    }
}
"""


def in_netns(pid: int, fn) -> None:
    """Run fn() in the network namespace of `pid`: in a child, so we never leave our own."""
    child = os.fork()
    if child == 0:
        code = 1
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            syscalls.setns(fd, syscalls.CLONE_NEWNET)
            fn()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    if status:
        raise RuntimeError(f"failed in the network namespace of {pid} (see above)")


def address(pid: int, ifname: str, addr: str, gateway: str | None = None) -> None:
    with Netlink(pid=pid) as nl:
        index = nl.index(ifname)
        nl.add_address(index, addr, 24)
        nl.set_up(index)
        nl.set_up(nl.index("lo"))
        if gateway:
            nl.add_default_route(gateway)


def main() -> None:
    boxes = []
    try:
        for name in ("router", "outside", "c1", "c2"):
            boxes.append(Box(name))  # one by one: a failure closes those already made
        router, outside, c1, c2 = boxes
        # TODO: in router's namespace: a bridge br0 (10.88.0.1/24); a veth from it into each container as eth0 (10.88.0.2 and .3, default route via .1)
        raise NotImplementedError("TODO: in router's namespace: a bridge br0 (10.88.0.1/24); a veth from it into each container as eth0 (10.88.0.2 and .3, default route via .1)")
        # The uplink: router's up0 (198.51.100.2) <-> outside's eth0 (198.51.100.1). outside
        # has no route to 10.88.0.0/24: it can answer only what seems to come from 198.51.100.2.
        with Netlink(pid=router.pid) as nl:
            nl.add_veth("up0", "eth0", outside.pid)
        address(router.pid, "up0", "198.51.100.2")
        address(outside.pid, "eth0", "198.51.100.1")
        print("host: bridge br0 in router; c1, c2 on it; router's uplink to outside")
        for box in boxes:
            box.sh(PING)
        c1.sh("p 10.88.0.3")
        c1.sh("p 198.51.100.1")
        # TODO: in router's namespace: turn on IP forwarding, then masquerade 10.88.0.0/24 out of up0
        raise NotImplementedError("TODO: in router's namespace: turn on IP forwarding, then masquerade 10.88.0.0/24 out of up0")
        print("host: router forwards and masquerades 10.88.0.0/24")
        c1.sh("p 198.51.100.1")
        c2.sh("p 198.51.100.1")
        outside.sh("p 10.88.0.2")
    finally:
        for box in boxes:
            box.close()


if __name__ == "__main__":
    main()
