"""Start-up benchmark: `minicontainer run ROOTFS /bin/true` against runc, crun and bubblewrap.

    .venv/bin/python bench/startup.py [--runs N] [--rootfs DIR] [--busy N] [--present N]

Every runtime runs /bin/true from the same busybox rootfs, many times, interleaved round by
round so that a busy moment of the machine hits them all alike; we print medians, spreads and
minicontainer's median divided by each peer's. Peers come from Debian's packages (installed
here with apt-get when missing). minicontainer runs from this checkout, through the same -S
launcher install.sh writes (MC_BENCH_LAUNCHER names another).

Three scenarios, because a runtime is rarely alone on a machine:
    empty      nothing else recorded in minicontainer's state root
    busy       --busy (20) detached containers running in the same state root (services
               started with `run -d`): every run's garbage collection pass sees them
    verbs      with --present (50) detached containers: `ps -a`, `exec ID /bin/true` and
               `rm -f ID` (of one more container, so that --present stay), timed alone

Fairness and safety on hybrid-cgroup hosts (like our dev machines): runc and crun would
create cgroups in every v1 hierarchy, the memory one included, which we must never touch;
crun refuses hybrid mode anyway. So the whole benchmark runs in a private mount namespace in
which /sys/fs/cgroup is a fresh tmpfs with only cgroup2 mounted on it: every runtime sees a
pure cgroup v2 host (the host's own v2 hierarchy, grouping only), and nothing on the host is
unmounted or rearranged. On a pure v2 host this changes nothing.

What each does for /bin/true: minicontainer (overlay copy-on-write root, pivot_root, new
mnt/pid/uts/ipc/net/cgroup namespaces, /proc, /dev, /sys, masked paths, capabilities,
no_new_privs); runc and crun (OCI default spec from `runc spec`: read-only bind root,
the same namespaces but cgroup, masked paths, capabilities; runc also makes a cgroup;
crun with --cgroup-manager=disabled (see below); bwrap (bind root, new namespaces, /proc and /dev; no cgroup, no capability set);
unshare+chroot (namespaces and a chroot, nothing else: the floor). And python+imports: the
interpreter starting and importing minicontainer's run path, with no container at all, the
floor of any start through a Python CLI.
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = os.path.join(REPO, ".venv", "bin", "python")
sys.path.insert(0, REPO)

from minicontainer import launcher as mc_launcher  # noqa: E402  (this checkout's)

PEER_PACKAGES = {"runc": "runc", "crun": "crun", "bwrap": "bubblewrap"}


def ensure_peers() -> None:
    missing = [pkg for tool, pkg in PEER_PACKAGES.items() if not shutil.which(tool)]
    if missing:
        print(f"installing {' '.join(missing)} with apt-get", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                       check=True, env=env, stdout=subprocess.DEVNULL)


def make_bundle(rootfs: str, workdir: str) -> str:
    bundle = os.path.join(workdir, "bundle")
    os.mkdir(bundle)
    subprocess.run(["runc", "spec", "--bundle", bundle], check=True)
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    config["root"] = {"path": rootfs, "readonly": True}
    config["process"]["args"] = ["/bin/true"]
    config["process"]["terminal"] = False
    with open(path, "w") as f:
        json.dump(config, f)
    return bundle


def make_launcher(workdir: str) -> str:
    """The launcher install.sh puts on PATH (python -S, this checkout first), for this checkout,
    byte-compiled as install.sh leaves it (else, with PYTHONDONTWRITEBYTECODE set, every run
    of an edited module would pay for compiling it)."""
    subprocess.run([PYTHON, "-m", "compileall", "-q",
                    os.path.join(REPO, "minicontainer")], check=True, stdout=subprocess.DEVNULL)
    path = os.path.join(workdir, "minicontainer")
    subprocess.run([PYTHON, "-m", "minicontainer.launcher",
                    path, REPO], check=True, cwd=REPO)  # the venv's interpreter, as install.sh
    return path


def commands(launcher: str, rootfs: str, bundle: str, state: str) -> dict[str, list[str]]:
    return {
        "minicontainer": [launcher, "--root", f"{state}/mc", "run", rootfs, "/bin/true"],
        # the floor of any start through the CLI: the interpreter and the run path's imports
        # (as the launcher does them), no container
        "python+imports": [PYTHON, "-S", "-c", mc_launcher.code(
            REPO, then="import minicontainer.cli.run, minicontainer.runtime.launch")],
        "runc": ["runc", "--root", f"{state}/runc", "run", "--bundle", bundle, "bench-runc"],
        # crun 1.8 cannot set up its eBPF device filter here (no CAP_SYS_RESOURCE to raise
        # RLIMIT_MEMLOCK), so it runs with no cgroup work at all: an advantage to crun.
        "crun": ["crun", "--root", f"{state}/crun", "--cgroup-manager=disabled", "run",
                 "--bundle", bundle, "bench-crun"],
        "bwrap": ["bwrap", "--bind", rootfs, "/", "--proc", "/proc", "--dev", "/dev",
                  "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                  "--unshare-cgroup", "--die-with-parent", "/bin/true"],
        "unshare+chroot": ["unshare", "--mount", "--pid", "--fork", "--uts", "--ipc", "--net",
                           "chroot", rootfs, "/bin/true"],
    }


def time_once(argv: list[str], quiet: bool = False) -> float | None:
    """Wall time from spawn to exit; None if it failed. quiet: its stdout to /dev/null."""
    actions = [(os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0)] if quiet else []
    start = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
    _, status = os.waitpid(pid, 0)
    elapsed = time.perf_counter() - start
    return elapsed if os.waitstatus_to_exitcode(status) == 0 else None


def interleaved(cmds: dict[str, list[str]], runs: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(runs):
        for name, argv in cmds.items():
            t = time_once(argv)
            if t is not None:
                samples[name].append(t)
    return samples


def detach(mc: list[str], rootfs: str, count: int) -> list[str]:
    """Start `count` detached containers that sleep; their ids."""
    ids = []
    for _ in range(count):
        out = subprocess.run([*mc, "run", "-d", rootfs, "sleep", "3600"], check=True,
                             capture_output=True, text=True)
        ids.append(out.stdout.strip())
    return ids


def remove_all(mc: list[str]) -> None:
    """rm -f every container, one at a time: one that fails must not leave the rest running."""
    ids = subprocess.run([*mc, "ps", "-a", "-q"], capture_output=True, text=True).stdout.split()
    for cid in ids:
        subprocess.run([*mc, "rm", "-f", cid], check=False, stdout=subprocess.DEVNULL)


def verbs(mc: list[str], rootfs: str, present: int, runs: int) -> dict[str, list[float]]:
    """ps, exec and rm -f with `present` detached containers recorded and running."""
    ids = detach(mc, rootfs, present)
    samples: dict[str, list[float]] = {"ps -a": [], "exec": [], "rm -f": []}
    for i in range(runs):
        for name, argv in (("ps -a", [*mc, "ps", "-a"]),
                           ("exec", [*mc, "exec", ids[i % len(ids)], "/bin/true"])):
            t = time_once(argv, quiet=True)
            if t is not None:
                samples[name].append(t)
        extra, = detach(mc, rootfs, 1)  # one more, so that `present` remain after its rm
        t = time_once([*mc, "rm", "-f", extra], quiet=True)
        if t is not None:
            samples["rm -f"].append(t)
    return samples


def table(title: str, samples: dict[str, list[float]], base: str | None = "minicontainer") -> None:
    print(title)
    ratio = "   minicontainer / runtime" if base else ""
    print(f"{'':<16}{'median ms':>10}{'min':>8}{'p90':>8}{ratio}")
    ref = statistics.median(samples[base]) if base else None
    for name, xs in samples.items():
        if not xs:
            print(f"{name:<16}{'failed':>10}")
            continue
        xs = sorted(xs)
        med = statistics.median(xs)
        p90 = xs[max(0, int(len(xs) * 0.9) - 1)]
        line = f"{name:<16}{med * 1000:>10.1f}{xs[0] * 1000:>8.1f}{p90 * 1000:>8.1f}"
        print(line + (f"   {ref / med:>6.2f}x" if base else ""))
    print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--rootfs", default=os.path.join(REPO, "rootfs"))
    parser.add_argument("--busy", type=int, default=20,
                        help="detached containers running in the busy scenario (0: skip it)")
    parser.add_argument("--present", type=int, default=50,
                        help="detached containers present while timing ps/exec/rm (0: skip)")
    parser.add_argument("--json", help="write every sample here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/startup.py: run as root")
    ensure_peers()
    purev2.enter()
    rootfs = os.path.abspath(args.rootfs)
    results = {}

    with tempfile.TemporaryDirectory(prefix="mc-bench-") as work:
        bundle = make_bundle(rootfs, work)
        launcher = os.environ.get("MC_BENCH_LAUNCHER") or make_launcher(work)
        mc = [launcher, "--root", f"{work}/mc"]
        cmds = {}
        for name, argv in commands(launcher, rootfs, bundle, work).items():
            argv[0] = shutil.which(argv[0]) or argv[0]
            if time_once(argv) is None:  # warm-up, and a check that it runs at all here
                print(f"{name}: does not run here, left out", file=sys.stderr)
                continue
            cmds[name] = argv
        print(f"/bin/true in {rootfs}, {args.runs} runs each, interleaved; "
              f"{os.cpu_count()} CPUs, kernel {os.uname().release}\n")
        try:
            results["empty"] = interleaved(cmds, args.runs)
            table("empty state root:", results["empty"])
            if args.busy:
                detach(mc, rootfs, args.busy)
                results["busy"] = interleaved(cmds, args.runs)
                table(f"{args.busy} detached containers running in the same state root:",
                      results["busy"])
                remove_all(mc)
            if args.present:
                results["verbs"] = verbs(mc, rootfs, args.present, min(args.runs, 50))
                table(f"verbs with {args.present} detached containers present:",
                      results["verbs"], base=None)
        finally:
            remove_all(mc)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
