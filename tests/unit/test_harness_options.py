"""The Python API's keyword options turned into `minicontainer run`'s flags, and -p's forms
(cli/run.parse_publish), including the ones without a host port."""
from __future__ import annotations

import pytest

import minicontainer
from minicontainer import harness
from minicontainer.cli.run import parse_publish


def test_keyword_forms_become_the_clis_flags():
    assert harness._ports({80: None, "53/udp": ("127.0.0.1", None), 81: 8081,
                           82: ("127.0.0.1", 9000)}) == \
        ["80", "127.0.0.1::53/udp", "8081:81", "127.0.0.1:9000:82"]
    assert harness._volumes({"/h": "/c", "/r": ("/c2", "ro"),
                             "/d": {"bind": "/c3", "mode": "ro"}}) == \
        ["/h:/c", "/r:/c2:ro", "/d:/c3:ro"]
    assert harness._tmpfs({"/t": "size=1m", "/u": ""}) == ["/t:size=1m", "/u"]
    assert harness._env(["A=1", "B=x=y"]) == {"A": "1", "B": "x=y"}
    with pytest.raises(minicontainer.UsageError):
        harness._env(["NOEQUALS"])
    with pytest.raises(minicontainer.UsageError):
        harness._argv("echo hi")  # a string is not an argv


@pytest.mark.parametrize("text, port", [
    ("80", (None, None, 80, "tcp")),
    ("127.0.0.1::80", ("127.0.0.1", None, 80, "tcp")),
    ("53/udp", (None, None, 53, "udp")),
    ("8080:80", (None, 8080, 80, "tcp")),
    ("0.0.0.0::80", (None, None, 80, "tcp")),
])
def test_publish_forms(text, port):
    p = parse_publish(text)
    assert (p.host_ip, p.host_port, p.container_port, p.protocol) == port
