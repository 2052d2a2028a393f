"""Long-running containers: run -d, ps, exec, logs, stop, kill, rm, inspect; state that
survives the runtime's own death; exec into every namespace of the container."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import PYTHON

LOOP = 'trap "echo got TERM; exit 3" TERM; echo started; while true; do sleep 0.1; done'


@pytest.fixture
def detached(mc, rootfs):
    """Start detached containers; whatever a test leaves is force-removed at the end."""
    started = []

    def start(*args):
        r = mc("run", "-d", *args)
        assert r.returncode == 0, r.stderr
        cid = r.stdout.strip()
        started.append(cid)
        return cid

    yield start
    for cid in started:
        mc("rm", "-f", cid)


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def inspect(mc, ref) -> dict:
    r = mc("inspect", ref)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)[0]


def test_run_detached_ps_logs_stop_rm(mc, rootfs, detached):
    cid = detached("--name", "web", rootfs, "sh", "-c", LOOP)
    assert len(cid) == 64
    assert wait_for(lambda: "started" in mc("logs", "web").stdout)
    ps = mc("ps").stdout
    assert cid[:12] in ps and "web" in ps and "running" in ps
    info = inspect(mc, cid[:8])  # a short id prefix works
    assert info["name"] == "web" and info["status"] == "running" and info["pid"] > 0

    t0 = time.monotonic()
    r = mc("stop", "-t", "5", "web")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 4  # the trap made it exit on SIGTERM, no SIGKILL wait
    assert "web" not in mc("ps").stdout  # only running ones without -a
    ps_all = mc("ps", "-a").stdout
    assert "exited (3)" in ps_all
    assert mc("logs", "web").stdout == "started\ngot TERM\n"
    assert inspect(mc, "web")["exit_code"] == 3
    r = mc("rm", "web")
    assert r.returncode == 0, r.stderr
    assert cid[:12] not in mc("ps", "-a").stdout
    r = mc("inspect", "web")
    assert r.returncode == 125 and "no such container" in r.stderr


def test_stop_kills_after_the_timeout(mc, rootfs, detached):
    detached("--name", "stubborn", rootfs, "sleep", "1000")  # PID 1 ignores SIGTERM
    t0 = time.monotonic()
    assert mc("stop", "-t", "1", "stubborn").returncode == 0
    assert 0.9 < time.monotonic() - t0 < 5
    assert "exited (137)" in mc("ps", "-a").stdout


def test_detached_init_returns_and_forwards_stop(mc, rootfs, detached):
    """run -d --init: the init (PID 1, which never execs) must not hold `run -d`'s pipes
    open, and it passes stop's SIGTERM to a command that has no handler of its own."""
    t0 = time.monotonic()
    detached("--init", "--name", "inited", rootfs, "sleep", "1000")
    assert time.monotonic() - t0 < 10
    t0 = time.monotonic()
    assert mc("stop", "-t", "5", "inited").returncode == 0
    assert time.monotonic() - t0 < 4
    assert "exited (143)" in mc("ps", "-a").stdout


def test_kill_with_a_signal_and_rm_force(mc, rootfs, detached):
    detached("--name", "k", rootfs, "sh", "-c", 'trap "exit 12" USR1; while true; do sleep 0.1; done')
    time.sleep(0.3)
    assert mc("kill", "-s", "USR1", "k").returncode == 0
    assert wait_for(lambda: inspect(mc, "k")["status"] == "stopped")
    assert inspect(mc, "k")["exit_code"] == 12
    r = mc("kill", "k")
    assert r.returncode == 125 and "stopped" in r.stderr

    detached("--name", "r", rootfs, "sleep", "1000")
    r = mc("rm", "r")
    assert r.returncode == 125 and "running" in r.stderr and "rm -f" in r.stderr
    assert inspect(mc, "r")["status"] == "running"  # refused: nothing changed
    assert mc("rm", "-f", "r").returncode == 0
    assert mc("rm", "k").returncode == 0


def test_detached_rm_removes_itself_and_logs_follow(mc, mc_cmd, rootfs, state_root):
    r = mc("run", "-d", "--rm", rootfs, "sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.2; done")
    cid = r.stdout.strip()
    follow = subprocess.run([*mc_cmd, "logs", "-f", cid], capture_output=True, text=True, timeout=20)
    assert follow.stdout == "line1\nline2\nline3\n"
    assert wait_for(lambda: not os.path.isdir(os.path.join(state_root, "containers", cid)))


def test_names_are_unique_and_failures_leave_nothing(mc, rootfs, detached):
    detached("--name", "dup", rootfs, "sleep", "1000")
    r = mc("run", "-d", "--name", "dup", rootfs, "true")
    assert r.returncode == 125 and "already in use" in r.stderr
    r = mc("run", "-d", rootfs, "no-such-command")
    assert r.returncode == 127 and "not found" in r.stderr
    assert len(mc("ps", "-a", "-q").stdout.split()) == 1


def test_state_survives_the_shim_being_killed(mc, rootfs, detached):
    """SIGKILL the detached container's supervising process: the container runs on, and
    every verb still works; once it dies unwatched, it reads as stopped."""
    detached("--name", "orphan", rootfs, "sleep", "1000")
    info = inspect(mc, "orphan")
    os.kill(info["runtime_pid"], signal.SIGKILL)
    time.sleep(0.2)
    info = inspect(mc, "orphan")
    assert info["status"] == "running"
    os.kill(info["pid"], 0)  # still alive
    assert mc("exec", "orphan", "true").returncode == 0
    assert mc("kill", "-s", "KILL", "orphan").returncode == 0
    assert wait_for(lambda: inspect(mc, "orphan")["status"] == "stopped")
    assert "exited" in mc("ps", "-a").stdout  # exit code unknown: nobody collected it
    assert mc("rm", "orphan").returncode == 0


def test_an_oci_container_outlives_create(mc, rootfs, mc_cmd, tmp_path):
    """`create` is the runtime process of an OCI container and exits once it exists: the
    container lives on, and state, start and delete find it."""
    bundle = make_bundle(tmp_path, rootfs, ["sleep", "1000"])
    # (the container inherits create's stdio, as with runc: no pipe to wait on here)
    p = subprocess.Popen([*mc_cmd, "create", "--bundle", bundle, "ctr-killed"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert p.wait(timeout=20) == 0
    state = json.loads(mc("state", "ctr-killed").stdout)
    assert state["status"] == "created"
    assert mc("start", "ctr-killed").returncode == 0
    assert json.loads(mc("state", "ctr-killed").stdout)["status"] == "running"
    assert mc("delete", "--force", "ctr-killed").returncode == 0


def test_exec_enters_every_namespace(mc, rootfs, detached, tmp_path):
    (tmp_path / "vol").mkdir()
    (tmp_path / "vol" / "marker").write_text("from the host\n")
    cid = detached("--name", "ns", "-h", "box", "-v", f"{tmp_path / 'vol'}:/data:ro",
                   "--tmpfs", "/scratch", rootfs, "sh", "-c", "echo inside > /scratch/f; sleep 1000")
    pid = inspect(mc, "ns")["pid"]
    time.sleep(0.2)
    r = mc("exec", "ns", "sh", "-c",
           "hostname; cat /data/marker /scratch/f; ps -o pid,comm | grep -c sleep; cat /proc/1/cmdline | tr '\\0' ' '")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "box"                     # uts
    assert lines[1:3] == ["from the host", "inside"]  # mnt: its volumes and its tmpfs
    assert lines[3] == "1"                       # pid: sees the container's processes...
    assert lines[4].startswith("sleep 1000")     # ...with the container's numbering
    for ns in ("mnt", "pid", "uts", "ipc", "net", "cgroup"):
        r = mc("exec", "ns", "readlink", f"/proc/self/ns/{ns}")
        assert r.stdout.strip() == os.readlink(f"/proc/{pid}/ns/{ns}"), ns
    # its cgroup, too
    r = mc("exec", "ns", "sh", "-c", "cat /proc/self/cgroup; echo --; cat /proc/1/cgroup")
    mine, _, init = r.stdout.partition("--\n")
    assert mine == init and "0::/\n" in mine  # the same cgroup, the root of its namespace
    # its privileges: capabilities and no_new_privs of the container's process
    r = mc("exec", "ns", "grep", "-E", "CapEff|NoNewPrivs", "/proc/self/status")
    with open(f"/proc/{pid}/status") as f:
        expected = [l for l in f.read().splitlines() if l.startswith(("CapEff", "NoNewPrivs"))]
    assert r.stdout.splitlines() == expected


def test_exec_flags_and_exit_status(mc, rootfs, detached):
    detached("--name", "ex", "-e", "FROM_RUN=yes", rootfs, "sleep", "1000")
    r = mc("exec", "-e", "EXTRA=1", "-u", "1000", "-w", "/tmp", "ex", "sh", "-c",
           'echo $FROM_RUN $EXTRA $(id -u) $(pwd)')
    assert r.stdout == "yes 1 1000 /tmp\n"
    assert mc("exec", "ex", "sh", "-c", "exit 7").returncode == 7
    r = mc("exec", "ex", "nope")
    assert r.returncode == 127 and "not found" in r.stderr
    r = mc("exec", "-i", "ex", "cat", input="through stdin\n", stdin=None)
    assert r.stdout == "through stdin\n"
    r = mc("exec", "no-such-container", "true")
    assert r.returncode == 125 and "no such container" in r.stderr


def test_exec_tty(mc_cmd, rootfs, detached):
    detached("--name", "tty", rootfs, "sleep", "1000")
    cmd = " ".join([*mc_cmd, "exec", "-it", "tty", "sh", "-c", "'tty; echo $TERM; exit 5'"])
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=30)
    assert r.returncode == 5
    assert "/dev/pts/" in r.stdout and "xterm" in r.stdout


def test_exec_into_a_foreground_run(mc_cmd, mc, rootfs, state_root):
    p = subprocess.Popen([*mc_cmd, "run", "--name", "fg", "-h", "fg", rootfs, "sleep", "1000"])
    try:
        assert wait_for(lambda: mc("inspect", "fg").returncode == 0 and
                        inspect(mc, "fg").get("pid"))
        assert mc("exec", "fg", "hostname").stdout == "fg\n"
        assert "fg" in mc("ps").stdout
        assert mc("stop", "-t", "1", "fg").returncode == 0
        assert p.wait(timeout=10) == 137
    finally:
        p.kill()
        p.wait()


def oci_create(mc_cmd, tmp_path, *args, stdout=None):
    """`create`, with the container's stdio (inherited from create, as runc's) on files: a
    pipe would stay open as long as the container runs."""
    err = tmp_path / "create.err"
    with open(err, "w") as e:
        r = subprocess.run([*mc_cmd, "create", *args], stdin=subprocess.DEVNULL,
                           stdout=stdout or subprocess.DEVNULL, stderr=e, timeout=30)
    r.stderr = err.read_text()
    return r


def make_bundle(tmp_path, rootfs, args, terminal=False, **extra) -> str:
    bundle = tmp_path / "bundle"
    bundle.mkdir(exist_ok=True)
    if (bundle / "config.json").exists():
        (bundle / "config.json").unlink()
    subprocess.run([PYTHON, "-m", "minicontainer", "spec", "--bundle", str(bundle)], check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["root"]["path"] = rootfs
    config["process"]["args"] = args
    config["process"]["terminal"] = terminal
    config.update(extra)
    (bundle / "config.json").write_text(json.dumps(config))
    return str(bundle)
