"""`minicontainer port CONTAINER [PORT[/PROTO]]`: the host ports published for it (docker's
output: `80/tcp -> 0.0.0.0:32768`), the ones picked at start (`-p 80`) included."""
from __future__ import annotations

import sys

from minicontainer.cli.flags import Verb
from minicontainer.errors import ContainerError

VERB = Verb("port", "CONTAINER [PORT[/PROTO]]",
            "List a container's published ports (PORT: only this one, e.g. 80 or 53/udp).",
            positionals=["container", "port?"])


def main(args: list[str], root: str | None) -> int:
    opts = VERB.parse(args)
    from minicontainer.runtime import api

    ports = api.state(opts["container"], root).get("ports") or []
    if opts["port"] is None:
        for m in ports:
            sys.stdout.write(f"{m['container_port']}/{m['protocol']} -> "
                             f"{m['host_ip']}:{m['host_port']}\n")
        return 0
    number, _, protocol = opts["port"].partition("/")
    protocol = protocol or "tcp"
    found = [m for m in ports if str(m["container_port"]) == number and m["protocol"] == protocol]
    if not found:
        raise ContainerError(f"no public port {number}/{protocol} published for "
                             f"{opts['container']}")
    for m in found:
        sys.stdout.write(f"{m['host_ip']}:{m['host_port']}\n")
    return 0
