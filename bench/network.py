#!/usr/bin/env python3
"""`minicontainer run --network bridge ROOTFS /bin/true`, start to exit, against
`podman run --network bridge` with runc on the same rootfs (issue 5's target: at most 0.5x
podman's median).

    .venv/bin/python bench/network.py [-n RUNS] [ROOTFS]

Set-up, done here and undone at the end:
  * podman, runc, conmon and CNI plugins are installed with apt-get if missing (they are not
    in install.sh: only this benchmark needs them);
  * podman runs with a private containers.conf (CONTAINERS_CONF: the settings host-notes.md
    says this machine needs, CNI config in a temp dir) and private storage (--root and
    --runroot in a temp dir), into which the rootfs is imported as localhost/busybox;
  * minicontainer runs with its own state root, so its own bridge.
What podman's CNI leaves on the host (its bridge cni-podman0, iptables-nft tables, the
ip_forward switch) is removed or restored afterwards when it was not there before.

Both sides clean up after each run (`podman run --rm`; minicontainer always does: veth,
lease, and with the last container the bridge and its nft table). The series alternate, so
drift on the host hits all of them; --network none lines show what the network costs each.
No traffic leaves the machine: /bin/true sends nothing.
"""
from __future__ import annotations

import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import purev2  # bench/purev2.py: podman and runc must never touch the host's v1 cgroups

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from minicontainer.testing.clients import PODMAN_HOST_CONF  # noqa: E402

# this host's podman settings (testing/clients.py), then the benchmark's private CNI directory
CONTAINERS_CONF = PODMAN_HOST_CONF + """\
[network]
network_config_dir = "{cni}"
"""


def install_podman() -> None:
    wanted = ["podman", "runc", "conmon", "containernetworking-plugins", "iptables"]
    missing = [p for p in wanted if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True
    ).stdout != "install ok installed"]
    if missing:
        print(f"set-up: apt-get install {' '.join(missing)}", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                       check=True, env=env, stdout=subprocess.DEVNULL)


def host_network_state() -> dict:
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        forward = f.read().strip()
    return {"links": {line.split(":")[1].strip().split("@")[0] for line in links.splitlines()},
            "tables": {line.strip() for line in tables.splitlines()},
            "ip_forward": forward,
            "cni": {d for d in ("/var/lib/cni/networks/podman", "/var/lib/cni/results")
                    if os.path.exists(d)}}


def restore_host_network(before: dict) -> None:
    """Undo what podman's CNI plugins left behind, if it was not there before we started."""
    after = host_network_state()
    for link in sorted(after["links"] - before["links"]):
        if link.startswith("cni-podman"):
            subprocess.run(["ip", "link", "del", link], check=False)
    for table in sorted(after["tables"] - before["tables"]):
        if table in ("table ip nat", "table ip filter", "table ip6 nat", "table ip6 filter"):
            subprocess.run(["nft", "delete", *table.split()], check=False)
    # CNI switches forwarding on and leaves it on; switch it off again if it was off, unless a
    # minicontainer network (another state root, with its mark) needs it now.
    if before["ip_forward"] == "0" and after["ip_forward"] == "1" and \
            not os.path.exists("/run/minicontainer.ip_forward"):
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write("0")
    for d in after["cni"] - before["cni"]:
        shutil.rmtree(d, ignore_errors=True)


def unmount_under(path: str) -> None:
    """containers/storage keeps mounts in its directories (its overlay home, shm): drop them,
    deepest first, so the temp dirs can go."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(path + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


def timed(argv, env=None) -> float:
    start = time.monotonic()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=env)
    elapsed = time.monotonic() - start
    if r.returncode != 0:
        sys.exit(f"failed: {shlex.join(argv)}\n{r.stderr.decode()[-800:]}")
    return elapsed


def main() -> None:
    args = sys.argv[1:]
    runs = 15
    if args[:1] == ["-n"]:
        runs, args = int(args[1]), args[2:]
    rootfs = os.path.abspath(args[0] if args else os.path.join(REPO, "rootfs"))

    install_podman()
    purev2.enter()  # podman's cgroupfs manager and runc would write to the host's v1 cgroups
    cgroups_before = purev2.cgroups_now()
    before = host_network_state()
    tmp = tempfile.mkdtemp(prefix="minicontainer-bench-net-")
    state = tempfile.mkdtemp(prefix="minicontainer-bench-net-", dir="/run")
    conf = os.path.join(tmp, "containers.conf")
    os.mkdir(os.path.join(tmp, "cni"))
    with open(conf, "w") as f:
        f.write(CONTAINERS_CONF.format(cni=os.path.join(tmp, "cni")))
    env = dict(os.environ, CONTAINERS_CONF=conf)
    podman = ["podman", "--root", os.path.join(tmp, "storage"),
              "--runroot", os.path.join(state, "podman-run")]
    # The installed launcher if there is one (what users run), else the venv's interpreter.
    launcher = shutil.which("minicontainer") or os.path.join(REPO, ".venv", "bin", "python")
    ours = [launcher] if launcher.endswith("minicontainer") else [launcher, "-m", "minicontainer"]
    ours += ["--root", state, "run"]

    series = {
        "minicontainer bridge": (ours + ["--network", "bridge", rootfs, "/bin/true"], None),
        "podman+runc bridge": (podman + ["run", "--rm", "--runtime", shutil.which("runc"),
                                         "--network", "bridge", "localhost/busybox", "/bin/true"], env),
        "minicontainer none": (ours + ["--network", "none", rootfs, "/bin/true"], None),
        "podman+runc none": (podman + ["run", "--rm", "--runtime", shutil.which("runc"),
                                       "--network", "none", "localhost/busybox", "/bin/true"], env),
    }
    times = {name: [] for name in series}
    try:
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(podman + ["import", "-q", "-", "localhost/busybox"], stdin=tar.stdout,
                       env=env, check=True, stdout=subprocess.DEVNULL)
        tar.wait()
        for argv, e in series.values():  # warm-up: page cache, podman's network config
            timed(argv, e)
        for _ in range(runs):
            for name, (argv, e) in series.items():
                times[name].append(timed(argv, e))
    finally:
        subprocess.run(podman + ["rm", "-af"], env=env, capture_output=True)
        subprocess.run(podman + ["rmi", "-af"], env=env, capture_output=True)
        unmount_under(tmp)
        unmount_under(state)
        restore_host_network(before)
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run([*ours[:-1], "gc"], capture_output=True)
        shutil.rmtree(state, ignore_errors=True)
        purev2.remove_new_cgroups(cgroups_before)

    load = os.getloadavg()[0]
    print(f"machine: {os.uname().release}, {os.cpu_count()} CPUs, load {load:.1f}; "
          f"{runs} runs each, alternating; rootfs {rootfs}")
    for name, (argv, _) in series.items():
        print(f"{name + ':':22s} {shlex.join(argv)}")
    print()
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, t in times.items():
        print(f"{name + ':':22s} median {medians[name] * 1000:7.1f} ms   "
              f"min {min(t) * 1000:7.1f}   max {max(t) * 1000:7.1f}")
    ratio = medians["minicontainer bridge"] / medians["podman+runc bridge"]
    cost_ours = medians["minicontainer bridge"] - medians["minicontainer none"]
    cost_podman = medians["podman+runc bridge"] - medians["podman+runc none"]
    print(f"\nbridge networking costs: minicontainer {cost_ours * 1000:.1f} ms, "
          f"podman {cost_podman * 1000:.1f} ms (median bridge minus median none)")
    print(f"ratio minicontainer/podman (bridge): {ratio:.2f}x  (target <= 0.50x: "
          f"{'met' if ratio <= 0.5 else 'NOT met'})")


if __name__ == "__main__":
    main()
