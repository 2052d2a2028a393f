"""cgroup v2 limits, proven on a real cgroup v2 kernel: these run inside the QEMU guest of the
guest lane (minicontainer/testing/guest_lane.py), where cgroup2 is mounted with every
controller, and report back through tests/test_cgroups_guest.py as host test results.

Run only there: the host has no v2 controllers (the host's own tests check the refusal).
Timings are generous: the guest is emulated (TCG), several times slower than the host.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time

from conftest import session_cgroups

MiB = 1 << 20
SLOW = 180  # seconds for one container run under TCG, worst case


def _cgroup_of_running(state_root, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = session_cgroups(state_root)[1:]
        if found and cgroup_procs(found[0]):
            return found[0]
        time.sleep(0.05)
    raise AssertionError("no running container cgroup appeared")


def cgroup_procs(path):
    try:
        with open(f"{path}/cgroup.procs") as f:
            return f.read().split()
    except OSError:
        return []


def keyed(path):
    with open(path) as f:
        return {k: int(v) for k, v in (line.split() for line in f)}


def stats(stderr):
    """The --stats block as {label: text}."""
    out = {}
    for line in stderr.splitlines():
        m = re.match(r"minicontainer:   (\w[\w ]*?)\s{2,}(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def seconds(text, key):
    return float(re.search(rf"{key} ([\d.]+) s", text).group(1))


def _start(mc_cmd, *args):
    return subprocess.Popen([*mc_cmd, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


# --- memory ---------------------------------------------------------------------------------

def test_memory_max_oom_kills_at_the_limit_and_says_so(mc, rootfs):
    # dd's buffer is bs bytes, all touched by reading /dev/zero into it.
    r = mc("run", "--memory", "32m", "--stats", rootfs,
           "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1", timeout=SLOW)
    assert r.returncode == 137, r.stderr
    assert "minicontainer: container killed for memory" in r.stderr
    assert "at its limit memory.max=32 MiB" in r.stderr and "oom 1," in r.stderr, r.stderr
    peak = stats(r.stderr)["memory peak"]
    value, unit = peak.split()
    assert unit == "MiB" and 24 <= float(value) <= 32, peak  # it reached the limit, not beyond
    print("figures: -m 32m, dd bs=64M:", r.stderr.splitlines()[0], "| peak", peak)
    # The same command under a larger limit runs to the end: it was the limit that killed it.
    r = mc("run", "--memory", "96m", rootfs,
           "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1", timeout=SLOW)
    assert r.returncode == 0 and "killed for memory" not in r.stderr, r.stderr


def test_memory_settings_seen_from_inside(mc, rootfs):
    """The container sees its own cgroup as /sys/fs/cgroup (read-only) with docker's values."""
    r = mc("run", "-m", "64m", "--memory-swap", "96m", "--memory-reservation", "16m",
           "--cpu-shares", "512", "--pids-limit", "77", "--io-weight", "300", rootfs,
           "sh", "-c", "cd /sys/fs/cgroup; cat memory.max memory.swap.max memory.low "
           "memory.oom.group cpu.weight pids.max io.weight; grep '^0::' /proc/self/cgroup; "
           "echo 1 > pids.max || echo read-only", timeout=SLOW)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:9] == [str(64 * MiB), str(32 * MiB), str(16 * MiB), "1", "59", "77",
                         "default 300", "0::/", "read-only"], r.stdout + r.stderr


# --- pids -----------------------------------------------------------------------------------

def test_pids_max_stops_a_fork_bomb_and_the_host_stays_responsive(mc_cmd, rootfs, state_root):
    p = _start(mc_cmd, "run", "--init", "--pids-limit", "24", rootfs, "sh", "-c",
               # the bomb's processes exit as soon as they have forked: the loop keeps PID 1 up
               "echo started; bomb() { bomb | bomb & }; bomb 2>/dev/null; "
               "while :; do sleep 1 2>/dev/null; done")
    try:
        assert p.stdout.readline() == "started\n"
        cgroup = _cgroup_of_running(state_root)
        # The bomb runs in waves (each process exits once it has forked): wait until one
        # has hit the limit and had forks refused.
        deadline = time.monotonic() + 60
        while keyed(f"{cgroup}/pids.events")["max"] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert keyed(f"{cgroup}/pids.events")["max"] > 0  # forks are being refused
        # The (guest) host stays responsive: new processes still start outside it, promptly
        # (0.4-0.5 s for five under TCG; the bound only allows for a loaded machine).
        began = time.monotonic()
        for _ in range(5):
            subprocess.run(["/bin/true"], check=True, timeout=30)
        responsive = time.monotonic() - began
        assert responsive < 30
        with open(f"{cgroup}/pids.current") as f:
            assert int(f.read()) <= 24
        with open(f"{cgroup}/pids.peak") as f:
            assert int(f.read()) == 24  # it hit the limit, never more
        p.send_signal(signal.SIGTERM)  # --init passes it on; PID 1's exit ends the rest
        p.wait(timeout=SLOW)
        err = p.stderr.read()
        assert re.search(r"pids\.max=24 refused \d+ fork", err), err
        print(f"figures: fork bomb at --pids-limit 24: {err.strip()}; "
              f"5 x /bin/true outside took {responsive:.2f} s")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close(), p.stderr.close()


# --- cpu ------------------------------------------------------------------------------------

BUSY = ["sh", "-c", "timeout 4 sh -c 'while :; do :; done'; true"]


def test_cpu_max_throttles_a_busy_loop_to_its_quota(mc, rootfs):
    r = mc("run", "--cpus", "0.5", "--stats", rootfs, *BUSY, timeout=SLOW)
    assert r.returncode == 0, r.stderr
    s = stats(r.stderr)
    used = seconds(s["cpu time"], "user") + seconds(s["cpu time"], "system")
    throttled, periods = map(int, re.match(r"(\d+) of (\d+) periods", s["cpu throttled"]).groups())
    # 4 s of wall time at 0.5 CPU: 2 s of CPU, within 20%; throttled in most periods.
    assert 1.6 <= used <= 2.4, r.stderr
    assert periods >= 30 and throttled >= 0.7 * periods, r.stderr
    print(f"figures: --cpus 0.5, 4 s busy loop: cpu {used:.3f} s, throttled {throttled} of "
          f"{periods} periods ({s['cpu throttled']})")
    # Without the limit the same loop takes a whole CPU: the limit did the throttling.
    r = mc("run", "--stats", rootfs, *BUSY, timeout=SLOW)
    s = stats(r.stderr)
    free = seconds(s["cpu time"], "user") + seconds(s["cpu time"], "system")
    assert free >= 3.2, r.stderr
    print(f"figures: unlimited, same loop: cpu {free:.3f} s")


def test_cpuset_cpus_pins(mc, rootfs):
    for cpus in ("1", "0"):
        r = mc("run", "--cpuset-cpus", cpus, rootfs, "sh", "-c",
               "grep Cpus_allowed_list /proc/self/status; cat /sys/fs/cgroup/cpuset.cpus.effective",
               timeout=SLOW)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["Cpus_allowed_list:", cpus, cpus], r.stdout


# --- io -------------------------------------------------------------------------------------

DISK = "/dev/vda"  # the lane's scratch disk
WRITE = f"dd if=/dev/zero of={DISK} bs=256k count=12 oflag=direct"  # 3 MiB, no page cache
READ = f"dd if={DISK} of=/dev/null bs=256k count=12 iflag=direct"


def _dd_rate(mc, rootfs, *flags, dd):
    """MiB/s of one dd inside a container, timed inside it (busybox's dd prints no time)."""
    script = f"read a b < /proc/uptime; {dd} 2>/dev/null; read c d < /proc/uptime; echo $a $c"
    r = mc("run", "--device", DISK, *flags, rootfs, "sh", "-c", script, timeout=SLOW)
    assert r.returncode == 0, r.stderr
    start, end = map(float, r.stdout.split())
    return 3 / max(end - start, 0.01)


def test_io_max_holds_writes_and_reads_near_the_limit(mc, rootfs):
    assert os.path.exists(DISK), "the guest lane attaches a scratch virtio disk"
    write = _dd_rate(mc, rootfs, "--device-write-bps", f"{DISK}:1m", dd=WRITE)
    assert 0.75 <= write <= 1.2, write  # MiB/s, against a limit of 1 MiB/s
    read = _dd_rate(mc, rootfs, "--device-read-bps", f"{DISK}:2m", dd=READ)
    assert 1.5 <= read <= 2.4, read
    # Unlimited, the same write is much faster: the limit is what held it.
    free = _dd_rate(mc, rootfs, dd=WRITE)
    assert free > 3
    print(f"figures: O_DIRECT 3 MiB to /dev/vda: write at 1m {write:.2f} MiB/s, read at 2m "
          f"{read:.2f} MiB/s, unlimited write {free:.1f} MiB/s")


# --- two at once ----------------------------------------------------------------------------

def test_two_containers_limits_do_not_interfere(mc, rootfs):
    results = {}

    def run(name, limit, alloc):
        results[name] = mc("run", "--memory", limit, "--cpus", "0.5", rootfs, "dd",
                           "if=/dev/zero", "of=/dev/null", f"bs={alloc}", "count=1", timeout=SLOW)

    small = threading.Thread(target=run, args=("small", "24m", "48M"))
    big = threading.Thread(target=run, args=("big", "96m", "48M"))
    small.start(), big.start()
    small.join(), big.join()
    small, big = results["small"], results["big"]
    why = f"small: {small.returncode} {small.stderr!r}; big: {big.returncode} {big.stderr!r}"
    assert small.returncode == 137 and "killed for memory" in small.stderr, why
    assert big.returncode == 0 and "killed for memory" not in big.stderr, why


# --- cleanup --------------------------------------------------------------------------------

def test_no_cgroup_after_exit_or_oom(mc, rootfs, state_root):
    assert mc("run", "-m", "64m", rootfs, "true", timeout=SLOW).returncode == 0
    assert session_cgroups(state_root) == []
    r = mc("run", "-m", "16m", rootfs, "dd", "if=/dev/zero", "of=/dev/null", "bs=64M",
           "count=1", timeout=SLOW)
    assert r.returncode == 137
    assert session_cgroups(state_root) == []


def test_runtime_sigkilled_then_gc_or_next_run_reclaims(mc_cmd, mc, rootfs, state_root):
    for reclaim in ("gc", "next run"):
        p = _start(mc_cmd, "run", "-m", "64m", "--pids-limit", "50", rootfs, "sh", "-c",
                   "echo started; sleep 600")
        assert p.stdout.readline() == "started\n"
        cgroup = _cgroup_of_running(state_root)
        p.kill()  # the runtime gets no chance to clean up
        p.wait()
        p.stdout.close(), p.stderr.close()
        assert os.path.isdir(cgroup)  # left for gc: the record in the state store says so
        if reclaim == "gc":
            r = mc("gc", timeout=SLOW)
            assert r.returncode == 0 and r.stdout.startswith("removed "), r.stderr
        else:
            assert mc("run", rootfs, "true", timeout=SLOW).returncode == 0
        assert not os.path.exists(cgroup)
        assert session_cgroups(state_root) == []


def test_stats_summary(mc, rootfs):
    r = mc("run", "--stats", rootfs, "sh", "-c", "sleep 1 & sleep 1 & wait", timeout=SLOW)
    assert r.returncode == 0
    s = stats(r.stderr)
    assert set(s) == {"memory peak", "cpu time", "cpu throttled", "pids peak"}, r.stderr
    assert not any("n/a" in v for v in s.values()), r.stderr
    assert int(s["pids peak"]) >= 3
    assert s["cpu throttled"].startswith("0 of"), s  # no --cpus: never throttled
