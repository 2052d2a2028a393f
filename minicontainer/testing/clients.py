"""Real clients (Docker 20.10, containerd 1.6's ctr, podman 4.3) set up to drive an OCI runtime
binary, each with its own state, data and sockets in one work directory. Used by
tests/test_clients.py and bench/clients.py, the same way.

Nothing here makes a namespace: the caller gives `enter`, the command prefix that puts a
command where the clients must run (nsenter into the test's namespace, or nothing when the
process is already inside one, as the benchmark is). That place must have a cgroup2-only
/sys/fs/cgroup, a private tmpfs on /run/containerd (the runc shim's sockets, a fixed path)
and its own network namespace; see namespace_script().

    ensure_packages()                  the clients from Debian, when missing
    lifeline_script(work, parents)     the holder's script: nothing outlives a killed caller
    remove_client_cgroups(root, before) what they leave in the cgroup2 root
    runtime_wrapper(path, state_root)  this checkout's minicontainer as a runtime binary
    docker_save_tarball(rootfs, path)  the image every client loads
    Clients(work, enter, runtimes)     .containerd() .dockerd() .ctr .docker .podman, .stop()
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNC = "/usr/sbin/runc"
DOCKER = "/usr/bin/docker"  # docker.io's CLI (another `docker` may come first on PATH)
IMAGE = "localhost/busybox:latest"
PACKAGES = {"dockerd": "docker.io", "containerd": "containerd", "ctr": "containerd",
            "containerd-shim-runc-v2": "containerd", "podman": "podman", "conmon": "conmon",
            "runc": "runc"}
NAMESPACE = "mctest"  # containerd's namespace for ctr: its cgroups go under /mctest
# The cgroup parents the clients are told to use (and podman's own, for conmon): what to
# remove from the cgroup2 root afterwards
PARENTS = ("mctest-docker", "mctest", "mctest-podman", "libpod_parent")

# podman's stock configuration, but for this host's needs: its hard RLIMIT_NOFILE is 20000,
# its cgroup2 has no pids controller, and systemd (journald) is absent. bench/network.py
# adds its [network] section to the same text.
PODMAN_HOST_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
pids_limit = 0
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
"""
PODMAN_CONF = PODMAN_HOST_CONF + 'runtime_supports_json = ["minicontainer"]\n'  # [engine]


def namespace_script(then: str) -> str:
    """The sh script that, run by `unshare --mount --net --propagation private`, makes the
    place the clients run in, then runs `then` (needs /run/containerd to exist)."""
    return ("mount -t tmpfs cgroupfs /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup "
            "&& mount -t tmpfs -o mode=0711 containerd /run/containerd && ip link set lo up "
            f"&& {then}")


def lifeline_script(work: str, parents: list[str]) -> str:
    """The sh script a holder process runs in the namespace so that nothing outlives its
    caller, however the caller dies (a killed or timed-out pytest too): it reads its stdin, a
    pipe whose other end only the caller holds, and at end of file kills every process in its
    mount namespace (daemons, shims, conmon, CLIs) and, with cgroup.kill, the containers in the
    clients' cgroup `parents` (those it made); then unmounts what is left under `work`,
    removes it and the emptied cgroups. A caller that cleans up itself SIGKILLs the holder."""
    groups = " ".join(f"/sys/fs/cgroup/{p}" for p in parents)
    return (
        "read _; me=$(readlink /proc/$$/ns/mnt); "
        "for p in /proc/[0-9]*; do pid=${p#/proc/}; [ $pid != $$ ] && "
        '[ "$(readlink $p/ns/mnt 2>/dev/null)" = "$me" ] && kill -9 $pid 2>/dev/null; done; '
        f"for g in {groups}; do [ -e $g/cgroup.kill ] && echo 1 > $g/cgroup.kill; done; "
        "sleep 1; "
        f"awk '$5 ~ \"^{work}/\" {{print $5}}' /proc/self/mountinfo | sort -r | "
        "xargs -r -n1 umount -l; "
        f"rm -rf {work}; "
        f"for g in {groups}; do [ -d $g ] && find $g -depth -type d -exec rmdir {{}} +; done; "
        "true")


def cgroup_children(root: str) -> set[str]:
    return {e.name for e in os.scandir(root) if e.is_dir()}


def remove_client_cgroups(root: str, before: set[str]) -> list[str]:
    """Remove from the cgroup2 hierarchy at `root` the parents the clients made (PARENTS not
    in `before`), deepest first; a cgroup still in use stays. Returns what is left."""
    left = []
    for name in (cgroup_children(root) - before) & set(PARENTS):
        for directory, _, _ in sorted(os.walk(f"{root}/{name}"), key=lambda w: -len(w[0])):
            try:
                os.rmdir(directory)
            except OSError:
                left.append(directory)
    return left


def ensure_packages() -> None:
    """Install the clients from Debian when missing. /usr/sbin/policy-rc.d (exit 101) keeps
    their services from starting on the host; refuse to go on without it."""
    missing = sorted({pkg for cmd, pkg in PACKAGES.items() if not shutil.which(cmd)})
    if not missing:
        return
    with open("/usr/sbin/policy-rc.d") as f:
        if "exit 101" not in f.read():
            raise RuntimeError("/usr/sbin/policy-rc.d must exit 101: installing the clients "
                               "would start their services on the host")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-qq",
                    "--no-install-recommends", *missing], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    if host_daemons():
        raise RuntimeError(f"a package started its service on the host: {host_daemons()}")


def host_daemons() -> list[str]:
    """dockerd or containerd processes in the host's own mount namespace."""
    own = os.readlink("/proc/self/ns/mnt")
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
            if comm in ("dockerd", "containerd") and os.readlink(f"/proc/{pid}/ns/mnt") == own:
                found.append(f"{pid} {comm}")
        except OSError:
            continue
    return found


def runtime_wrapper(path: str, state_root: str | None = None) -> str:
    """An executable at `path` that runs this checkout's minicontainer with this interpreter,
    as a client runs its runtime binary. state_root: for calls without --root (podman's
    cleanup process gets no --runtime-flag); the runc shim and Docker always pass --root."""
    from minicontainer import launcher

    return launcher.write(path, env={"MINICONTAINER_ROOT": state_root} if state_root else None)


def docker_save_tarball(rootfs: str, path: str) -> None:
    """`rootfs` as `docker save` writes an image: one layer tar, a config JSON whose
    rootfs.diff_ids names the layer, and manifest.json. docker load, podman load and
    ctr image import all read it."""
    layer = path + ".layer"
    subprocess.run(["tar", "--numeric-owner", "-C", rootfs, "-cf", layer, "."], check=True)
    with open(layer, "rb") as f:
        diff_id = "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "docker_save_tarball"}],
    }).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_dir = diff_id[7:]
    manifest = json.dumps([{"Config": config_name, "RepoTags": [IMAGE],
                            "Layers": [f"{layer_dir}/layer.tar"]}]).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in ((config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tar.add(layer, arcname=f"{layer_dir}/layer.tar")
    os.unlink(layer)


class Clients:
    """The daemons and CLIs, all under `work`; `runtimes` maps a name to a runtime binary."""

    def __init__(self, work: str, enter: list[str], runtimes: dict[str, str]):
        self.work, self.enter, self.runtimes = work, enter, runtimes
        self.image = f"{work}/busybox.tar"
        self._daemons: list[subprocess.Popen] = []
        self.ctr = Ctr(self)
        self.docker = Docker(self)
        self.podman = Podman(self)

    def call(self, args, timeout=120, env=None, **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run([*self.enter, *args], timeout=timeout, env=env, **kwargs)

    def log(self, name: str) -> str:
        with open(f"{self.work}/{name}.log") as f:
            return f.read()[-3000:]

    def _daemon(self, name: str, args: list[str], socket: str) -> None:
        with open(f"{self.work}/{name}.log", "w") as log:
            proc = subprocess.Popen([*self.enter, *args], stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self._daemons.append(proc)
        deadline = time.monotonic() + 60
        while not os.path.exists(socket):
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {self.log(name)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start: {self.log(name)}")
            time.sleep(0.1)

    def containerd(self) -> None:
        """containerd with its own root, state, sockets and opt dir; the CRI plugin off."""
        d = f"{self.work}/containerd"
        os.makedirs(d)
        with open(f"{d}/config.toml", "w") as f:
            f.write(f'version = 2\nroot = "{d}/root"\nstate = "{d}/state"\n'
                    'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                    f'[grpc]\n  address = "{d}/sock"\n[ttrpc]\n  address = "{d}/sock.ttrpc"\n'
                    '[debug]\n  address = ""\n'
                    f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{d}/opt"\n')
        self._daemon("containerd", ["containerd", "--config", f"{d}/config.toml"], f"{d}/sock")
        self.ctr.sock = f"{d}/sock"

    def dockerd(self) -> None:
        """dockerd on our containerd, without iptables or a bridge, every runtime added."""
        d = f"{self.work}/docker"
        os.makedirs(d)
        with open(f"{d}/daemon.json", "w") as f:
            f.write("{}")  # not /etc/docker/daemon.json
        self._daemon("dockerd", [
            "dockerd", "--config-file", f"{d}/daemon.json", "--data-root", f"{d}/data",
            "--exec-root", f"{d}/exec", "--pidfile", f"{d}/pid", "-H", f"unix://{d}/sock",
            "--containerd", self.ctr.sock, "--containerd-namespace", "mctest-moby",
            "--iptables=false", "--ip6tables=false", "--bridge=none",
            "--cgroup-parent", "/mctest-docker", "--storage-driver", "overlay2",
            *(f"--add-runtime={name}={path}" for name, path in self.runtimes.items()
              if name != "runc")], f"{d}/sock")
        self.docker.sock = f"{d}/sock"

    def podman_setup(self) -> None:
        d = f"{self.work}/podman"
        os.makedirs(d)
        with open(f"{d}/containers.conf", "w") as f:
            f.write(PODMAN_CONF)
        with open(f"{d}/storage.conf", "w") as f:
            f.write(f'[storage]\ndriver = "overlay"\nrunroot = "{d}/runroot"\n'
                    f'graphroot = "{d}/root"\n')

    def stop(self) -> None:
        for proc in reversed(self._daemons):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._daemons.clear()


class Ctr:
    def __init__(self, clients: Clients):
        self.clients, self.sock = clients, None

    def __call__(self, *args, **kwargs):
        return self.clients.call(["ctr", "-a", self.sock, "-n", NAMESPACE, *args], **kwargs)

    def runtime_flags(self, runtime: str) -> list[str]:
        """`ctr run` flags for this runtime: its binary and its own --root. --cpu-shares 0:
        ctr asks for cpu.weight by default, which nothing can set on a cgroup2 without the
        cpu controller (runc fails there as minicontainer does)."""
        return ["--runc-binary", self.clients.runtimes[runtime], "--runc-root",
                f"{self.clients.work}/ctr-{runtime}", "--cpu-shares", "0"]


class Docker:
    def __init__(self, clients: Clients):
        self.clients, self.sock = clients, None

    def __call__(self, *args, **kwargs):
        return self.clients.call([DOCKER, "-H", f"unix://{self.sock}", *args], **kwargs)


class Podman:
    def __init__(self, clients: Clients):
        self.clients = clients
        d = f"{clients.work}/podman"
        self.env = dict(os.environ, CONTAINERS_CONF=f"{d}/containers.conf",
                        CONTAINERS_STORAGE_CONF=f"{d}/storage.conf")
        self.prefix = ["podman", "--root", f"{d}/root", "--runroot", f"{d}/runroot",
                       "--tmpdir", f"{d}/tmp"]

    def __call__(self, *args, runtime=None, **kwargs):
        flags = ["--runtime", self.clients.runtimes[runtime]] if runtime else []
        return self.clients.call([*self.prefix, *flags, *args], env=self.env, **kwargs)
