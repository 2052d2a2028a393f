"""compare --density on a cgroup v2 host: a container started as density starts them has a
cgroup with the memory controller, and its memory.current is what the report shows. (The VM
half cannot run here: no QEMU inside the guest; tests/test_compare_density.py runs it on the
host, where cgroup v2 has no memory controller and the figure is absent.)"""
from __future__ import annotations

import subprocess

from minicontainer.vm import density


def test_density_reads_the_container_cgroup_memory_current(state_root, rootfs):
    group = None
    started = []
    try:
        argv = density.container_argv(state_root, rootfs, ["sleep", "120"])
        group = density._start_all(started, 1, argv)
        figures = density._memory(group, density._children_map(), cgroup=True)
    finally:
        density._stop(started)
    current = figures["cgroup_memory_current_kib"]
    assert current is not None and 0 < current < 64 * 1024, figures
    assert all(p.returncode is not None for p in started)
    assert subprocess.run(["pgrep", "-f", density.UP.decode()], capture_output=True).stdout == b""
