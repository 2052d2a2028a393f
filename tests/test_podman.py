"""A real client: podman drives minicontainer through its OCI runtime interface.

podman comes from Debian's packages (installed here when missing). Everything it keeps is
in a temporary directory (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF, --root, --runroot,
--tmpdir), and every podman call runs inside one private mount namespace whose
/sys/fs/cgroup is a fresh tmpfs with only cgroup2 on it: on this hybrid host podman's
cgroupfs manager would otherwise make cgroups in the v1 hierarchies (memory among them),
which the machine uses. podman runs with cgroups = "disabled" too; minicontainer still puts
each container in its own cgroup v2 (grouping only here).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

import pytest

from minicontainer.testing.clients import runtime_wrapper

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
pids_limit = 0
cgroups = "disabled"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime_supports_json = ["minicontainer"]
# podman 4.3 reads this key without the final s its documentation gives it
runtime_supports_nocgroup = ["minicontainer"]
"""

CGROUP_V1_MEMORY = "/sys/fs/cgroup/memory"
CGROUP_V2_HOST = "/sys/fs/cgroup/unified"


def _ensure_podman() -> None:
    if shutil.which("podman") and shutil.which("conmon"):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "podman",
                    "conmon"], check=True, env=env, stdout=subprocess.DEVNULL)


def _v1_memory_entries() -> list[str]:
    found = []
    for directory, dirs, _ in os.walk(CGROUP_V1_MEMORY):
        found += [os.path.join(directory, d) for d in dirs
                  if "libpod" in d or "minicontainer" in d or "podman" in d]
    return found


def _v2_dirs() -> set[str]:
    try:
        return {e.path for e in os.scandir(CGROUP_V2_HOST) if e.is_dir()}
    except FileNotFoundError:
        return set()


class Podman:
    def __init__(self, work: str, runtime: str, state_root: str, holder: int):
        self.work, self.runtime, self.holder = work, runtime, holder
        self.ids: set[str] = set()  # of every container this podman made
        self.env = dict(os.environ, CONTAINERS_CONF=f"{work}/containers.conf",
                        CONTAINERS_STORAGE_CONF=f"{work}/storage.conf")
        self.prefix = ["nsenter", "-t", str(holder), "-m", "podman", "--root", f"{work}/root",
                       "--runroot", f"{work}/runroot", "--tmpdir", f"{work}/tmp",
                       "--runtime", runtime]

    def __call__(self, *args, timeout=120, **kwargs):
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run([*self.prefix, *args], env=self.env, timeout=timeout, **kwargs)


@pytest.fixture(scope="session")
def podman(rootfs, state_root):
    _ensure_podman()
    v2_before = _v2_dirs()
    work = tempfile.mkdtemp(prefix="mc-podman-")
    with open(f"{work}/containers.conf", "w") as f:
        f.write(CONTAINERS_CONF)
    with open(f"{work}/storage.conf", "w") as f:
        f.write(f'[storage]\ndriver = "overlay"\nrunroot = "{work}/runroot"\n'
                f'graphroot = "{work}/root"\n')
    # The runtime podman calls: this checkout's minicontainer, by absolute path, with the
    # session's state root (podman's --runtime-flag does not reach its cleanup process).
    runtime = runtime_wrapper(f"{work}/minicontainer", state_root)
    holder = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         "mount -t tmpfs cgroupfs /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup "
         "&& echo ready && exec sleep infinity"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready", "cannot make the cgroup2-only namespace"
        pm = Podman(work, runtime, state_root, holder.pid)
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        r = pm("import", "-", "localhost/busybox", stdin=tar.stdout)
        tar.wait()
        assert r.returncode == 0, r.stderr
        yield pm
        pm("rm", "-af", "-t", "0")
    finally:
        holder.kill()  # its mount namespace, with podman's overlay mounts, goes with it
        holder.wait()
        time.sleep(0.2)
        subprocess.run(["rm", "-rf", work], check=False)
        for path in sorted(_v2_dirs() - v2_before, reverse=True):  # podman's, now empty
            for directory, _, _ in sorted(os.walk(path), reverse=True):
                try:
                    os.rmdir(directory)
                except OSError:
                    pass
    assert not ours_in_v1(pm.ids), "podman made cgroups in the v1 memory hierarchy"


def ours_in_v1(ids) -> list[str]:
    """v1 memory cgroups named after our containers (podman's libpod-<id>). Other users of
    this machine may run podman on the host, so libpod_parent itself proves nothing."""
    return [e for e in _v1_memory_entries() if any(cid in e for cid in ids)]


def run_id(podman, *args) -> tuple[subprocess.CompletedProcess, str]:
    """podman run with --cidfile: the result and the container's id."""
    cidfile = os.path.join(podman.work, f"cid-{time.monotonic_ns()}")
    r = podman("run", "--cidfile", cidfile, *args)
    cid = open(cidfile).read().strip() if os.path.exists(cidfile) else ""
    podman.ids.add(cid) if cid else None
    return r, cid


def runtime_state_gone(state_root: str, timeout: float = 15) -> bool:
    """podman deletes the runtime's container from its cleanup process (conmon's exit
    command), which may finish just after podman itself has returned."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not os.listdir(os.path.join(state_root, "containers")):
            return True
        time.sleep(0.1)
    return False


def test_podman_run_prints_hi(podman, state_root):
    r, cid = run_id(podman, "--rm", "--network", "none", "localhost/busybox", "echo", "hi")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hi\n"
    assert runtime_state_gone(state_root)
    assert not ours_in_v1([cid])


def test_podman_detached_exec_stop_rm(podman, mc, state_root):
    r, cid = run_id(podman, "-d", "--name", "web", "--network", "none", "localhost/busybox",
                    "sh", "-c", 'trap "exit 0" TERM; echo up; while true; do sleep 0.1; done')
    assert r.returncode == 0, r.stderr
    assert cid == r.stdout.strip()
    try:
        assert cid[:12] in mc("ps").stdout  # the same container, seen from minicontainer
        r = podman("exec", "web", "sh", "-c", "hostname; cat /proc/1/cmdline | head -c 2")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == [cid[:12], "sh"]
        assert podman("exec", "web", "sh", "-c", "exit 3").returncode == 3
        r = podman("stop", "-t", "5", "web")
        assert r.returncode == 0, r.stderr
        r = podman("ps", "-a", "--format", "{{.Status}}")
        assert r.stdout.startswith("Exited (0)")
        assert podman("logs", "web").stdout == "up\n"
    finally:
        r = podman("rm", "-f", "web")
    assert r.returncode == 0, r.stderr
    assert runtime_state_gone(state_root)


def test_podman_memory_limit_is_refused_on_this_host(podman, state_root):
    r, _ = run_id(podman, "--rm", "--network", "none", "--memory", "64m", "localhost/busybox",
                  "echo", "ran unlimited")
    if "memory" in open("/sys/fs/cgroup/unified/cgroup.controllers").read():
        pytest.skip("this host's cgroup v2 has a memory controller: the limit is enforced")
    assert r.returncode != 0
    assert "ran unlimited" not in r.stdout
    assert "cannot apply --memory" in r.stderr and "never ignores a limit" in r.stderr
    assert podman("ps", "-a", "-q").stdout == ""  # podman removed what it had made
    assert runtime_state_gone(state_root)


def test_podman_stock_seccomp_profile_is_applied(podman, state_root):
    """podman sends its default seccomp profile in config.json (linux.seccomp): applied as
    given; --security-opt seccomp=unconfined sends none."""
    for opts, expected in (([], "Seccomp:\t2\n"), (["--security-opt", "seccomp=unconfined"],
                                                   "Seccomp:\t0\n")):
        r, _ = run_id(podman, "--rm", "--network", "none", *opts, "localhost/busybox",
                      "grep", "Seccomp:", "/proc/self/status")
        assert r.returncode == 0, r.stderr
        assert r.stdout == expected
    assert runtime_state_gone(state_root)
