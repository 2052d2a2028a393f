"""`minicontainer compare`: one real run of every variant, and its JSON checked field by field."""
from __future__ import annotations

import glob
import json
import os
import subprocess

import pytest

from conftest import PYTHON, REPO

pytestmark = pytest.mark.skipif(
    subprocess.run(["which", "qemu-system-x86_64"], capture_output=True).returncode != 0,
    reason="qemu-system-x86_64 is not installed")

VARIANT_FIELDS = {"name", "kind", "devices", "accel", "wall_median_s", "wall_min_s", "wall_max_s",
                  "cpu_median_s", "host_peak_rss_median_kib", "runtime_maxrss_median_kib",
                  "workload_maxrss_median_kib", "guest_used_median_kib", "kernel_seen",
                  "disk_footprint_bytes", "disk_footprint_what", "io", "runs"}
RUN_FIELDS = {"wall_s", "cpu_s", "exit_status", "runtime_maxrss_kib", "workload_maxrss_kib",
              "guest_used_kib"}


def compare(*args, tmp_path, timeout=300):
    private = tmp_path / "tmp"
    private.mkdir(exist_ok=True)
    return subprocess.run([PYTHON, "-m", "minicontainer", "compare", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, stdin=subprocess.DEVNULL,
                          env=dict(os.environ, TMPDIR=str(private)))


def test_compare_json_has_every_field_for_every_variant(rootfs, tmp_path):
    before = set(glob.glob("/run/minicontainer-compare-*"))
    out, svg = tmp_path / "c.json", tmp_path / "c.svg"
    r = compare("-n", "1", "--io", "--json", str(out), "--plot", str(svg), rootfs, "--",
                "/bin/true", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    names = [v["name"] for v in report["variants"]]
    assert names[0] == "container" and "vm virtio (TCG)" in names and "vm emulated (TCG)" in names
    for v in report["variants"]:
        assert VARIANT_FIELDS <= set(v), v["name"]
        assert len(v["runs"]) == 1 and RUN_FIELDS <= set(v["runs"][0])
        for key in ("wall_median_s", "cpu_median_s", "host_peak_rss_median_kib", "kernel_seen",
                    "disk_footprint_bytes"):
            assert v[key] is not None, (v["name"], key)
        assert v["io"]["disk_write_s"] is not None and v["io"]["net_download_s"] is not None, v
        if v["kind"] == "vm":
            assert v["guest_used_median_kib"] > 0
            assert v["kernel_seen"] != os.uname().release
            assert v["workload_maxrss_median_kib"] > 50 * 1024  # QEMU is not small
        else:
            assert v["kernel_seen"] == os.uname().release  # one shared kernel
    # the table names every variant and the plot is an SVG
    for n in names:
        assert n in r.stdout
    assert svg.read_text().startswith("<svg")
    # nothing left behind: no state root, no temp files, no qemu
    assert set(glob.glob("/run/minicontainer-compare-*")) == before
    assert os.listdir(tmp_path / "tmp") == []


@pytest.mark.parametrize("args, message", [
    (["--plot", "x.pdf"], ".svg or .png"),
    (["-n", "zero"], "--runs"),
    (["-m", "5k"], "memory"),
])
def test_bad_input_is_one_line(rootfs, tmp_path, args, message):
    r = compare(*args, rootfs, "--", "/bin/true", tmp_path=tmp_path)
    assert r.returncode == 125
    assert len(r.stderr.splitlines()) == 1 and message in r.stderr, r.stderr


def test_command_missing_from_rootfs(rootfs, tmp_path):
    r = compare(rootfs, "--", "nosuchcommand", tmp_path=tmp_path)
    assert r.returncode == 125
    assert r.stderr.splitlines() == [f"minicontainer: nosuchcommand: command not found in rootfs {rootfs}"]
