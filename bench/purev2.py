"""Run a benchmark as if on a pure cgroup v2 host, without touching the host's cgroups.

Our dev machines are hybrid: v1 controllers under /sys/fs/cgroup/<ctrl> (the memory one is
used by the machine itself and must never be written to) and cgroup2 at
/sys/fs/cgroup/unified. runc, crun and podman's cgroupfs manager would create cgroups in every
v1 hierarchy there. So a benchmark re-executes itself in a private mount namespace in which
/sys/fs/cgroup is a fresh tmpfs with only cgroup2 mounted on it: the peers see a pure v2 host
(the host's own v2 hierarchy, grouping only) and nothing of the host is unmounted or
rearranged. On a pure v2 host this changes nothing.
"""
from __future__ import annotations

import os
import sys

MARK = "MC_BENCH_IN_NS"


def enter(net: bool = False, setup: str = "") -> None:
    """Re-exec the running script in that namespace (a no-op once inside). net: in a new
    network namespace too, with lo up (for clients that would touch host networking);
    setup: more shell commands to run there first (private mounts)."""
    if os.environ.get(MARK):
        return
    v2 = "mount -t tmpfs cgroupfs /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup"
    if _cgroup2_is_root():
        v2 = "true"
    if net:
        v2 += " && ip link set lo up"
    if setup:
        v2 += f" && {setup}"
    os.environ[MARK] = "1"
    os.execvp("unshare", ["unshare", "--mount", *(["--net"] if net else []), "--propagation",
                          "private", "sh", "-c", f'{v2} && exec "$0" "$@"', sys.executable,
                          *sys.argv])


def _cgroup2_is_root() -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == "/sys/fs/cgroup" and " - cgroup2 " in line for line in f)


def cgroups_now() -> set[str]:
    """Every cgroup directory in the (v2) hierarchy, to remove what a peer left behind."""
    found = set()
    for directory, dirs, _ in os.walk("/sys/fs/cgroup"):
        found.update(os.path.join(directory, d) for d in dirs)
    return found


def remove_new_cgroups(before: set[str]) -> None:
    """Remove the empty cgroups that appeared since `before` (podman keeps libpod_parent)."""
    for path in sorted(cgroups_now() - before, key=len, reverse=True):
        try:
            os.rmdir(path)
        except OSError:
            pass
