"""cgroup v2 limits on a real cgroup v2 kernel: every test of tests/guest/cgroup_limits.py,
run inside the QEMU guest lane (minicontainer/testing/guest_lane.py), shows up here as one
host test that passes or fails as it did in the guest. A guest test that skipped, or never
reported (the guest died, timed out), fails here with the guest's console log.

The guest boots once per pytest session, on first use, for every file in tests/guest/
(about 45 s under TCG on our 2-core machines, most of it the tests themselves).
"""
from __future__ import annotations

import pytest

from minicontainer.testing import guest_lane

GUEST_TESTS = guest_lane.collect(["tests/guest/cgroup_limits.py"])


@pytest.fixture(scope="session")
def guest():
    return guest_lane.session_run()


@pytest.mark.parametrize("nodeid", GUEST_TESTS, ids=lambda n: n.split("::", 1)[1])
def test_in_guest(guest, nodeid):
    guest.check(nodeid)
