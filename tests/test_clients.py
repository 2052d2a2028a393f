"""Real clients drive minicontainer as their OCI runtime: Docker 20.10 (dockerd), containerd 1.6
(`ctr run --runc-binary`, through the io.containerd.runc.v2 shim) and podman 4.3, each from
Debian's packages, each scenario with runc too, so that a failure says whether it is ours.

Where they run: one private mount + network namespace for the whole module (a holder process
sleeps in it; every client call enters it with nsenter). In it /sys/fs/cgroup is a fresh
tmpfs with only cgroup2 mounted (on this hybrid host the clients would otherwise make cgroups
in the v1 hierarchies, which the machine uses), /run/containerd is a private tmpfs (the shim's
sockets), and the network holds only lo: no client touches host networking. Every daemon
keeps its state, data and sockets in one temporary directory; at the end the cgroups the
clients left in the cgroup2 root (their parents: /mctest-docker, /mctest, /mctest-podman,
podman's conmon groups) are removed.

The image: ./rootfs as a docker-save tarball (one layer tar, a config JSON with
rootfs.diff_ids, manifest.json), which `docker load`, `podman load` and `ctr image import`
all read. minicontainer is given to the clients as a runtime binary: a small script running
this checkout with the venv's interpreter. The set-up itself is shared with bench/clients.py:
minicontainer/testing/clients.py.

Every scenario must pass with minicontainer as it does with runc: there is no list of
expected failures.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
import time

import pytest

from minicontainer.testing.clients import (IMAGE, PARENTS, RUNC, Clients, cgroup_children,
                                           docker_save_tarball, ensure_packages, host_daemons,
                                           lifeline_script, namespace_script,
                                           remove_client_cgroups, runtime_wrapper)

V2_HOST = "/sys/fs/cgroup/unified"  # the namespace's /sys/fs/cgroup, seen from the host



@pytest.fixture(params=["runc", "minicontainer"])
def runtime(request) -> str:
    """Every client scenario runs with runc and with minicontainer."""
    return request.param


# --- set-up ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world(rootfs, state_root):
    """The namespace (a holder process waits in it: the lifeline), the work directory, the
    image, the runtimes; the daemons are started by the fixtures of the clients that need them."""
    ensure_packages()
    assert not host_daemons(), "dockerd or containerd runs on the host"
    before = cgroup_children(V2_HOST)
    made_run_containerd = not os.path.exists("/run/containerd")
    os.makedirs("/run/containerd", exist_ok=True)  # a mount point, for the namespace's tmpfs
    work = tempfile.mkdtemp(prefix="mcc-", dir="/tmp")
    # the holder is also the lifeline: when this process dies, however, the pipe on its stdin
    # closes and it kills and removes what the clients left (lifeline_script)
    holder = subprocess.Popen(
        ["unshare", "--mount", "--net", "--propagation", "private", "sh", "-c",
         namespace_script("echo ready && " + lifeline_script(
             work, sorted(set(PARENTS) - before)))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    clients = None
    try:
        assert holder.stdout.readline().strip() == "ready", "cannot make the namespace"
        clients = Clients(work, ["nsenter", "-t", str(holder.pid), "-m", "-n", "--"],
                          {"runc": RUNC, "minicontainer": runtime_wrapper(
                              f"{work}/minicontainer", state_root)})
        docker_save_tarball(rootfs, clients.image)
        yield clients
    finally:
        if clients:
            clients.stop()
        holder.kill()
        holder.wait()
        for _ in range(50):  # the daemons' mounts went with the namespace; let it go
            if subprocess.run(["rm", "-rf", work], capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        if made_run_containerd:
            os.rmdir("/run/containerd")
        left = remove_client_cgroups(V2_HOST, before)
    assert not host_daemons()
    assert not left, f"the clients' cgroups were left behind: {left}"


@pytest.fixture(scope="module")
def containerd(world):
    world.containerd()


@pytest.fixture(scope="module")
def ctr(world, containerd):
    c = world.ctr
    ok(c("image", "import", world.image))
    yield c
    for cid in c("task", "ls", "-q").stdout.split():
        c("task", "kill", "-s", "KILL", cid)
        c("task", "delete", "-f", cid)
    for cid in c("container", "ls", "-q").stdout.split():
        c("container", "delete", cid)


@pytest.fixture(scope="module")
def docker(world, containerd):
    world.dockerd()
    d = world.docker
    ok(d("load", "-i", world.image))
    yield d
    ids = d("ps", "-aq").stdout.split()
    if ids:
        d("rm", "-f", *ids)


@pytest.fixture(scope="module")
def podman(world):
    world.podman_setup()
    pm = world.podman
    ok(pm("load", "-i", world.image))
    yield pm
    pm("rm", "-af", "-t", "0")


def test_lifeline_cleans_up_after_its_caller_dies():
    """What the holder does when pytest is killed (its stdin pipe closes): a process in the
    namespace, a process in a client's cgroup, a mount under the work directory, all gone,
    and the directory and the cgroup with them. (The whole module killed mid-run was also
    seen to leave nothing: the same script, with dockerd, containerd, shims and containers.)"""
    work = tempfile.mkdtemp(prefix="mcc-", dir="/tmp")
    group = "mctest-lifeline"
    assert not os.path.exists(f"{V2_HOST}/{group}")
    os.makedirs("/run/containerd", exist_ok=True)  # as the world fixture: a mount point
    holder = subprocess.Popen(
        ["unshare", "--mount", "--net", "--propagation", "private", "sh", "-c", namespace_script(
            f"mkdir {work}/m && mount -t tmpfs t {work}/m && mkdir /sys/fs/cgroup/{group} && "
            "{ sleep 1000 & } && sh -c 'echo $$ > /sys/fs/cgroup/" + group + "/cgroup.procs "
            "&& exec sleep 1000' & echo ready && " + lifeline_script(work, [group]))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        assert wait_for(lambda: _read(f"{V2_HOST}/{group}/cgroup.procs").strip())
        ns = os.readlink(f"/proc/{holder.pid}/ns/mnt")
        inside = [p for p in filter(str.isdigit, os.listdir("/proc"))
                  if _mnt_ns(p) == ns and int(p) != holder.pid]
        assert inside  # the first sleep
        holder.stdin.close()  # as when the caller dies: end of file on the holder's stdin
        assert holder.wait(timeout=15) == 0
        # killed; reaped (a zombie until then) once init has adopted it
        assert wait_for(lambda: not [p for p in inside if _mnt_ns(p) == ns]), inside
        assert not os.path.exists(work)
        assert not os.path.exists(f"{V2_HOST}/{group}")
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _mnt_ns(pid: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr.strip()[-1500:]}"
    return r.stdout


def wait_for(predicate, timeout=15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


# --- Docker ---------------------------------------------------------------------------------

def docker_run(docker, runtime, *args, **kwargs):
    return docker("run", "--runtime", runtime, "--network", "none", *args, **kwargs)


def test_docker_run(docker, runtime):
    assert ok(docker_run(docker, runtime, "--rm", IMAGE, "echo", "hi")) == "hi\n"
    r = docker_run(docker, runtime, "--rm", IMAGE, "sh", "-c", "exit 3")
    assert r.returncode == 3


def test_docker_volume(docker, runtime, world):
    data = tempfile.mkdtemp(dir=world.work)
    with open(f"{data}/in", "w") as f:
        f.write("from the host\n")
    out = ok(docker_run(docker, runtime, "--rm", "-v", f"{data}:/data", IMAGE,
                        "sh", "-c", "cat /data/in; echo from the container > /data/out"))
    assert out == "from the host\n"
    with open(f"{data}/out") as f:
        assert f.read() == "from the container\n"


def test_docker_user(docker, runtime):
    out = ok(docker_run(docker, runtime, "--rm", "--user", "1000:1000", IMAGE,
                        "sh", "-c", "id -u; id -g; grep CapEff /proc/self/status"))
    assert out.splitlines()[:2] == ["1000", "1000"]
    assert out.splitlines()[2].split()[1] == "0000000000000000"  # no capabilities left


def _docker_detached(docker, runtime, name):
    docker("rm", "-f", name)
    ok(docker_run(docker, runtime, "-d", "--name", name, IMAGE, "sh", "-c",
                  "trap 'exit 0' TERM; while :; do sleep 0.2; done"))


def test_docker_exec(docker, runtime):
    _docker_detached(docker, runtime, "dx")
    try:
        assert ok(docker("exec", "dx", "sh", "-c", "echo in; cat /proc/1/comm")) == "in\nsh\n"
        assert docker("exec", "dx", "sh", "-c", "exit 5").returncode == 5
        assert ok(docker("exec", "-u", "1000", "-w", "/tmp", "dx", "sh", "-c",
                         "id -u; pwd")) == "1000\n/tmp\n"
    finally:
        ok(docker("rm", "-f", "dx"))


def test_docker_top(docker, runtime):
    _docker_detached(docker, runtime, "dt")
    try:
        out = ok(docker("top", "dt"))
        assert out.splitlines()[0].split()[:2] == ["UID", "PID"]
        assert any("sh -c trap" in line for line in out.splitlines()[1:]), out
    finally:
        ok(docker("rm", "-f", "dt"))


def test_docker_pause(docker, runtime):
    _docker_detached(docker, runtime, "dp")
    try:
        ok(docker("pause", "dp"))
        assert ok(docker("inspect", "-f", "{{.State.Status}}", "dp")).strip() == "paused"
        ok(docker("unpause", "dp"))
        assert ok(docker("inspect", "-f", "{{.State.Status}}", "dp")).strip() == "running"
        assert ok(docker("exec", "dp", "echo", "awake")) == "awake\n"
    finally:
        ok(docker("rm", "-f", "dp"))


def test_docker_restart(docker, runtime):
    _docker_detached(docker, runtime, "dr")
    try:
        ok(docker("exec", "dr", "sh", "-c", "echo kept > /kept"))
        ok(docker("restart", "-t", "0", "dr"))
        assert ok(docker("exec", "dr", "cat", "/kept")) == "kept\n"
    finally:
        ok(docker("rm", "-f", "dr"))


# --- containerd (ctr) -----------------------------------------------------------------------

def test_ctr_run(ctr, runtime):
    out = ok(ctr("run", "--rm", *ctr.runtime_flags(runtime), IMAGE, f"cr-{runtime}",
                 "echo", "hi"))
    assert out == "hi\n"
    r = ctr("run", "--rm", *ctr.runtime_flags(runtime), IMAGE, f"cr-{runtime}",
            "sh", "-c", "exit 3")
    assert r.returncode == 3


def test_ctr_volume(ctr, runtime, world):
    data = tempfile.mkdtemp(dir=world.work)
    with open(f"{data}/in", "w") as f:
        f.write("from the host\n")
    out = ok(ctr("run", "--rm", *ctr.runtime_flags(runtime), "--mount",
                 f"type=bind,src={data},dst=/data,options=rbind:rw", IMAGE, f"cv-{runtime}",
                 "sh", "-c", "cat /data/in; echo from the container > /data/out"))
    assert out == "from the host\n"
    with open(f"{data}/out") as f:
        assert f.read() == "from the container\n"


def _ctr_detached(ctr, runtime, cid):
    ok(ctr("run", "-d", *ctr.runtime_flags(runtime), IMAGE, cid, "sh", "-c",
           "trap 'exit 0' TERM; while :; do sleep 0.2; done"))


def _ctr_remove(ctr, cid):
    ctr("task", "kill", "-s", "KILL", cid)
    wait_for(lambda: "STOPPED" in ctr("task", "ls").stdout or
             cid not in ctr("task", "ls").stdout)
    ctr("task", "delete", "-f", cid)
    ok(ctr("container", "delete", cid))


def test_ctr_exec(ctr, runtime):
    cid = f"cx-{runtime}"
    _ctr_detached(ctr, runtime, cid)
    try:
        out = ok(ctr("task", "exec", "--exec-id", "e1", cid, "sh", "-c",
                     "echo in; cat /proc/1/comm"))
        assert out == "in\nsh\n"
        r = ctr("task", "exec", "--exec-id", "e2", cid, "sh", "-c", "exit 5")
        assert r.returncode == 5
        out = ok(ctr("task", "exec", "--exec-id", "e3", "--user", "1000", "--cwd", "/tmp", cid,
                     "sh", "-c", "id -u; pwd"))
        assert out == "1000\n/tmp\n"
    finally:
        _ctr_remove(ctr, cid)


def test_ctr_ps(ctr, runtime):
    cid = f"cp-{runtime}"
    _ctr_detached(ctr, runtime, cid)
    try:
        out = ok(ctr("task", "ps", cid))
        pids = [line.split()[0] for line in out.splitlines()[1:]]
        assert pids and all(p.isdigit() for p in pids), out
        with open(f"/proc/{pids[0]}/cmdline", "rb") as f:
            assert f.read().startswith(b"sh\0-c\0")
    finally:
        _ctr_remove(ctr, cid)


def test_ctr_pause(ctr, runtime):
    cid = f"cz-{runtime}"
    _ctr_detached(ctr, runtime, cid)
    try:
        ok(ctr("task", "pause", cid))
        assert "PAUSED" in ok(ctr("task", "ls"))
        ok(ctr("task", "resume", cid))
        assert ok(ctr("task", "exec", "--exec-id", "e", cid, "echo", "awake")) == "awake\n"
    finally:
        _ctr_remove(ctr, cid)


def test_ctr_kill(ctr, runtime):
    cid = f"ck-{runtime}"
    _ctr_detached(ctr, runtime, cid)
    ok(ctr("task", "kill", cid))  # SIGTERM: the trap exits 0
    assert wait_for(lambda: "STOPPED" in ctr("task", "ls").stdout)
    ok(ctr("task", "delete", cid))
    ok(ctr("container", "delete", cid))
    assert cid not in ctr("container", "ls", "-q").stdout


# --- podman ---------------------------------------------------------------------------------

def podman_run(podman, runtime, *args, **kwargs):
    return podman("run", "--network", "none", "--cgroup-parent", "/mctest-podman", *args,
                  runtime=runtime, **kwargs)


def test_podman_run(podman, runtime):
    assert ok(podman_run(podman, runtime, "--rm", IMAGE, "echo", "hi")) == "hi\n"
    r = podman_run(podman, runtime, "--rm", IMAGE, "sh", "-c", "exit 3")
    assert r.returncode == 3


def test_podman_volume(podman, runtime, world):
    data = tempfile.mkdtemp(dir=world.work)
    with open(f"{data}/in", "w") as f:
        f.write("from the host\n")
    out = ok(podman_run(podman, runtime, "--rm", "-v", f"{data}:/data", IMAGE,
                        "sh", "-c", "cat /data/in; echo from the container > /data/out"))
    assert out == "from the host\n"
    with open(f"{data}/out") as f:
        assert f.read() == "from the container\n"


def test_podman_user(podman, runtime):
    out = ok(podman_run(podman, runtime, "--rm", "--user", "1000:1000", IMAGE,
                        "sh", "-c", "id -u; id -g; grep CapEff /proc/self/status"))
    assert out.splitlines()[:2] == ["1000", "1000"]
    assert out.splitlines()[2].split()[1] == "0000000000000000"


def _podman_detached(podman, runtime, name):
    podman("rm", "-f", "-t", "0", name)
    ok(podman_run(podman, runtime, "-d", "--name", name, IMAGE, "sh", "-c",
                  "trap 'exit 0' TERM; while :; do sleep 0.2; done"))


def test_podman_exec(podman, runtime):
    _podman_detached(podman, runtime, "px")
    try:
        assert ok(podman("exec", "px", "sh", "-c", "echo in; cat /proc/1/comm")) == "in\nsh\n"
        assert podman("exec", "px", "sh", "-c", "exit 5").returncode == 5
        assert ok(podman("exec", "-u", "1000", "-w", "/tmp", "px", "sh", "-c",
                         "id -u; pwd")) == "1000\n/tmp\n"
    finally:
        ok(podman("rm", "-f", "-t", "0", "px"))


def test_podman_top(podman, runtime):
    _podman_detached(podman, runtime, "pt")
    try:
        out = ok(podman("top", "pt"))
        assert "USER" in out.splitlines()[0]
        assert any("sh -c trap" in line for line in out.splitlines()[1:]), out
    finally:
        ok(podman("rm", "-f", "-t", "0", "pt"))


def test_podman_pause(podman, runtime):
    _podman_detached(podman, runtime, "pp")
    try:
        ok(podman("pause", "pp"))
        assert ok(podman("inspect", "-f", "{{.State.Status}}", "pp")).strip() == "paused"
        ok(podman("unpause", "pp"))
        assert ok(podman("inspect", "-f", "{{.State.Status}}", "pp")).strip() == "running"
        assert ok(podman("exec", "pp", "echo", "awake")) == "awake\n"
    finally:
        ok(podman("rm", "-f", "-t", "0", "pp"))


def test_podman_restart(podman, runtime):
    _podman_detached(podman, runtime, "pr")
    try:
        ok(podman("exec", "pr", "sh", "-c", "echo kept > /kept"))
        ok(podman("restart", "-t", "0", "pr"))
        assert ok(podman("exec", "pr", "cat", "/kept")) == "kept\n"
    finally:
        ok(podman("rm", "-f", "-t", "0", "pr"))
