"""What one OCI verb call costs: minicontainer against runc, call by call, as a client pays it.

    .venv/bin/python bench/verbs.py [--runs 20] [--tree DIR]...

containerd's shim, conmon and Docker start the runtime once per verb (create, start, state,
kill, delete, exec), so each call's start-up counts several times per container. Timed here,
interleaved (each round calls every runtime, in an order that alternates), median of --runs:

    state ID                    a created container (its process waits for start)
    kill ID CONT                a running container (a signal it ignores, so it stays)
    delete --force MISSING      an id that does not exist (engines call it to make sure)
    create + start + delete     a bundle whose process is /bin/true (delete --force: no wait)

and, for scale, the floor of every minicontainer call: the interpreter alone
(`python -S -c pass`, timed in the same rounds).

minicontainer runs through the launcher install.sh writes (the venv's interpreter with -S,
the checkout first on sys.path), built here for each --tree (default: this checkout): give an older
tree too (`git archive main | tar -x -C DIR`) to measure a change, before and after alike.
runc comes from Debian's package, installed when missing (as bench/startup.py does). Everything runs in a
private mount namespace whose /sys/fs/cgroup holds only cgroup2 (bench/purev2.py): runc would
otherwise make cgroups in the host's v1 hierarchies.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import purev2  # bench/purev2.py: never touch the host's v1 cgroups
from startup import ensure_peers  # bench/startup.py: runc (and its other peers) from Debian

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

from minicontainer import launcher as script  # noqa: E402  (this checkout's)


def launcher(tree: str, path: str) -> str:
    """install.sh's launcher, for TREE (the compiled kernel module copied in when missing)."""
    so = [f for f in os.listdir(f"{HERE}/minicontainer/kernel") if f.endswith(".so")]
    for name in so:
        if not os.path.exists(f"{tree}/minicontainer/kernel/{name}"):
            shutil.copy(f"{HERE}/minicontainer/kernel/{name}", f"{tree}/minicontainer/kernel/")
    subprocess.run([sys.executable, "-m", "compileall", "-q", f"{tree}/minicontainer"],
                   check=True)
    return script.write(path, tree)


def bundle(work: str, name: str, rootfs: str, args: list[str]) -> str:
    """A bundle from `minicontainer spec` (runc accepts it as it is)."""
    path = f"{work}/{name}"
    os.makedirs(path)
    subprocess.run([sys.executable, "-m", "minicontainer", "spec", "--bundle", path],
                   check=True, cwd=HERE)
    with open(f"{path}/config.json") as f:
        config = json.load(f)
    config["root"] = {"path": rootfs, "readonly": True}
    config["process"].update(args=args, terminal=False)
    with open(f"{path}/config.json", "w") as f:
        json.dump(config, f)
    return path


def timed(cmd: list[str]) -> float:
    """Seconds the call took. Its stderr goes to a file, not a pipe: a created container's
    process inherits it and holds it open until it exits."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        elapsed = time.perf_counter() - start
        if r.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd)}: exit {r.returncode}: {err.read().decode()}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--tree", action="append", help="a minicontainer checkout to measure "
                    "(again for more; default: this one)")
    ap.add_argument("--rootfs", default=f"{HERE}/rootfs")
    opts = ap.parse_args()
    ensure_peers()  # before entering: apt must see the host's /run
    purev2.enter()
    before = purev2.cgroups_now()
    work = tempfile.mkdtemp(prefix="mcv-", dir="/tmp")
    trees = [os.path.abspath(t) for t in opts.tree or [HERE]]
    runtimes = {}
    for n, tree in enumerate(trees):
        name = "minicontainer" if len(trees) == 1 else f"mc {os.path.basename(tree)}"
        runtimes[name] = [launcher(tree, f"{work}/minicontainer{n}"), "--root",
                          f"{work}/mc{n}-state"]
    runtimes["runc"] = ["runc", "--root", f"{work}/runc-state"]
    sleeper = bundle(work, "sleeper", os.path.abspath(opts.rootfs), ["sleep", "1000"])
    true = bundle(work, "true", os.path.abspath(opts.rootfs), ["/bin/true"])
    times: dict = {}
    floor: list = []
    try:
        for name, rt in runtimes.items():
            for cid in ("waiting", "running"):
                timed([*rt, "create", "--bundle", sleeper, cid])
            timed([*rt, "start", "running"])
        for i in range(opts.runs):
            floor.append(timed([sys.executable, "-S", "-c", "pass"]))
            for name, rt in (list(runtimes.items())[::1 if i % 2 else -1]):
                t = times.setdefault(name, {})
                t.setdefault("state", []).append(timed([*rt, "state", "waiting"]))
                t.setdefault("kill", []).append(timed([*rt, "kill", "running", "CONT"]))
                t.setdefault("delete --force MISSING", []).append(
                    timed([*rt, "delete", "--force", "missing"]))
                cid = f"c{i}"
                t.setdefault("create + start + delete", []).append(
                    timed([*rt, "create", "--bundle", true, cid]) + timed([*rt, "start", cid])
                    + timed([*rt, "delete", "--force", cid]))
    finally:
        for rt in runtimes.values():
            for cid in ("waiting", "running"):
                subprocess.run([*rt, "delete", "--force", cid], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)
        purev2.remove_new_cgroups(before)
    print(f"ms, median of {opts.runs}; in brackets: divided by runc's; `python -S -c pass` "
          f"alone: {statistics.median(floor) * 1000:.1f} ms")
    print(f"{'call':26}" + "".join(f"{name:>24}" for name in runtimes))
    for call in times["runc"]:
        runc = statistics.median(times["runc"][call])
        print(f"{call:26}" + "".join(
            f"{statistics.median(times[n][call]) * 1000:17.1f} "
            f"({statistics.median(times[n][call]) / runc:4.2f})" for n in runtimes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
