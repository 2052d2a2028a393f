"""cgroups on the host the tests run on (hybrid here: cgroup2 without controllers, see
shared/host-notes.md): runs without limits are grouped in the v2 hierarchy and cleaned up,
limits the host cannot enforce are refused before anything starts, nonsense values are
rejected, and the limit translation matches docker's. The limits themselves are proven on a
real cgroup v2 kernel by tests/guest/cgroup_limits.py, run through test_cgroups_guest.py."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from minicontainer.kernel import cgroupfs
from minicontainer.runtime import cgroups
from minicontainer.spec import Resources

V2, V1 = cgroupfs.mounts()
CONTROLLERS = cgroupfs.controllers(V2) if V2 else set()


@pytest.fixture
def parent(state_root):
    """This session's cgroup parent (conftest's nothing_left_behind fails a test that leaves
    it or a container cgroup under it, and removes them)."""
    return f"{V2}/{cgroups.parent_name(state_root)}"


def _start(mc_cmd, *args):
    return subprocess.Popen([*mc_cmd, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _container_cgroups(parent):
    return [d for d in os.listdir(parent) if os.path.isdir(f"{parent}/{d}")] \
        if os.path.isdir(parent) else []


@pytest.mark.skipif(V2 is None, reason="never true on our machines: cgroup2 is mounted")
def test_unlimited_run_is_grouped_in_v2_and_removed(mc_cmd, rootfs, state_root, parent):
    p = _start(mc_cmd, "run", "-i", rootfs, "/bin/sh", "-c",
               "echo ready; cat /proc/self/cgroup | grep '^0::'; "
               "grep ' /sys/fs/cgroup ' /proc/self/mountinfo; read line")
    try:
        assert p.stdout.readline() == "ready\n"
        # Inside: the cgroup namespace is rooted at the container's own cgroup, and
        # /sys/fs/cgroup is a read-only cgroup2 mount of it.
        assert p.stdout.readline() == "0::/\n"
        mount = p.stdout.readline().split()
        assert mount[4] == "/sys/fs/cgroup" and mount[5].startswith("ro,") and "cgroup2" in mount
        # Outside: one cgroup, under this state root's parent, holding the container's
        # processes and nothing else.
        (cid,) = _container_cgroups(parent)
        procs = cgroupfs.read(f"{parent}/{cid}/cgroup.procs").split()
        assert procs
        for pid in procs:  # the container's: in its own pid namespace
            assert os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
            with open(f"/proc/{pid}/cgroup") as f:
                assert f"0::/{cgroups.parent_name(state_root)}/{cid}\n" in f.read()
        p.stdin.write("go\n")
        p.stdin.close()
        assert p.wait(timeout=10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close(), p.stderr.close()
    assert not os.path.exists(parent)  # the last container took the parent with it


def test_runtime_sigkilled_leaves_a_cgroup_that_gc_reclaims(mc_cmd, mc, rootfs, state_root, parent):
    p = _start(mc_cmd, "run", rootfs, "/bin/sh", "-c", "echo ready; exec sleep 60")
    assert p.stdout.readline() == "ready\n"
    p.kill()  # no cleanup by the runtime: its container dies (PDEATHSIG), the cgroup stays
    p.wait()
    p.stdout.close(), p.stderr.close(), p.stdin.close()
    (cid,) = _container_cgroups(parent)
    deadline = time.monotonic() + 5
    while cgroupfs.populated(f"{parent}/{cid}") and time.monotonic() < deadline:
        time.sleep(0.02)
    r = mc("gc")
    assert r.returncode == 0 and r.stdout == f"removed {cid[:12]}\n", r.stderr
    assert not os.path.exists(parent)


def test_next_run_reclaims_a_dead_runtimes_cgroup(mc_cmd, mc, rootfs, parent):
    p = _start(mc_cmd, "run", rootfs, "/bin/sh", "-c", "echo ready; exec sleep 60")
    assert p.stdout.readline() == "ready\n"
    p.kill()
    p.wait()
    p.stdout.close(), p.stderr.close(), p.stdin.close()
    assert _container_cgroups(parent)
    assert mc("run", rootfs, "/bin/true").returncode == 0
    assert not os.path.exists(parent)


def test_release_kills_what_is_still_running_and_tolerates_gone(parent):
    """The releaser on a populated cgroup: cgroup.kill, wait, rmdir; then again: no error."""
    os.makedirs(parent, exist_ok=True)
    path = f"{parent}/release-test"
    os.mkdir(path)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        cgroupfs.join(path)
        os.write(w, b"x")
        os.execv("/bin/sleep", ["sleep", "60"])
    os.close(w)
    os.read(r, 1)
    os.close(r)
    reaped = []
    import threading

    threading.Thread(target=lambda: reaped.append(os.waitpid(pid, 0)), daemon=True).start()
    cgroups.release(path)
    assert not os.path.exists(path)
    time.sleep(0.1)
    assert reaped and os.waitstatus_to_exitcode(reaped[0][1]) == -9
    cgroups.release(path)  # already gone: fine


LIMIT_FLAGS = [
    (["--memory", "64m"], "memory"),
    (["--memory", "64m", "--memory-swap", "128m"], "memory"),
    (["--memory-reservation", "32m"], "memory"),
    (["--cpus", "0.5"], "cpu"),
    (["--cpu-shares", "512"], "cpu"),
    (["--cpuset-cpus", "0"], "cpuset"),
    (["--pids-limit", "20"], "pids"),
    (["--io-weight", "200"], "io"),
]


@pytest.mark.parametrize("flags,controller", LIMIT_FLAGS, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_limits_refused_before_start_where_v2_lacks_the_controller(mc, rootfs, state_root, parent, flags, controller):
    """On this hybrid host no v2 controller exists, so every limit must be refused with the
    reason and the way out; on a host whose v2 has the controller, the same run works."""
    r = mc("run", *flags, rootfs, "/bin/echo", "ran")
    if controller in CONTROLLERS:
        assert r.returncode == 0 and r.stdout == "ran\n", r.stderr
        return
    assert r.returncode == 125 and r.stdout == ""
    message = r.stderr.strip()
    assert message.count("\n") == 0, message
    assert message.startswith(f"minicontainer: cannot apply {flags[0]}")
    assert f"no {controller} controller" in message
    if controller in V1 or {"io": "blkio"}.get(controller) in V1:
        assert "hybrid cgroup v1/v2 host" in message and "held by cgroup v1" in message
    assert "systemd.unified_cgroup_hierarchy=1" in message and "run without these flags" in message
    # Nothing started: no state, no cgroup.
    assert not os.listdir(os.path.join(state_root, "containers"))
    assert not os.path.exists(parent)


@pytest.mark.parametrize("flags,words", [
    (["--memory", "lots"], "invalid size 'lots' for --memory"),
    (["--memory", "1m"], "too small: the minimum is 6m"),
    (["--memory", "-5m"], "invalid size"),
    (["--memory-swap", "1g"], "--memory-swap needs --memory"),
    (["-m", "64m", "--memory-swap", "32m"], "less than --memory"),
    (["-m", "64m", "--memory-reservation", "128m"], "must not be more than --memory"),
    (["--cpus", "0"], "the range is 0.01 to"),
    (["--cpus", "1000"], "the range is 0.01 to"),
    (["--cpus", "half"], "want a number of CPUs"),
    (["--cpu-shares", "1"], "must be from 2 to 262144"),
    (["--cpuset-cpus", "0-999"], "do not exist here"),
    (["--cpuset-cpus", "1-0"], "want a list like 0-2,4"),
    (["--pids-limit", "many"], "want a whole number"),
    (["--io-weight", "0"], "must be from 1 to 10000"),
    (["--device-write-bps", "/dev/null:1m"], "/dev/null is not a block device"),
    (["--device-read-bps", "/dev/nonexistent:1m"], "No such file or directory"),
    (["--device-read-bps", "1m"], "want DEVICE-PATH:RATE"),
])
def test_nonsense_values_rejected_before_anything_starts(mc, rootfs, state_root, parent, flags, words):
    r = mc("run", *flags, rootfs, "/bin/echo", "ran")
    assert r.returncode == 125 and r.stdout == ""
    assert words in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not os.path.isdir(os.path.join(state_root, "containers")) or \
        not os.listdir(os.path.join(state_root, "containers"))


def test_stats_says_what_this_host_cannot_account(mc, rootfs, parent):
    r = mc("run", "--stats", rootfs, "/bin/sh", "-c", "echo ran")
    assert r.returncode == 0 and r.stdout == "ran\n"
    lines = r.stderr.splitlines()
    assert lines[0] == "minicontainer: stats:"
    assert any("cpu time        user" in line for line in lines), r.stderr
    for what, controller in (("memory peak", "memory"), ("cpu throttled", "cpu"),
                             ("pids peak", "pids")):
        (line,) = [line for line in lines if what in line]
        assert ("n/a" in line) == (controller not in CONTROLLERS), line


def test_limit_translation_matches_docker():
    r = Resources(memory=64 << 20, memory_reservation=32 << 20, cpus=1.5, cpu_shares=512,
                  cpuset_cpus="0-1", pids_limit=50, io_weight=300,
                  device_read_bps=[("/dev/vda", "254:0", 1 << 20)],
                  device_write_bps=[("/dev/vda", "254:0", 2 << 20), ("/dev/vdb", "254:16", 4096)])
    assert {k: v for k, v in cgroups.settings(r) if k != "io.max"} == {
        "memory.max": str(64 << 20),
        "memory.oom.group": "1",
        "memory.swap.max": str(64 << 20),  # docker: unset --memory-swap means swap = memory
        "memory.low": str(32 << 20),
        "cpu.max": "150000 100000",
        "cpu.weight": str(cgroups.shares_to_weight(512)),
        "cpuset.cpus": "0-1",
        "pids.max": "50",
        "io.weight": "default 300",
    }
    io = [v for k, v in cgroups.settings(r) if k == "io.max"]
    assert io == [f"254:0 rbps={1 << 20} wbps={2 << 20}", "254:16 wbps=4096"]
    swap = dict(cgroups.settings(Resources(memory=100, memory_swap=300)))
    assert swap["memory.swap.max"] == "200"  # memory+swap total, minus memory
    assert dict(cgroups.settings(Resources(memory=100, memory_swap=-1)))["memory.swap.max"] == "max"
    assert "memory.swap.max" not in dict(cgroups.settings(Resources(memory=100), swap_accounting=False))


def test_cpu_shares_to_weight_is_cruns_conversion():
    # crun's mapping keeps the defaults aligned and spans both ranges end to end.
    assert [cgroups.shares_to_weight(s) for s in (2, 1024, 262144)] == [1, 100, 10000]
    assert cgroups.shares_to_weight(512) < 100 < cgroups.shares_to_weight(2048)


def test_sizes_like_dockers():
    from minicontainer.cli.resources import parse_size

    assert parse_size("-m", "6m") == 6 << 20
    assert parse_size("-m", "1.5g") == 3 << 29
    assert parse_size("-m", "64KiB") == 64 << 10
    assert parse_size("-m", "10mb") == 10 << 20
    assert parse_size("-m", "4096") == 4096


def test_concurrent_containers_share_and_remove_the_parent(mc, rootfs, parent):
    """Containers of one state root start and end at once: each removes the parent when it
    thinks it is the last, and a container being created re-makes it (no ENOENT, no leak)."""
    import threading

    codes = []

    def run():
        for _ in range(4):
            codes.append(mc("run", rootfs, "/bin/true").returncode)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [0] * 16
    assert not os.path.exists(parent)
