"""cgroup v2 files, typed: where the hierarchy is mounted, what it offers, and reading and
writing its files with errors that name the file, the value and errno. No policy: which
cgroup to make and what to write is runtime/cgroups.py's business.

Plain os calls on purpose: cgroupfs files are tiny, and this runs on every container start.
See the kernel's Documentation/admin-guide/cgroup-v2.rst for what each file means.
"""
from __future__ import annotations

import os

from minicontainer.kernel import trace


class CgroupError(OSError):
    """A cgroupfs read or write failed: carries the file, the value written and errno."""

    def __init__(self, action: str, path: str, err: int, value: str | None = None):
        import errno

        what = f"{action} {value!r} to {path}" if value is not None else f"{action} {path}"
        name = errno.errorcode.get(err, str(err))
        super().__init__(err, f"cgroup: {what} failed: {os.strerror(err)} [{name}]")
        self.path = path
        self.value = value

    def __str__(self) -> str:
        return self.strerror


def mounts() -> tuple[str | None, dict[str, str]]:
    """(where cgroup2 is mounted or None, {v1 controller: its mount point}) from
    /proc/self/mountinfo. The v1 map is only for telling the user where a controller went."""
    v2 = None
    v1: dict[str, str] = {}
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f.read().decode(errors="replace").splitlines():
            fields = line.split()
            sep = fields.index("-")
            fstype, options = fields[sep + 1], fields[sep + 3]
            point = fields[4].replace("\\040", " ")
            # The last visible one wins: a later mount can hide an earlier one (a private
            # namespace may mount a fresh cgroup2 over /sys/fs/cgroup, as bench/ does).
            if fstype == "cgroup2" and os.path.exists(f"{point}/cgroup.procs"):
                v2 = point
            elif fstype == "cgroup":
                for opt in options.split(","):
                    if opt not in ("rw", "ro") and "=" not in opt:
                        v1.setdefault(opt, point)
    return v2, v1


def read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        raise CgroupError("read", path, e.errno) from None


def write(path: str, value: str) -> None:
    """One write(2) of `value`: cgroupfs parses each write as one command."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        _traced("write", (path, value), e.errno)
        raise CgroupError("write", path, e.errno, value) from None
    try:
        os.write(fd, value.encode())
    except OSError as e:
        _traced("write", (path, value), e.errno)
        raise CgroupError("write", path, e.errno, value) from None
    finally:
        os.close(fd)
    _traced("write", (path, value))


def _traced(call: str, args: tuple, err: int = 0) -> None:
    """Narrate one cgroupfs operation as the call it is (kernel/trace.py)."""
    if trace.enabled:
        import errno

        trace.call(call, args, -1 if err else 0, errno.errorcode.get(err) if err else None)


def controllers(cgroup: str) -> set[str]:
    """The controllers this cgroup may use (cgroup.controllers)."""
    return set(read(f"{cgroup}/cgroup.controllers").split())


def subtree_control(cgroup: str) -> set[str]:
    """The controllers this cgroup hands to its children (cgroup.subtree_control)."""
    return set(read(f"{cgroup}/cgroup.subtree_control").split())


def enable(cgroup: str, names) -> None:
    """Hand `names` to the children of `cgroup`, in one write ("+memory +pids")."""
    if names:
        write(f"{cgroup}/cgroup.subtree_control", " ".join("+" + n for n in sorted(names)))


def keyed(path: str) -> dict[str, int]:
    """A flat keyed file ("key value" per line: memory.events, cpu.stat, pids.events)."""
    out = {}
    for line in read(path).splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            pass
    return out


def single(path: str) -> int | None:
    """A one-number file (memory.peak, pids.peak, memory.current); None for "max"."""
    text = read(path).strip()
    return None if text == "max" else int(text)


def mkdir(cgroup: str) -> None:
    try:
        os.mkdir(cgroup)
    except OSError as e:
        _traced("mkdir", (cgroup,), e.errno)
        raise CgroupError("mkdir", cgroup, e.errno) from None
    _traced("mkdir", (cgroup,))


def join(cgroup: str, pid: int = 0) -> None:
    """Move process `pid` (0: the caller) into `cgroup`."""
    write(f"{cgroup}/cgroup.procs", str(pid))


def populated(cgroup: str) -> bool:
    """Whether any process lives in `cgroup` or below (cgroup.events)."""
    return keyed(f"{cgroup}/cgroup.events").get("populated", 0) == 1


def kill(cgroup: str) -> None:
    """SIGKILL every process in `cgroup` and below. cgroup.kill (Linux 5.14) does it in one
    atomic step, so nothing can fork away; before that, kill the listed pids until none is left
    (a fork racing the loop is caught by the next round)."""
    try:
        write(f"{cgroup}/cgroup.kill", "1")
        return
    except CgroupError as e:
        if e.errno != 2:  # ENOENT: an older kernel without cgroup.kill
            raise
    for _ in range(100):
        pids = [int(p) for p in read(f"{cgroup}/cgroup.procs").split()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
