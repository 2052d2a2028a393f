"""`minicontainer inspect CONTAINER...`: everything recorded about containers, as JSON."""
from __future__ import annotations

from minicontainer.cli._common import print_json, store
from minicontainer.cli.flags import Verb

VERB = Verb("inspect", "CONTAINER...", "Print what is known about containers as JSON.",
            positionals=["containers+"], go_style=False)


def main(args: list[str], root: str | None) -> int:
    opts = VERB.parse(args)
    s = store(root)
    out = []
    for ref in opts["containers"]:
        c = s.lookup(ref)
        r = dict(c.record)
        status = c.status()
        r["status"] = status
        r["running"] = status == "running"
        if status not in ("created", "running"):
            r["pid"] = 0
        for private in ("pid_start", "runtime_start"):
            r.pop(private, None)
        r["owned"] = [f"{kind} {value}" for kind, value in c.owned()]
        r["state_dir"] = c.dir
        out.append(r)
    print_json(out)
    return 0
