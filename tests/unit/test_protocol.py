"""The launch protocol (runtime/protocol.py) between two real processes: points, go-on
bytes, EOF as the message, and a failure decoded into its exception."""
from __future__ import annotations

import os

import pytest

from minicontainer.errors import CommandNotFound, ContainerError
from minicontainer.runtime import protocol


def _child(body) -> int:
    """Fork; the child runs body() and exits 0 (os._exit: no pytest teardown in it)."""
    pid = os.fork()
    if pid == 0:
        try:
            body()
        finally:
            os._exit(0)
    return pid


def test_points_go_on_and_eof_at_the_end():
    channel = protocol.Channel(points=True)

    def child():
        channel.child_side()
        channel.point(b"r")
        channel.point(b"h")
        channel.end_points()

    pid = _child(child)
    channel.parent_side()
    seen = []
    while point := channel.wait_point():
        seen.append(point)
        channel.go_on()
    assert seen == [b"r", b"h"] and channel.ready_r is None
    assert channel.read_failure() == b""  # it exited: EOF, as at execve
    assert protocol.wait(pid) == 0
    channel.close()


def test_a_child_whose_runtime_is_gone_stops_at_its_point():
    channel = protocol.Channel(points=True)
    pid = _child(lambda: (channel.child_side(), channel.point(b"r")))
    channel.parent_side()
    assert channel.wait_point() == b"r"
    channel.close()  # no "g": EOF on alive
    assert protocol.wait(pid) == 125


def test_a_failure_comes_back_as_its_exception():
    channel = protocol.Channel(alive=False)

    def child():
        channel.child_side()
        channel.fail(CommandNotFound('exec: "nosuch": executable file not found in $PATH'))

    pid = _child(child)
    channel.parent_side()
    failure = channel.read_failure()
    assert failure == b'CommandNotFound\nexec: "nosuch": executable file not found in $PATH'
    assert protocol.wait(pid) == 127
    with pytest.raises(CommandNotFound, match="nosuch"):
        protocol.raise_failure(failure)


def test_an_unknown_kind_or_no_message_is_a_container_error():
    with pytest.raises(ContainerError, match="^what$"):
        protocol.raise_failure(b"NoSuchKind\nwhat")
    with pytest.raises(ContainerError, match="^exec failed: status 1$"):
        protocol.raise_failure(b"", "exec failed: status 1")


def test_kill_and_reap_leaves_no_process():
    pid = _child(lambda: os.read(os.pipe()[0], 1))  # blocks for ever
    protocol.kill_and_reap(pid)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
