"""`minicontainer inspect CONTAINER...`: everything recorded about containers, as JSON."""
from __future__ import annotations

from minicontainer.cli._common import parser, print_json, store


def main(args: list[str], root: str | None) -> int:
    p = parser("inspect", "CONTAINER...", "Print what is known about containers as JSON.")
    p.add_argument("containers", nargs="+")
    opts = p.parse_args(args)
    s = store(root)
    out = []
    for ref in opts.containers:
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
