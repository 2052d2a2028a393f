"""The workshop levels that need a real cgroup v2 kernel (workshop/09-cgroups), run inside the
QEMU guest lane and reported through tests/test_workshop.py. Each command of the level's
"Check your work" section must print exactly what the README shows (workshop/check.py).
"""
from __future__ import annotations

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "workshop"))
import check  # noqa: E402

GUEST_LEVELS = ["09-cgroups"]
CASES = [(level, command, expected) for level in GUEST_LEVELS for command, expected in check.blocks(level)]


@pytest.mark.parametrize("level,command,expected", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_workshop_level(level, command, expected):
    got = check.run(command, timeout=600)
    assert got == expected, f"$ {command}\nprinted:\n{got}"
    v2 = "/sys/fs/cgroup"
    assert not [d for d in os.listdir(v2) if d.startswith("workshop-")], "a level left its cgroup"
