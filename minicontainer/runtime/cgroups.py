"""One cgroup v2 per container: where it lives, what limits go into it, what it reports.

    <cgroup2 mount>/minicontainer[-HASH]/<container id>
        parent: minicontainer's own, one per state root (HASH names a non-default root, so
        two roots never share or remove each other's parent); controllers are handed down
        to it through cgroup.subtree_control; removed when its last container goes.
    <cgroup2 mount>/<linux.cgroupsPath>            an OCI config's own place (place()):
        absolute as given; relative (systemd's slice:prefix:name too, taken literally) under
        the parent of our own cgroup, as runc's cgroupfs driver does. The directories we
        make on the way are owned too ("cgroup-parent": removed when empty).

Sequence (runtime/launch.py):
    check(spec)             before anything starts: refuse limits this host cannot enforce
    create(spec, container) parent side, before fork: record, mkdir, write the limits;
                            the child is then born in it (clone3 CLONE_INTO_CGROUP, see
                            launch._fork), so its cgroup namespace is rooted there
    report(spec, path)      after the container exits: OOM kill, refused forks, --stats
    release(path)           cleanup and gc (RELEASERS["cgroup"]): cgroup.kill, rmdir

Only the controllers a run needs are enabled, so a run without limits costs two mkdirs and
two rmdirs (~0.3 ms). A limit is never silently dropped: no controller, no start.
"""
from __future__ import annotations

import os
import sys
import time

from minicontainer.errors import ContainerError
from minicontainer.kernel import cgroupfs, trace
from minicontainer.kernel.cgroupfs import CgroupError

DEFAULT_STATE_ROOT = "/run/minicontainer"
PERIOD_US = 100_000  # cpu.max period, docker's default

# Resources field -> (the flag a user typed, the v2 controller that enforces it)
LIMITS = {
    "memory": ("--memory", "memory"),
    "memory_swap": ("--memory-swap", "memory"),
    "memory_reservation": ("--memory-reservation", "memory"),
    "cpus": ("--cpus", "cpu"),
    "cpu_shares": ("--cpu-shares", "cpu"),
    "cpuset_cpus": ("--cpuset-cpus", "cpuset"),
    "pids_limit": ("--pids-limit", "pids"),
    "io_weight": ("--io-weight", "io"),
    "device_read_bps": ("--device-read-bps", "io"),
    "device_write_bps": ("--device-write-bps", "io"),
}
STATS_CONTROLLERS = ("memory", "cpu", "pids")  # memory.peak, cpu.stat throttling, pids.peak
V1_NAME = {"io": "blkio"}  # the same controller's name in cgroup v1

_mounts = None


def _v2_mounts():
    global _mounts
    if _mounts is None:
        _mounts = cgroupfs.mounts()
    return _mounts


def _limits(resources) -> dict[str, list[str]]:
    """{controller: [flags]} for every limit set."""
    out: dict[str, list[str]] = {}
    if resources is None:
        return out
    for field, (flag, controller) in LIMITS.items():
        if getattr(resources, field) not in (None, []):
            out.setdefault(controller, []).append(flag)
    return out


def check(spec) -> None:
    """Refuse, before anything starts, limits that cgroup v2 on this host cannot enforce."""
    if spec.device_rules is not None and _v2_mounts()[0] is None:
        raise ContainerError(
            "cannot enforce the device allowlist: cgroup v2 is not mounted on this host, and "
            "its device controller (an eBPF program) is what enforces it; a container "
            "holding CAP_MKNOD needs it (run with --cap-drop MKNOD)")
    check_resources(spec.resources)


def check_resources(resources) -> None:
    wanted = _limits(resources)
    if not wanted:
        return
    v2, v1 = _v2_mounts()
    flags = ", ".join(f for fs in wanted.values() for f in fs)
    if v2 is None:
        raise ContainerError(
            f"cannot apply {flags}: cgroup v2 is not mounted on this host and minicontainer "
            "sets limits only through cgroup v2; boot with systemd.unified_cgroup_hierarchy=1 "
            "(or mount cgroup2), or run without these flags")
    available = cgroupfs.controllers(v2)
    missing = [c for c in wanted if c not in available]
    if missing:
        where = [f"{c} is held by cgroup v1 at {v1[V1_NAME.get(c, c)]}"
                 for c in missing if V1_NAME.get(c, c) in v1]
        layout = "a hybrid cgroup v1/v2 host" if v1 else "this host"
        bad = ", ".join(f for c in missing for f in wanted[c])
        raise ContainerError(
            f"cannot apply {bad}: cgroup v2 at {v2} has no {'/'.join(missing)} controller "
            f"here ({'; '.join(where) + ': ' if where else ''}{layout}), and minicontainer "
            "never ignores a limit; boot the host with pure cgroup v2 "
            "(systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all), or run without these flags")


def parent_name(state_root: str) -> str:
    """minicontainer for the default state root, minicontainer-HASH for any other (FNV-1a
    of the path: hashlib would cost an import on every start)."""
    if os.path.normpath(state_root) == DEFAULT_STATE_ROOT:
        return "minicontainer"
    h = 0xCBF29CE484222325
    for byte in os.path.realpath(state_root).encode():
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"minicontainer-{h:016x}"


def create(spec, container) -> str | None:
    """Make the container's cgroup and write its limits; None when cgroup v2 is not mounted
    (check() has already refused any limit then)."""
    v2, _ = _v2_mounts()
    if v2 is None:
        if spec.cgroups_path is not None:
            raise ContainerError(f"linux.cgroupsPath {spec.cgroups_path!r}: cgroup v2 is not "
                                 "mounted on this host")
        return None
    resources = spec.resources
    need = set(_limits(resources))
    if resources is not None and resources.stats:
        available = cgroupfs.controllers(v2)
        need |= {c for c in STATS_CONTROLLERS if c in available}
    if spec.cgroups_path is not None:
        path = place(v2, spec.cgroups_path)
        _make_path(container, v2, path, need)
    else:
        parent = f"{v2}/{parent_name(container.store.root)}"
        path = f"{parent}/{container.id}"
        container.own("cgroup", path)
        for attempt in range(10):
            try:
                _ensure_parent(v2, parent, need)
                cgroupfs.mkdir(path)
                break
            except CgroupError as e:
                # ENOENT: the last container of this root just removed the parent; again
                if e.errno != 2 or attempt == 9:
                    raise ContainerError(str(e)) from None
    try:
        # memory.swap.max is absent without swap accounting (CONFIG_MEMCG_SWAP, swapaccount=0)
        swap = "memory" in need and os.path.exists(f"{path}/memory.swap.max")
        for name, value in settings(resources, swap_accounting=swap):
            cgroupfs.write(f"{path}/{name}", value)
    except CgroupError as e:
        raise ContainerError(str(e)) from None
    if spec.device_rules is not None:
        from minicontainer.runtime import devices

        devices.attach(path, spec.device_rules)
    return path


def update(path: str, resources) -> None:
    """`update`: write new limits into a live container's cgroup, after refusing those this
    host cannot enforce; the controllers are handed down from the root first."""
    check_resources(resources)
    need = set(_limits(resources))
    v2, _ = _v2_mounts()
    levels = []
    level = os.path.dirname(path)
    while level.startswith(v2) and level != os.path.dirname(level):
        levels.insert(0, level)
        if level == v2:
            break
        level = os.path.dirname(level)
    try:
        for level in levels:
            missing = need - cgroupfs.subtree_control(level)
            if missing:
                cgroupfs.enable(level, missing)
        swap = "memory" in need and os.path.exists(f"{path}/memory.swap.max")
        for name, value in settings(resources, swap_accounting=swap):
            cgroupfs.write(f"{path}/{name}", value)
    except CgroupError as e:
        raise ContainerError(str(e)) from None


def place(v2: str, cgroups_path: str) -> str:
    """Where linux.cgroupsPath puts the container, as runc's cgroupfs driver places it: the
    path cleaned as if it were rooted (no ".." climbs out), absolute under the cgroup2
    root, relative under the parent of the runtime's own cgroup."""
    inner = os.path.normpath("/" + cgroups_path.lstrip("/"))
    if not cgroups_path.startswith("/"):
        own = "/"
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    own = line[3:].strip()
        inner = os.path.normpath(os.path.dirname(own).rstrip("/") + inner)
    if inner == "/":
        raise ContainerError(f"linux.cgroupsPath {cgroups_path!r}: that is the cgroup2 root "
                             "itself, not a cgroup of the container's own")
    return v2 + inner


def _make_path(container, v2: str, path: str, need: set[str]) -> None:
    """Make `path` and the directories above it that are missing (each owned, recorded
    before it is made), handing the controllers needed down. A cgroup that exists already
    is used if nothing runs in it (runc's rule), and removed with the container."""
    levels = [v2]
    for part in path[len(v2) + 1:].split("/"):
        levels.append(f"{levels[-1]}/{part}")
    try:
        for level in levels[1:-1]:
            if not os.path.isdir(level):
                container.own("cgroup-parent", level)
                try:
                    cgroupfs.mkdir(level)
                except CgroupError as e:
                    if e.errno != 17:  # EEXIST: another container made it just now
                        raise
        if os.path.isdir(path) and cgroupfs.populated(path):
            raise ContainerError(f"linux.cgroupsPath: {path} is not empty: processes run in "
                                 "it already")
        container.own("cgroup", path)
        if not os.path.isdir(path):
            cgroupfs.mkdir(path)
        for level in levels[:-1]:
            missing = need - cgroupfs.subtree_control(level)
            if missing:
                cgroupfs.enable(level, missing)
    except CgroupError as e:
        raise ContainerError(str(e)) from None


def _ensure_parent(v2: str, parent: str, need: set[str]) -> None:
    try:
        cgroupfs.mkdir(parent)
    except CgroupError as e:
        if e.errno != 17:  # EEXIST: other containers of this state root run
            raise
    for level in (v2, parent):
        missing = need - cgroupfs.subtree_control(level)
        if missing:
            cgroupfs.enable(level, missing)


def settings(resources, swap_accounting: bool = True) -> list[tuple[str, str]]:
    """The cgroup v2 files and values for `resources` (docker's/runc's translation)."""
    out: list[tuple[str, str]] = []
    if resources is None:
        return out
    r = resources
    if r.memory is not None:
        out.append(("memory.max", str(r.memory)))
        # The container is one unit: an OOM kill takes all of it, so the exit is a clear 137.
        out.append(("memory.oom.group", "1"))
        # docker: --memory-swap is memory+swap; unset means as much swap as memory.
        swap = r.memory_swap if r.memory_swap is not None else 2 * r.memory
        # Without swap accounting, skip the implicit swap limit (the user asked for none);
        # an explicit --memory-swap is still written, and fails loudly.
        if r.memory_swap is not None or swap_accounting:
            out.append(("memory.swap.max", "max" if swap == -1 else str(swap - r.memory)))
    if r.memory_reservation is not None:
        out.append(("memory.low", str(r.memory_reservation)))
    if r.cpus is not None:
        out.append(("cpu.max", f"{max(1000, round(r.cpus * PERIOD_US))} {PERIOD_US}"))
    if r.cpu_shares is not None:
        out.append(("cpu.weight", str(shares_to_weight(r.cpu_shares))))
    if r.cpuset_cpus is not None:
        out.append(("cpuset.cpus", r.cpuset_cpus))
    if r.pids_limit is not None:
        out.append(("pids.max", str(r.pids_limit)))
    if r.io_weight is not None:
        out.append(("io.weight", f"default {r.io_weight}"))
    rates: dict[str, list[str]] = {}
    for key, entries in (("rbps", r.device_read_bps), ("wbps", r.device_write_bps)):
        for _path, devno, rate in entries:
            rates.setdefault(devno, []).append(f"{key}={rate}")
    for devno, parts in rates.items():
        out.append(("io.max", f"{devno} {' '.join(parts)}"))
    return out


def shares_to_weight(shares: int) -> int:
    """cpu.shares (2..262144, default 1024) to cpu.weight (1..10000, default 100), with the
    quadratic-in-log conversion crun uses, which keeps the defaults matched (1024 -> 100)."""
    import math

    if shares <= 2:
        return 1
    if shares >= 262144:
        return 10000
    log = math.log2(shares)
    exponent = (log * log + 125 * log) / 612.0 - 7.0 / 34.0
    return max(1, min(10000, math.ceil(10 ** exponent)))


# --- after exit ----------------------------------------------------------------------------

def report(spec, path: str | None, status: int) -> None:
    """Tell the user, on stderr, what the kernel did to the container: an OOM kill (from
    memory.events), forks refused at pids.max (pids.events), and --stats."""
    resources = spec.resources
    if path is None or resources is None:
        return
    lines = []
    if resources.memory is not None:
        events = read_keyed(f"{path}/memory.events")
        if events.get("oom_kill"):
            # oom_kill counts kills, not processes: with memory.oom.group the victim is
            # counted once as the victim and once with its group.
            lines.append(
                f"container killed for memory: the OOM killer ran at its limit "
                f"memory.max={_size(resources.memory)} (memory.events: max "
                f"{events.get('max', 0)}, oom {events.get('oom', 0)}, oom_kill "
                f"{events['oom_kill']}); exit status {status}")
    if resources.pids_limit is not None:
        refused = read_keyed(f"{path}/pids.events").get("max", 0)
        if refused:
            lines.append(f"pids.max={resources.pids_limit} refused {refused} fork(s) "
                         "(pids.events max)")
    if resources.stats:
        lines.extend(stats_lines(path))
    for line in lines:
        sys.stderr.write(f"minicontainer: {line}\n")


def stats_lines(path: str) -> list[str]:
    cpu = read_keyed(f"{path}/cpu.stat")
    lines = ["stats:"]
    peak = read_single(f"{path}/memory.peak")
    lines.append("  memory peak     " + (_size(peak) if peak is not None else
                                         "n/a (no memory controller in cgroup v2 here)"))
    if "user_usec" in cpu:
        lines.append(f"  cpu time        user {cpu['user_usec'] / 1e6:.3f} s, "
                     f"system {cpu['system_usec'] / 1e6:.3f} s")
    else:
        lines.append("  cpu time        n/a (no cpu.stat)")
    if "nr_periods" in cpu:
        lines.append(f"  cpu throttled   {cpu['nr_throttled']} of {cpu['nr_periods']} periods, "
                     f"{cpu.get('throttled_usec', 0) / 1e6:.3f} s")
    else:
        lines.append("  cpu throttled   n/a (no cpu controller in cgroup v2 here)")
    pids = read_single(f"{path}/pids.peak")
    lines.append("  pids peak       " + (str(pids) if pids is not None else
                                         "n/a (no pids controller or pids.peak here)"))
    return lines


def read_keyed(path: str) -> dict[str, int]:
    """A "key value" file (cpu.stat, memory.events...); {} when absent or unreadable (a
    controller this host does not enable, a cgroup already removed)."""
    try:
        return cgroupfs.keyed(path)
    except CgroupError:
        return {}


def read_single(path: str):
    """A one-number file (memory.current, pids.max...); None when absent or unreadable."""
    try:
        return cgroupfs.single(path)
    except (CgroupError, ValueError):
        return None


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}".replace(".0 ", " ")
    return f"{n} B"


# --- cleanup -------------------------------------------------------------------------------

def release(path: str) -> None:
    """The "cgroup" releaser: kill whatever still runs in the container's cgroup, remove it,
    and remove minicontainer's parent if this was its last container. Fine if already gone."""
    _check_inside(path)
    try:
        os.rmdir(path)  # the usual case: the container's processes are all gone already
        _traced_rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        if e.errno != 16:  # EBUSY: processes still in it
            raise
        _traced_rmdir(path, e.errno)
        _kill_and_remove(path)
    if os.path.basename(os.path.dirname(path)).startswith("minicontainer"):
        release_parent(os.path.dirname(path))


def release_parent(path: str) -> None:
    """The "cgroup-parent" releaser (and minicontainer's own parent): removed when empty.
    Another container's cgroup in it (EBUSY) keeps it, and nothing is ever killed here."""
    _check_inside(path)
    try:
        os.rmdir(path)
        _traced_rmdir(path)
    except OSError as e:  # other containers still use it (EBUSY), or already gone
        _traced_rmdir(path, e.errno)


def _traced_rmdir(path: str, err: int = 0) -> None:
    if trace.enabled:
        import errno

        trace.call("rmdir", (path,), -1 if err else 0, errno.errorcode.get(err) if err else None)


def _check_inside(path: str) -> None:
    """The owned record names the path: never act on one outside a cgroup2 mount."""
    v2, _ = _v2_mounts()
    if v2 is None or os.path.normpath(path) != path or not path.startswith(v2 + "/"):
        raise ContainerError(f"refusing to remove {path}: not a cgroup under {v2}")


def _kill_and_remove(path: str, timeout: float = 10.0) -> None:
    cgroupfs.kill(path)
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            os.rmdir(path)
            _traced_rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            # EBUSY while the killed processes finish exiting (or a zombie awaits its reaper)
            if e.errno != 16 or time.monotonic() > deadline:
                raise ContainerError(f"cannot remove cgroup {path}: {e.strerror}") from None
        if cgroupfs.populated(path):
            cgroupfs.kill(path)
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
