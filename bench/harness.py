#!/usr/bin/env python3
"""What a test harness pays per container: in-process `minicontainer.run(rootfs, ["/bin/true"])`
against the `crun run` and `runc run` CLIs (as bench/startup.py runs them; also with
read_only=True, the read-only bind root their bundle has, instead of an overlay), in-process with
network="bridge" against `podman run --network bridge` (as bench/network.py runs it), and
containers per second for sequential in-process starts. Issue 11's target: the in-process
median at most 1.0x crun's.

    .venv/bin/python bench/harness.py [--runs N] [--podman-runs N] [--sequential N]

Everything runs in one interleaved loop per comparison (round by round, so a busy moment of
the shared machine hits every series alike), in bench/purev2.py's private mount namespace
(runc, crun and podman must never touch the host's v1 cgroups). The in-process series runs in
this very interpreter: the import is paid once, before timing, as a test session pays it.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import network as netbench  # bench/network.py: podman's private set-up and clean-up
import purev2
import startup  # bench/startup.py: the runc/crun bundle and command lines

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import minicontainer  # noqa: E402


def timed_call(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(series: dict, runs: int) -> dict[str, list[float]]:
    for fn in series.values():  # warm-up, and a check that each runs at all
        fn()
    samples = {name: [] for name in series}
    for _ in range(runs):
        for name, fn in series.items():
            samples[name].append(timed_call(fn))
    return samples


def report(title: str, samples: dict[str, list[float]], base: str) -> None:
    print(title)
    ref = statistics.median(samples[base])
    print(f"  {'series':<30}{'median ms':>10}{'min':>8}{'p90':>8}   median / {base}'s")
    for name, xs in samples.items():
        xs = sorted(xs)
        med = statistics.median(xs)
        print(f"  {name:<30}{med * 1000:>10.2f}{xs[0] * 1000:>8.2f}"
              f"{xs[int(len(xs) * 0.9) - 1] * 1000:>8.2f}   {med / ref:>6.2f}x")
    print()


def usage():
    return resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)


def report_usage(before, after, n: int) -> None:
    """Where an in-process start's time goes, per start: CPU and minor page faults in this
    process (the runtime's side, after fork(): every page it writes first faults, write-
    protected by the fork) and in its children (the container's set-up in Python, up to
    execve, copying each page it writes; then /bin/true)."""
    for label, b, a in (("this process", before[0], after[0]),
                        ("its children", before[1], after[1])):
        cpu = (a.ru_utime - b.ru_utime + a.ru_stime - b.ru_stime) * 1000 / n
        print(f"  per start, {label}: {cpu:.2f} ms CPU "
              f"({(a.ru_stime - b.ru_stime) * 1000 / n:.2f} in the kernel), "
              f"{(a.ru_minflt - b.ru_minflt) / n:.0f} minor page faults")


def cli(argv: list[str], env=None):
    def go():
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=env)
        if r.returncode != 0:
            sys.exit(f"failed: {' '.join(argv)}\n{r.stderr.decode()[-800:]}")
    return go


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=100, help="rounds against crun and runc")
    p.add_argument("--podman-runs", type=int, default=15, help="rounds against podman")
    p.add_argument("--sequential", type=int, default=200, help="starts for containers/s")
    p.add_argument("--rootfs", default=os.path.join(REPO, "rootfs"))
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/harness.py: run as root")
    os.environ.setdefault("MC_BENCH_LAUNCHER", os.path.join(REPO, ".venv", "bin", "minicontainer"))
    startup.ensure_peers()
    netbench.install_podman()
    purev2.enter()
    rootfs = os.path.abspath(args.rootfs)
    cgroups_before = purev2.cgroups_now()
    net_before = netbench.host_network_state()
    work = tempfile.mkdtemp(prefix="mc-bench-harness-")
    state = tempfile.mkdtemp(prefix="mc-bench-harness-", dir="/run")
    ours = os.path.join(state, "mc")
    print(f"/bin/true in {rootfs}; {os.cpu_count()} CPUs, kernel {os.uname().release}, "
          f"load {os.getloadavg()[0]:.1f}\n")
    try:
        bundle = startup.make_bundle(rootfs, work)
        peers = startup.commands("minicontainer", rootfs, bundle, state)  # only the peers are used

        def in_process(**options):
            def go():
                r = minicontainer.run(rootfs, ["/bin/true"], root=ours, **options)
                if r.returncode != 0:
                    sys.exit(f"in-process run failed: {r}")
            return go

        report(f"in-process vs the CLIs, {args.runs} rounds interleaved:", interleaved({
            "minicontainer.run (in-process)": in_process(),
            # the bundle's root is a read-only bind (startup.make_bundle): the same here
            "minicontainer.run read_only": in_process(read_only=True),
            "crun run": cli(peers["crun"]),
            "runc run": cli(peers["runc"]),
            "minicontainer run (CLI)": cli(peers["minicontainer"]),
        }, args.runs), "crun run")

        conf = os.path.join(work, "containers.conf")
        os.mkdir(os.path.join(work, "cni"))
        with open(conf, "w") as f:
            f.write(netbench.CONTAINERS_CONF.format(cni=os.path.join(work, "cni")))
        env = dict(os.environ, CONTAINERS_CONF=conf)
        podman = ["podman", "--root", os.path.join(work, "storage"),
                  "--runroot", os.path.join(state, "podman-run")]
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(podman + ["import", "-q", "-", "localhost/busybox"], stdin=tar.stdout,
                       env=env, check=True, stdout=subprocess.DEVNULL)
        tar.wait()
        report(f"bridge network, {args.podman_runs} rounds interleaved:", interleaved({
            "minicontainer.run bridge": in_process(network="bridge"),
            "podman+runc bridge": cli(podman + [
                "run", "--rm", "--runtime", shutil.which("runc"), "--network", "bridge",
                "localhost/busybox", "/bin/true"], env),
        }, args.podman_runs), "podman+runc bridge")

        go = in_process()
        before = usage()
        elapsed = timed_call(lambda: [go() for _ in range(args.sequential)])
        print(f"{args.sequential} sequential in-process starts: {elapsed:.2f} s, "
              f"{args.sequential / elapsed:.0f} containers/s")
        report_usage(before, usage(), args.sequential)
    finally:
        subprocess.run(["podman", "--root", os.path.join(work, "storage"), "--runroot",
                        os.path.join(state, "podman-run"), "rmi", "-af"], capture_output=True,
                       env=dict(os.environ, CONTAINERS_CONF=os.path.join(work, "containers.conf")))
        netbench.unmount_under(work)
        netbench.unmount_under(state)
        netbench.restore_host_network(net_before)
        from minicontainer.runtime.state import StateStore

        StateStore(ours).collect_garbage()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
        purev2.remove_new_cgroups(cgroups_before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
