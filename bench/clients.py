"""Client benchmark: `docker run --rm`, `ctr run --rm` and `podman run --rm` of /bin/true, with
runc and with minicontainer as the runtime the client drives.

    .venv/bin/python bench/clients.py [--rounds N] [--clients docker,ctr,podman]

What is timed is the client's whole command, as a user waits for it: Docker (CLI -> dockerd
-> containerd -> runc v2 shim -> runtime create/start/delete), ctr (containerd -> shim ->
runtime) and podman (podman -> conmon -> runtime). The runtime's share is the difference
between the two columns. Rounds are interleaved: each round runs every client with every
runtime once, in an order that alternates, so that a busy moment of this shared machine hits
both runtimes alike. We print medians, the spread (lowest-highest) and minicontainer's median
divided by runc's, with the spread of the per-round ratios (each round times both runtimes
back to back), and the load average before and after, since the machine is shared.

Where: the clients come from Debian (installed when missing) and run as tests/test_clients.py
runs them (minicontainer/testing/clients.py): each daemon with its own state, data and
sockets under one temporary directory; here the whole benchmark re-executes itself in a
private mount + network namespace (bench/purev2.py) whose /sys/fs/cgroup holds only cgroup2
and whose /run is a private tmpfs (the runc shim's socket directory is fixed under /run). The
cgroups the clients leave in the cgroup2 root (their parents) are removed at the end.

A runtime whose first run fails is reported with the client's error and left out.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import purev2  # bench/purev2.py: never touch the host's v1 cgroups

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from minicontainer.testing.clients import (IMAGE, RUNC, Clients,  # noqa: E402
                                           cgroup_children, docker_save_tarball,
                                           ensure_packages, remove_client_cgroups,
                                           runtime_wrapper)

RUNTIMES = ("runc", "minicontainer")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--clients", default="docker,ctr,podman")
    ap.add_argument("--rootfs", default=os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "rootfs"))
    opts = ap.parse_args()
    clients_wanted = opts.clients.split(",")
    ensure_packages()  # before entering: apt must see the host's /run
    purev2.enter(net=True, setup="mount -t tmpfs -o mode=0755 run /run")
    work = tempfile.mkdtemp(prefix="mcb-", dir="/tmp")
    cgroups_before = cgroup_children("/sys/fs/cgroup")
    c = Clients(work, [], {"runc": RUNC, "minicontainer": runtime_wrapper(
        f"{work}/minicontainer", f"{work}/minicontainer-state")})
    try:
        docker_save_tarball(opts.rootfs, c.image)
        commands = setup(c, clients_wanted)
        load = [_loadavg()]
        times = measure(commands, opts.rounds)
        load.append(_loadavg())
    finally:
        c.stop()
        for left in remove_client_cgroups("/sys/fs/cgroup", cgroups_before):
            print(f"left behind, still in use: {left}", file=sys.stderr)
        subprocess.run(["rm", "-rf", work], check=False)
    report(times, opts, load)
    return 0


def setup(c: Clients, wanted: list[str]) -> dict:
    """{(client, runtime): a function that runs /bin/true once} for each client asked for."""
    commands = {}
    if "docker" in wanted or "ctr" in wanted:
        c.containerd()
        _ok(c.ctr("image", "import", c.image))
    if "docker" in wanted:
        c.dockerd()
        _ok(c.docker("load", "-i", c.image))
        for rt in RUNTIMES:
            commands["docker", rt] = lambda rt=rt: c.docker(
                "run", "--rm", "--runtime", rt, "--network", "none", IMAGE, "/bin/true")
    if "ctr" in wanted:
        for rt in RUNTIMES:
            serial = iter(range(1 << 30))
            commands["ctr", rt] = lambda rt=rt, serial=serial: c.ctr(
                "run", "--rm", *c.ctr.runtime_flags(rt), IMAGE, f"b-{rt}-{next(serial)}",
                "/bin/true")
    if "podman" in wanted:
        c.podman_setup()
        _ok(c.podman("load", "-i", c.image))
        for rt in RUNTIMES:
            commands["podman", rt] = lambda rt=rt: c.podman(
                "run", "--rm", "--network", "none", "--cgroup-parent", "/mctest-podman",
                IMAGE, "/bin/true", runtime=rt)
    return commands


def measure(commands: dict, rounds: int) -> dict:
    """{(client, runtime): [seconds...]}, or an error line for a runtime that failed."""
    times: dict = {}
    for key, run in commands.items():  # warm-up, and find which work at all
        r = run()
        times[key] = [] if r.returncode == 0 else \
            (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
    keys = [k for k in commands if isinstance(times[k], list)]
    for i in range(rounds):
        for key in (keys if i % 2 == 0 else list(reversed(keys))):
            t0 = time.perf_counter()
            r = commands[key]()
            elapsed = time.perf_counter() - t0
            if r.returncode != 0:
                raise SystemExit(f"{key[0]} with {key[1]} failed in round {i + 1}: "
                                 f"{r.stderr.strip()[-500:]}")
            times[key].append(elapsed)
    return times


def report(times: dict, opts, load: list[str]) -> None:
    print(f"bench/clients.py --rounds {opts.rounds} --clients {opts.clients}: "
          f"`CLIENT run --rm {IMAGE} /bin/true`, wall time in ms, median (lowest-highest); "
          f"load average {load[0]} before, {load[1]} after")
    print(f"{'client':8} {'runc':>22} {'minicontainer':>22} {'minicontainer/runc':>24}")
    clients = dict.fromkeys(k[0] for k in times)
    for client in clients:
        cells, medians = [], []
        for rt in RUNTIMES:
            t = times.get((client, rt))
            if isinstance(t, list) and t:
                med = statistics.median(t)
                medians.append(med)
                cells.append(f"{med * 1e3:7.0f} ({min(t) * 1e3:.0f}-{max(t) * 1e3:.0f})")
            else:
                medians.append(None)
                cells.append("failed")
        ratio = "-"
        if None not in medians:  # the same index is the same round: a ratio per round
            per_round = [m / r for r, m in zip(times[client, "runc"],
                                                 times[client, "minicontainer"])]
            ratio = (f"{medians[1] / medians[0]:.2f} "
                     f"({min(per_round):.2f}-{max(per_round):.2f})")
        print(f"{client:8} {cells[0]:>22} {cells[1]:>22} {ratio:>24}")
    for (client, rt), t in times.items():
        if isinstance(t, str):
            print(f"  {client} with {rt} failed: {t[:300]}")


def _loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _ok(r: subprocess.CompletedProcess) -> None:
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(r.args[:4])}...: {r.stderr.strip()[-500:]}")


if __name__ == "__main__":
    sys.exit(main())
