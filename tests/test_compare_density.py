"""`minicontainer compare --density N`: N containers and N VMs alive at once, at N = 1, N/2, N.
A real run with N=2 (three rounds of VMs under TCG: well under the two-minute budget), the
memory check's refusal, and clean-up on Ctrl-C. Nothing may be left: no instance of the
wrapped command, no state directory."""
from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import PYTHON, REPO
from minicontainer.vm import density
from minicontainer.testing import guest_lane

pytestmark = pytest.mark.skipif(
    subprocess.run(["which", "qemu-system-x86_64"], capture_output=True).returncode != 0,
    reason="qemu-system-x86_64 is not installed")


def instances() -> list[int]:
    """Processes running the density wrapper (`run`, `vm run`, the containers' and QEMU)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if density.UP in f.read():
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


def comm(pid) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read()
    except OSError:
        return ""


def compare(*args, tmp_path, **kwargs):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    return subprocess.Popen([PYTHON, "-m", "minicontainer", "compare", *args], cwd=REPO, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def test_plan_measures_at_one_half_and_n():
    assert density.plan(10) == [1, 5, 10]
    assert density.plan(2) == [1, 2]
    assert density.plan(1) == [1]


def test_density_two_reports_each_round_and_cleans_up(rootfs, tmp_path):
    before = set(glob.glob("/run/minicontainer-compare-*"))
    out, svg = tmp_path / "d.json", tmp_path / "d.svg"
    p = compare("--density", "2", "--json", str(out), "--plot", str(svg), rootfs, "--", "sleep", "600",
                tmp_path=tmp_path)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 0, stderr
    report = json.loads(out.read_text())
    assert [r["n"] for r in report["rounds"]] == [1, 2]
    for r in report["rounds"]:
        c, v = r["container"], r["vm"]
        assert len(c["instances"]) == len(v["instances"]) == r["n"]
        for kind in (c, v):
            assert kind["all_up_s"] > 0 and kind["total_pss_kib"] > 0 and kind["total_rss_kib"] > 0
            assert all(i["runtime_pss_kib"] > 0 and i["workload_pss_kib"] > 0 for i in kind["instances"])
        assert v["workload_pss_kib"] > 50 * 1024           # QEMU and its guest's memory
        assert v["per_instance_pss_kib"] > 5 * c["per_instance_pss_kib"]
        assert v["all_up_s"] > c["all_up_s"]               # a kernel boots; a process starts
    assert "N=1" in stdout and "N=2" in stdout and "runtime + qemu" in stdout
    text = svg.read_text()
    assert text.startswith("<svg") and text.count("<polyline") == 4
    assert instances() == []
    assert set(glob.glob("/run/minicontainer-compare-*")) == before


def test_density_refuses_what_does_not_fit_in_one_line(rootfs, tmp_path):
    p = compare("--density", "100000", rootfs, "--", "sleep", "600", tmp_path=tmp_path)
    stdout, stderr = p.communicate(timeout=30)
    assert p.returncode == 125 and stdout == ""
    assert re.fullmatch(r"minicontainer: compare --density 100000: 100000 VMs and 100000 containers "
                        r"need about \d+ MiB \(.*\) and \d+ MiB is available: at most \d+ here\n", stderr)


def test_density_ctrl_c_stops_everything(rootfs, tmp_path):
    before = set(glob.glob("/run/minicontainer-compare-*"))
    p = compare("--density", "1", rootfs, "--", "sleep", "600", tmp_path=tmp_path)
    deadline = time.monotonic() + 90
    qemus = []
    while not qemus:  # wait until the VM is starting: the container is up by then
        assert time.monotonic() < deadline and p.poll() is None, p.stderr.read() if p.poll() else ""
        time.sleep(0.1)
        qemus = [pid for pid in density._descendants(p.pid, density._children_map())
                 if comm(pid).startswith("qemu")]
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=60)
    assert p.returncode == 130
    assert instances() == []
    assert not [pid for pid in qemus if os.path.exists(f"/proc/{pid}")]
    assert set(glob.glob("/run/minicontainer-compare-*")) == before


# The cgroup half (memory.current of a container's cgroup) needs cgroup v2 with a memory
# controller: tests/guest/density_cgroup.py, in the guest lane (one boot per session).
GUEST_TESTS = guest_lane.collect(["tests/guest/density_cgroup.py"])


@pytest.fixture(scope="session")
def guest():
    return guest_lane.session_run()


@pytest.mark.parametrize("nodeid", GUEST_TESTS, ids=lambda n: n.split("::", 1)[1])
def test_density_cgroup_memory_in_the_guest_lane(guest, nodeid):
    guest.check(nodeid)
