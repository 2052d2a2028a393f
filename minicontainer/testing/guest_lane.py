"""The guest test lane: run pytest files inside a QEMU guest that boots a clean kernel (Debian's,
under TCG on our machines), and bring the results back as ordinary host test results.

Why: our hosts' cgroups are hybrid (no v2 controllers), so cgroup v2 limits can only be proven
in a guest; later issues that need another clean kernel reuse the same lane.

    files in tests/guest/*.py      guest tests (not named test_*, so the host never collects
                                   them by itself); they use tests/conftest.py as usual
    collect(paths)  -> [nodeid]    collected on the host (pytest --collect-only), to
                                   parametrize one host test per guest test
    session_run()   -> LaneRun     boots once per process, runs every guest file, memoized
    LaneRun.check(nodeid)          a host test passes or fails as the guest test did; a guest
                                   test that skipped, or never reported, is a failure

The guest (built with minicontainer.vm: kernel fetch, accel detection, initramfs, qemu argv):
    /           the initramfs: busybox + 9p/overlay/virtio modules + HOOK below
    /hostroot   the host's / over 9p, read-only (the project's own .venv runs from it)
      /tmp /run tmpfs (state roots and overlay upper dirs: overlayfs refuses 9p as upper),
                  with the checkout bound back on top if it lives under one of them
      /sys/fs/cgroup  cgroup2, every controller, nothing enabled yet (the code under test
                  enables what it needs through cgroup.subtree_control)
      /dev/vda  a scratch virtio disk (raw, sparse, in the lane's temp dir): io.max tests
      /run/lane-out   a writable 9p share with the host's temp dir: the run script in,
                  the JSON report (lane_report.py) and nothing else out
pytest runs in `chroot /hostroot`, from the repository, with the venv's interpreter.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LANE_DIR = os.path.join(REPO, "tests", "guest")
GUEST_OUT = "/run/lane-out"  # where the host's temp dir appears inside the chroot

MEMORY_MIB = 1536
CPUS = 2          # --cpuset-cpus tests need two
DISK_MIB = 256
TIMEOUT = 420.0   # the whole boot; the lane's budget is 8 minutes

MODULES = {"virtio": ["virtio_mmio", "virtio_blk"],
           "lane": ["9pnet_virtio", "9p", "overlay"]}

# Sourced by the initramfs' init (vm/initramfs.py) before it runs the command.
HOOK = r"""
B=/.minicontainer/busybox
R=/hostroot
$B mkdir -p $R
opts=trans=virtio,version=9p2000.L,msize=512000,cache=loose
$B mount -t 9p -o ro,$opts hostroot $R || echo "lane: cannot mount the host's root (9p)"
$B mkdir -p /lane-out /lane-repo
$B mount -t 9p -o $opts laneout /lane-out || echo "lane: cannot mount the output share"
# The checkout may itself live under /tmp or /run (CI clones anywhere): keep it reachable
# through the tmpfs mounted over those below.
repo=$($B cat /lane-out/repo)
$B mount --bind "$R$repo" /lane-repo
$B mount -t tmpfs -o mode=1777 tmpfs $R/tmp
$B mount -t tmpfs -o mode=755 tmpfs $R/run
$B mkdir -p "$R$repo" $R/run/lane-out
$B mount --bind /lane-repo "$R$repo"
$B mount --bind /lane-out $R/run/lane-out
$B mount -t proc proc $R/proc
$B mount -t sysfs sysfs $R/sys
$B mount -t cgroup2 cgroup2 $R/sys/fs/cgroup || echo "lane: cannot mount cgroup2"
$B mount -t devtmpfs devtmpfs $R/dev
$B mkdir -p $R/dev/pts $R/dev/shm
$B mount -t devpts -o newinstance,ptmxmode=0666 devpts $R/dev/pts
$B mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm
"""

# Run in the chroot (it is the command the init runs): the report and the pytest exit status.
RUN_SCRIPT = """\
cd {repo}
export PYTHONDONTWRITEBYTECODE=1 MINICONTAINER_GUEST_LANE=1 \\
       MINICONTAINER_LANE_REPORT={out}/report.json PYTHONUNBUFFERED=1
echo "lane: kernel $(uname -r), cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
exec {python} -m pytest -q -p no:cacheprovider -p minicontainer.testing.lane_report \\
    -o python_files="*.py" -o console_output_style=classic --color=no {args}
"""


def guest_files() -> list[str]:
    return sorted(os.path.join("tests", "guest", n) for n in os.listdir(LANE_DIR)
                  if n.endswith(".py") and not n.startswith(("_", "conftest")))


def collect(paths) -> list[str]:
    """The node ids pytest collects from PATHS (guest test files), collected on the host."""
    r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                        "-p", "no:cacheprovider", "-o", "python_files=*.py", *paths],
                       cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "MINICONTAINER_GUEST_LANE": "collect"})
    ids = [line for line in r.stdout.splitlines() if "::" in line and not line.startswith(" ")]
    if r.returncode != 0 or not ids:
        raise RuntimeError(f"cannot collect guest tests {paths}:\n{r.stdout}\n{r.stderr}")
    return ids


class LaneRun:
    """What one boot reported: results per nodeid, the console log, and how the boot went."""

    def __init__(self, report: dict | None, console: str, error: str | None, wall_s: float):
        self.report = report or {}
        self.results = self.report.get("results", {})
        self.console = console
        self.error = error
        self.wall_s = wall_s

    def check(self, nodeid: str) -> None:
        import pytest

        result = self.results.get(nodeid)
        if result is None:
            why = self.error or "the guest's pytest never reported it"
            pytest.fail(f"{nodeid}: no result from the guest ({why}).\n"
                        f"--- guest console (last 3000 chars) ---\n{self.console[-3000:]}",
                        pytrace=False)
        if result["outcome"] == "passed":
            return
        if result["output"]:
            sys.stdout.write(result["output"])
        verb = "skipped in the guest (a skip is a failure here)" \
            if result["outcome"] == "skipped" else f"failed in the guest ({result['when']})"
        pytest.fail(f"{nodeid} {verb}:\n{result['longrepr']}", pytrace=False)


_session: LaneRun | None = None


def session_run() -> LaneRun:
    """One boot per process for every file in tests/guest, whichever host test asks first."""
    global _session
    if _session is None:
        try:
            _session = run_pytest(guest_files())
        except Exception as e:  # no kernel, no QEMU...: every guest test fails with this
            _session = LaneRun(None, "", f"the guest lane could not start: {e}", 0.0)
    return _session


def run_pytest(paths, *, timeout: float = TIMEOUT, memory_mib: int = MEMORY_MIB,
               cpus: int = CPUS, disk_mib: int = DISK_MIB) -> LaneRun:
    """Boot the guest once, run pytest on PATHS (relative to the repository) in it, return
    what it reported. Everything it makes (temp dir, disk image) is removed before it
    returns, and QEMU is killed if anything goes wrong (vm.qemu.boot)."""
    from minicontainer.errors import ContainerError
    from minicontainer.vm import accel, initramfs, kernel as kernels, qemu

    start = time.monotonic()
    work = tempfile.mkdtemp(prefix="minicontainer-lane-")
    console_path = os.path.join(work, "console.log")
    error = None
    try:
        out = os.path.join(work, "out")
        os.mkdir(out)
        python = os.path.join(REPO, ".venv", "bin", "python")
        with open(os.path.join(out, "repo"), "w") as f:  # read by HOOK
            f.write(REPO)
        with open(os.path.join(out, "run.sh"), "w") as f:
            f.write(RUN_SCRIPT.format(repo=REPO, out=GUEST_OUT, python=python,
                                      args=" ".join(paths)))
        disk = os.path.join(work, "scratch.img")
        with open(disk, "wb") as f:
            f.truncate(disk_mib << 20)  # sparse: costs nothing until written

        kernel = kernels.guest_kernel()
        image = kernels.vmlinux_of(kernel) or kernel.image
        # The guest needs no rootfs of its own: a stable empty one, so the packed initramfs
        # is found in vm's cache next time.
        empty = os.path.join(kernels.cache_dir(), "lane-initroot")
        os.makedirs(empty, exist_ok=True)
        initrd = initramfs.build_initramfs(empty, kernel, modules=MODULES,
                                           extra_files=[(".minicontainer/hooks/lane.sh",
                                                         HOOK.encode(), 0o644)])
        acc = accel.detect_accel(kernel=image).name
        cmdline = qemu.guest_cmdline(
            ["/.minicontainer/busybox", "chroot", "/hostroot", "/bin/sh", f"{GUEST_OUT}/run.sh"],
            devices="virtio", accel=acc, modules=list(MODULES))
        argv = qemu.qemu_argv(image, initrd, cmdline, accel=acc, devices="virtio",
                              memory_mib=memory_mib, cpus=cpus, disk=disk, extra=[
                                  "-fsdev", "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap",
                                  "-device", "virtio-9p-device,fsdev=root,mount_tag=hostroot",
                                  "-fsdev", f"local,id=out,path={out},security_model=none",
                                  "-device", "virtio-9p-device,fsdev=out,mount_tag=laneout"])
        with open(console_path, "w") as console:
            try:
                qemu.boot(argv, out=console, timeout=timeout)
            except ContainerError as e:
                error = str(e)
        report = None
        try:
            with open(os.path.join(out, "report.json")) as f:
                report = json.load(f)
        except (OSError, ValueError) as e:
            error = error or f"no report from the guest: {e}"
        if report is not None and not report.get("done"):
            error = error or "the guest's pytest did not finish"
        with open(console_path, errors="replace") as f:
            text = f.read()
        return LaneRun(report, text, error, time.monotonic() - start)
    finally:
        shutil.rmtree(work, ignore_errors=True)
