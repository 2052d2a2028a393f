"""Shared test fixtures: how to call minicontainer, and the check that nothing is left behind.

Two tiers (CONTRIBUTING.md):
    unit    tests/unit/: pure code and syscall sequences through the recorder (kernel/
            syscalls.py), no root, no container; every test there is marked `unit` here
    root    everything else: real containers, as root. Without root they are skipped.

Each pytest session gets its own state root (so parallel sessions and helpers never see each
other's containers), and after every root test the autouse `nothing_left_behind` fixture
fails the test if any container state, mount, process or cgroup of that session remains.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOTFS = os.path.join(REPO, "rootfs")
PYTHON = sys.executable  # the venv's interpreter, which runs pytest too
UNIT_DIR = os.path.join(REPO, "tests", "unit")
IS_ROOT = os.geteuid() == 0


@pytest.hookimpl(tryfirst=True)  # before `-m unit` selects by marker
def pytest_collection_modifyitems(config, items):
    needs_root = pytest.mark.skip(reason="starts real containers: needs root (./test.sh); "
                                  "without root, run the unit tier: pytest -m unit")
    for item in items:
        if str(item.path).startswith(UNIT_DIR + os.sep):
            item.add_marker(pytest.mark.unit)
        elif not IS_ROOT and not item.get_closest_marker("unit"):
            item.add_marker(needs_root)


@pytest.fixture(scope="session")
def state_root():
    root = tempfile.mkdtemp(prefix="minicontainer-test-", dir="/run")
    yield root
    subprocess.run(["rm", "-rf", root], check=False)


@pytest.fixture(scope="session")
def rootfs() -> str:
    if not os.path.isfile(os.path.join(ROOTFS, "bin", "busybox")):
        pytest.fail("rootfs/ is not built: run ./install.sh (or tools/build-rootfs.sh)")
    return ROOTFS


@pytest.fixture(scope="session")
def mc_cmd(state_root) -> list[str]:
    """The command prefix that runs this checkout's minicontainer with the session's root."""
    return [PYTHON, "-m", "minicontainer", "--root", state_root]


@pytest.fixture
def mc(mc_cmd):
    """mc("run", ROOTFS, "echo", "hi") -> CompletedProcess with text stdout/stderr."""

    def call(*args, timeout=60, **kwargs):
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run([*mc_cmd, *args], timeout=timeout, **kwargs)

    return call


def container_processes(state_root: str) -> list[int]:
    """Pids of this session's container processes, seen from the host: processes in another
    mount namespace whose mounts name the session's state root (the overlay's upperdir)."""
    found = []
    own_mnt = os.readlink("/proc/self/ns/mnt")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/mnt") == own_mnt:
                continue
            with open(f"/proc/{entry}/mountinfo") as f:
                if state_root in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def leftovers(state_root: str) -> list[str]:
    problems = []
    for sub in ("containers", "names"):
        d = os.path.join(state_root, sub)
        if os.path.isdir(d) and os.listdir(d):
            problems.append(f"{sub}: {os.listdir(d)}")
    with open("/proc/self/mountinfo") as f:
        mounts = [line.strip() for line in f if state_root in line]
    if mounts:
        problems.append(f"mounts: {mounts}")
    procs = container_processes(state_root)
    if procs:
        problems.append(f"processes: {procs}")
    cgroups = session_cgroups(state_root)
    if cgroups:
        problems.append(f"cgroups: {cgroups}")
    return problems


def session_cgroups(state_root: str) -> list[str]:
    """This session's cgroup v2 parent and the container cgroups under it, if any remain."""
    from minicontainer.kernel.cgroupfs import mounts
    from minicontainer.runtime.cgroups import parent_name

    v2 = mounts()[0]
    parent = f"{v2}/{parent_name(state_root)}"
    if v2 is None or not os.path.isdir(parent):
        return []
    return [parent] + [e.path for e in os.scandir(parent) if e.is_dir()]


@pytest.fixture(autouse=True)
def nothing_left_behind(request):
    if request.node.get_closest_marker("unit") or not IS_ROOT:
        yield  # a unit test starts nothing: there is nothing to look for
        return
    state_root = request.getfixturevalue("state_root")
    yield
    # A container's processes and directories go away as its runtime returns; allow the
    # kernel a moment to finish tearing down a namespace a test killed from outside.
    deadline = time.monotonic() + 5
    problems = leftovers(state_root)
    while problems and time.monotonic() < deadline:
        time.sleep(0.05)
        problems = leftovers(state_root)
    if problems:
        # Clean up so that one failure does not cascade into every later test.
        for pid in container_processes(state_root):
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        from minicontainer.runtime.cgroups import release

        for cgroup in reversed(session_cgroups(state_root)[1:]):
            release(cgroup)  # cgroup.kill, rmdir, and the parent after the last one
        subprocess.run(["rm", "-rf", os.path.join(state_root, "containers"),
                        os.path.join(state_root, "names")], check=False)
        pytest.fail(f"left behind after {request.node.name}: {'; '.join(problems)}")
