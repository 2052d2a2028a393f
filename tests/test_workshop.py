"""The workshop (workshop/): every level's solution, and the breakout demo, print exactly what
their README shows under "Check your work" (workshop/check.py extracts the blocks, so README and
test cannot drift); the skeletons are the solutions with the exercises cut out, and compile.

Level 09 (cgroup v2 limits) needs controllers this hybrid host does not have: here it must
refuse in one line, and its README's block is checked inside the QEMU guest lane
(tests/guest/workshop_levels.py; one boot per session shared with test_cgroups_guest.py).
Level 12 boots three small VMs (a few seconds each under TCG).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO
from minicontainer.kernel import cgroupfs
from minicontainer.testing import guest_lane

sys.path.insert(0, os.path.join(REPO, "workshop"))
import check  # noqa: E402
import make_skeletons  # noqa: E402

LEVELS = check.levels()
GUEST_ONLY = {"09-cgroups"}
V2_CONTROLLERS = (lambda v2: v2 is not None and {"memory", "pids"} <= cgroupfs.controllers(v2))(
    cgroupfs.mounts()[0])
CASES = [(level, command, expected) for level in LEVELS for command, expected in check.blocks(level)
         if level not in GUEST_ONLY or V2_CONTROLLERS]


def test_at_least_ten_levels_each_with_its_parts():
    assert len(LEVELS) >= 10
    for level in LEVELS:
        files = os.listdir(os.path.join(check.HERE, level))
        assert {"README.md", "solution.py", "skeleton.py"} <= set(files), level
        assert check.blocks(level), f"{level}: no command under 'Check your work'"
        with open(os.path.join(check.HERE, level, "README.md")) as f:
            readme = f.read()
        assert readme.startswith(f"# Level {level[:2]}: ")
        assert "## The exercise" in readme and "## Look from outside" in readme, level
    with open(os.path.join(check.HERE, "README.md")) as f:
        index = f.read()
    for level in LEVELS:
        assert f"({level}/)" in index, f"workshop/README.md does not link {level}"


@pytest.fixture
def no_workshop_leftovers():
    """What the levels make, they remove: mounts over the rootfs, layers in /run, cgroups,
    and the state of `minicontainer run` (level 11 uses the default state root)."""
    yield
    with open("/proc/self/mountinfo") as f:
        assert not [line for line in f if os.path.join(REPO, "rootfs") in line]
    assert not [d for d in os.listdir("/run") if d.startswith("workshop-")]
    v2 = cgroupfs.mounts()[0]
    if v2:
        assert not [d for d in os.listdir(v2) if d.startswith("workshop-")]


@pytest.mark.parametrize("level,command,expected", CASES,
                         ids=[f"{c[0]}:{c[1].split()[1].split('/')[-1]}" for c in CASES])
def test_check_your_work(level, command, expected, no_workshop_leftovers):
    got = check.run(command, timeout=240)
    assert got == expected, f"$ {command}\nprinted:\n{got}"


@pytest.mark.skipif(V2_CONTROLLERS, reason="this host has cgroup v2 controllers: the level runs above")
def test_cgroup_level_refuses_on_a_hybrid_host_in_one_line():
    done = subprocess.run([sys.executable, "workshop/09-cgroups/solution.py"], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout == ""
    assert re.fullmatch(r"09-cgroups: this host has no cgroup v2 memory and pids controllers "
                        r"\(.*\): run this level in the guest lane \(workshop/09-cgroups/README.md\)\n",
                        done.stderr)


GUEST_TESTS = guest_lane.collect(["tests/guest/workshop_levels.py"])


@pytest.fixture(scope="session")
def guest():
    return guest_lane.session_run()


@pytest.mark.parametrize("nodeid", GUEST_TESTS, ids=lambda n: n.split("::", 1)[1])
def test_guest_only_levels_in_the_guest_lane(guest, nodeid):
    guest.check(nodeid)


@pytest.mark.parametrize("level", LEVELS)
def test_skeleton_is_the_solution_without_the_exercise(level):
    with open(os.path.join(check.HERE, level, "solution.py")) as f:
        solution = f.read()
    with open(os.path.join(check.HERE, level, "skeleton.py")) as f:
        skeleton = f.read()
    assert skeleton == make_skeletons.skeleton(solution), \
        "run: .venv/bin/python workshop/make_skeletons.py"
    assert "raise NotImplementedError(\"TODO: " in skeleton or "raise NotImplementedError('TODO: " in skeleton
    compile(skeleton, f"{level}/skeleton.py", "exec")
    compile(solution, f"{level}/solution.py", "exec")
