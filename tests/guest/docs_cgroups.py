"""docs/cgroups.md in the QEMU guest lane: there the kernel's cgroup2 has every controller, so
the commands marked `# needs a cgroup v2 host` run with the rest of the page, by the same
test as on the host (tests/test_docs.py), and report back through it.
"""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import test_docs  # noqa: E402
from test_docs import page_root  # noqa: E402,F401  (the fixture)


def test_cgroups_page_with_its_limits(page_root):
    if not test_docs.V2_CONTROLLERS:
        pytest.fail("the guest's cgroup2 lacks the memory, cpu or pids controller")
    test_docs.test_page_commands_run_as_typed("docs/cgroups.md", page_root)
