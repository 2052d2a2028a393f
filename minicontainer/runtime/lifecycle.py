"""A container after its launch: start it (OCI), signal it, stop it, remove it.

Every verb works from the record in the state store (runtime/state.py), reconciled with the
kernel: the container's first process is named by its pid *and* its start time, so a pid
reused by some other process is never signalled. The OCI state machine, and what each verb
accepts (anything else is refused, with the state named, and nothing changed):

    creating --create done--> created --start--> running --init exits--> stopped
    start: created          kill: created, running, paused  delete: stopped (--force: any)
    pause: created, running --> paused --resume--> the status it was paused from
"""
from __future__ import annotations

import os
import select
import time

from minicontainer.errors import ContainerError
from minicontainer.kernel import cgroupfs
from minicontainer.runtime.state import from_json, now, signal_process


def start(container) -> None:
    """Let a created container's process go on to execve: open its exec fifo for reading,
    which lets the blocked open for writing in the child return (runtime/launch.py)."""
    status = container.status()
    if status != "created":
        raise ContainerError(f'cannot start container "{container.id}": it is {status}, '
                             "and only a created container can be started")
    fifo = os.path.join(container.dir, "exec.fifo")
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while not poller.poll(100):
            if not container.alive():
                raise ContainerError(f'cannot start container "{container.id}": its process '
                                     "exited before it was started")
        answer = os.read(fd, 4096)  # "0", or "1" and why not (protocol.wait_for_start)
        if answer[:1] != b"0":
            why = answer[1:].decode(errors="replace") or \
                "its process exited before it was started"
            raise ContainerError(f'cannot start container "{container.id}": {why}')
    finally:
        os.close(fd)
    os.unlink(fifo)
    container.update(status="running", started=now())
    _hooks(container, "poststart", "running", container.record["pid"])


def kill(container, sig: int, all_processes: bool = False) -> None:
    """Send `sig` to the container's first process (or, with all_processes, to every process
    in its cgroup). Refused unless it is created, running or paused."""
    status = container.status()
    if status not in ("created", "running", "paused"):
        raise ContainerError(f'cannot kill container "{container.id}": it is {status}')
    if all_processes and cgroup_path(container):
        _signal_cgroup(cgroup_path(container), sig)
        return
    signal_process(container.record["pid"], sig)


def stop(container, timeout: float = 10.0) -> None:
    """docker stop: SIGTERM, then SIGKILL to all of it after `timeout` seconds."""
    if container.status() not in ("created", "running", "paused"):
        return  # stopping a stopped container is no error, as with docker
    kill(container, 15)
    if not wait_stopped(container, timeout):
        force_kill(container)


def force_kill(container) -> None:
    """SIGKILL every process of the container, and wait for it to be gone."""
    path = cgroup_path(container)
    if path and os.path.isdir(path):
        cgroupfs.kill(path)
    if container.alive():
        signal_process(container.record["pid"], 9)  # PID 1 of its namespace: takes the rest
    if not wait_stopped(container, 10):
        raise ContainerError(f'container "{container.id}" did not die after SIGKILL')


def wait_stopped(container, timeout: float) -> bool:
    """Wait until the container's first process has exited and, for a detached container,
    its shim has recorded the exit status. Whether it did within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        if not container.alive():
            if not container.watched():
                return True
            container.record = _reload(container)
            if container.record.get("status") == "stopped":
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def delete(container, force: bool = False) -> None:
    """OCI delete / docker rm: release everything the container has; a container that is
    not stopped is refused unless force, which kills it first."""
    status = container.status()
    if status not in ("stopped", "creating") or (status == "creating" and container.watched()):
        if not force:
            raise ContainerError(f'cannot delete container "{container.id}": it is {status}; '
                                 "stop it first, or force it (rm -f, delete --force)")
        force_kill(container)
    if container.record.get("mode") == "run" and container.watched():
        # A foreground run: its own runtime removes it on the way out; wait for that.
        deadline = time.monotonic() + 10
        while os.path.isdir(container.dir) and time.monotonic() < deadline:
            time.sleep(0.01)
        if not os.path.isdir(container.dir):
            return
    container.remove()
    _hooks(container, "poststop", "stopped", 0)


def _hooks(container, stage: str, status: str, pid: int) -> None:
    """poststart and poststop hooks (recorded by launch.create): a failure is a warning."""
    entries = (container.record.get("hooks") or {}).get(stage)
    if entries:
        from minicontainer.runtime import hooks

        hooks.run_warning_only(stage, entries, hooks.state(container, status, pid))


def pause(container) -> None:
    """Freeze every process of the container (cgroup v2's cgroup.freeze), as runc pause.
    Returns once the kernel reports the whole cgroup frozen (cgroup.events)."""
    status = container.status()
    if status not in ("created", "running"):
        raise ContainerError(f'cannot pause container "{container.id}": it is {status}')
    _freeze(container, "pause", True)
    container.update(status="paused", paused_from=status)


def resume(container) -> None:
    """Thaw a paused container; it goes back to the status it was paused from."""
    status = container.status()
    if status != "paused":
        raise ContainerError(f'cannot resume container "{container.id}": it is {status}, '
                             "not paused")
    _freeze(container, "resume", False)
    container.update(status=container.record.get("paused_from") or "running")


def _freeze(container, verb: str, frozen: bool) -> None:
    path = cgroup_path(container)
    if not path or not os.path.exists(f"{path}/cgroup.freeze"):
        raise ContainerError(f'cannot {verb} container "{container.id}": it has no cgroup v2 '
                             "with cgroup.freeze (the freezer needs cgroup v2, Linux 5.2+)")
    cgroupfs.write(f"{path}/cgroup.freeze", "1" if frozen else "0")
    deadline = time.monotonic() + 10
    while cgroupfs.keyed(f"{path}/cgroup.events").get("frozen", 0) != int(frozen):
        if time.monotonic() > deadline:  # a task stuck in the kernel (D state) delays it
            raise ContainerError(f'cannot {verb} container "{container.id}": {path} did not '
                                 f"become {'frozen' if frozen else 'thawed'} within 10 s")
        time.sleep(0.005)


def update(container, resources) -> None:
    """New limits (a spec.Resources) for a live container's cgroup, as `run` writes them
    (cgroups.update refuses, in one line, what this host cannot enforce). None: nothing to
    change, the container must be live all the same (as runc)."""
    status = container.status()
    if status not in ("created", "running", "paused"):
        raise ContainerError(f'cannot update container "{container.id}": it is {status}')
    if resources is None:
        return
    path = cgroup_path(container)
    if not path:
        raise ContainerError(f'cannot update container "{container.id}": it has no cgroup v2')
    from minicontainer.runtime import cgroups

    cgroups.update(path, resources)


def _stats_path(container) -> str:
    """The cgroup whose files `stats` reads; ContainerError unless the container is live and
    has one."""
    if container.status() not in ("created", "running", "paused"):
        raise ContainerError(f'container "{container.id}" is not running')
    path = cgroup_path(container)
    if not path:
        raise ContainerError(f'container "{container.id}" has no cgroup v2: no stats to show')
    return path


def stats(container) -> dict:
    """runc's types.Stats from the container's cgroup v2 files, under runc's names: cpu
    from cpu.stat (always there), memory from memory.current/peak/max/stat and pids from
    pids.current/max when those controllers are enabled (else the processes in
    cgroup.procs). A field this host does not account is absent, not zero."""
    return _stats(_stats_path(container))


def _stats(path: str) -> dict:
    from minicontainer.runtime.cgroups import read_keyed, read_single  # absent: {} and None

    data: dict = {}
    cpu = read_keyed(f"{path}/cpu.stat")
    if "usage_usec" in cpu:
        data["cpu"] = {"usage": {"total": cpu["usage_usec"] * 1000,
                                 "kernel": cpu.get("system_usec", 0) * 1000,
                                 "user": cpu.get("user_usec", 0) * 1000}}
        if "nr_periods" in cpu:
            data["cpu"]["throttling"] = {"periods": cpu["nr_periods"],
                                         "throttledPeriods": cpu["nr_throttled"],
                                         "throttledTime": cpu.get("throttled_usec", 0) * 1000}
    current = read_single(f"{path}/memory.current")
    if current is not None:
        usage = {"usage": current, "limit": read_single(f"{path}/memory.max") or (1 << 64) - 1,
                 "failcnt": read_keyed(f"{path}/memory.events").get("max", 0)}
        peak = read_single(f"{path}/memory.peak")
        if peak is not None:
            usage["max"] = peak
        data["memory"] = {"usage": usage, "raw": read_keyed(f"{path}/memory.stat")}
    pids = read_single(f"{path}/pids.current")
    if pids is None:
        pids = len(_cgroup_pids(path))
    data["pids"] = {"current": pids}
    limit = read_single(f"{path}/pids.max")
    if limit is not None:
        data["pids"]["limit"] = limit
    return data


def events(container, interval: float):
    """runc's events until the container stops: ("stats", stats) every `interval` seconds,
    ("oom", None) for each OOM kill the kernel counts in its cgroup (memory.events)."""
    from minicontainer.runtime.cgroups import read_keyed

    path = _stats_path(container)

    def oom_kills() -> int:
        return read_keyed(f"{path}/memory.events").get("oom_kill", 0)

    ooms = oom_kills()
    next_stats = time.monotonic()
    while container.status() in ("created", "running", "paused"):
        at = time.monotonic()
        if at >= next_stats:
            yield "stats", _stats(path)
            next_stats = at + interval
        kills = oom_kills()
        for _ in range(kills - ooms):
            yield "oom", None
        ooms = kills
        time.sleep(min(0.2, max(0.0, next_stats - time.monotonic())))


def pids(container) -> list[int]:
    """Every process of the container, as host pids (its cgroup's, sub-cgroups included);
    without a cgroup, its first process alone."""
    path = cgroup_path(container)
    if path and os.path.isdir(path):
        return _cgroup_pids(path)
    return [container.record["pid"]] if container.alive() else []


def cgroup_path(container) -> str | None:
    for kind, value in container.owned():
        if kind == "cgroup":
            return value
    return None


def _signal_cgroup(path: str, sig: int) -> None:
    if sig == 9:
        cgroupfs.kill(path)
        return
    for pid in _cgroup_pids(path):
        signal_process(pid, sig)


def _cgroup_pids(path: str) -> list[int]:
    pids = []
    for directory, _, _ in os.walk(path):
        try:
            pids += [int(p) for p in cgroupfs.read(f"{directory}/cgroup.procs").split()]
        except OSError:
            continue
    return pids


def _reload(container) -> dict:
    try:
        with open(os.path.join(container.dir, "state.json"), encoding="utf-8") as f:
            return from_json(f.read())
    except (OSError, ValueError):
        return {**container.record, "status": "stopped"}


SIGNALS = {"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7,
           "FPE": 8, "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14,
           "TERM": 15, "STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20,
           "TTIN": 21, "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26,
           "PROF": 27, "WINCH": 28, "IO": 29, "POLL": 29, "PWR": 30, "SYS": 31}


def parse_signal(text: str) -> int:
    """'9', 'KILL', 'SIGKILL', 'sigkill', 'RTMIN+3' -> the signal number."""
    t = text.strip().upper()
    if t.isdigit():
        n = int(t)
    else:
        t = t[3:] if t.startswith("SIG") else t
        if t in SIGNALS:
            return SIGNALS[t]
        n = -1
        if t.startswith("RTMIN"):
            n = 34 + int(t[6:] or 0) if t[5:6] in ("", "+") and t[6:].isdigit() or t == "RTMIN" else -1
        elif t.startswith("RTMAX"):
            n = 64 - int(t[6:] or 0) if t[5:6] in ("", "-") and t[6:].isdigit() or t == "RTMAX" else -1
    if not 1 <= n <= 64:
        raise ContainerError(f"unknown signal {text!r}")
    return n
