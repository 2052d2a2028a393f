"""`minicontainer compare --density N ROOTFS -- COMMAND`: N containers and N VMs alive at once,
and what they cost the host, at several N (1, N/2, N), so that "a container is lighter" is a
curve of cost against N rather than one point.

One round per N:
    1. N containers (`minicontainer run --init`) started together; the time until every one
       has printed a line from inside (the command is wrapped: `echo up; exec COMMAND`);
    2. then N VMs (`minicontainer vm run`, same rootfs, same wrapped command) started
       together, timed the same way;
    3. with all 2N alive: host memory of each instance's process tree (its `run`/`vm run`
       process, the runtime, and what that started, the workload: the container's processes
       or QEMU), as PSS (shared pages divided among their users, so the sum over instances is
       what they cost together) and RSS, from /proc/PID/smaps_rollup; and the container's
       cgroup memory.current where cgroup v2 has a memory controller;
    4. everything stopped (SIGTERM: `run` forwards it to --init, `vm run` kills QEMU) and
       waited for; SIGKILL after a grace period. Also on Ctrl-C and on any failure.
Before anything starts, N VMs must fit in MemAvailable (guest memory + QEMU's own, estimated),
or it refuses in one line.
"""
from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import sys
import time

from minicontainer.errors import ContainerError, UsageError

UP = b"__minicontainer_up__"
WRAP = f'echo {UP.decode()}; exec "$@"'
QEMU_OVERHEAD_MIB = 200   # QEMU's own RSS beyond guest memory under TCG (docs/vm.md: ~250 MiB
                          # RSS for a 128 MiB guest that uses 28 MiB); a container: ~30 MiB
CONTAINER_MIB = 30
STOP_GRACE_S = 20


def plan(n: int) -> list[int]:
    """The N of each round: 1, N/2, N (each once)."""
    return sorted({1, max(1, n // 2), n})


def check_memory(n: int, guest_mib: int, meminfo: str = "/proc/meminfo") -> dict:
    """Refuse (one line) unless N VMs and N containers fit in MemAvailable."""
    with open(meminfo) as f:
        fields = dict(line.split(":", 1) for line in f)
    available = int(fields["MemAvailable"].split()[0]) >> 10
    need = n * (guest_mib + QEMU_OVERHEAD_MIB + CONTAINER_MIB)
    if need > available:
        fits = available // (guest_mib + QEMU_OVERHEAD_MIB + CONTAINER_MIB)
        raise UsageError(f"compare --density {n}: {n} VMs and {n} containers need about {need} MiB "
                         f"({guest_mib} MiB guest + ~{QEMU_OVERHEAD_MIB} MiB QEMU + ~{CONTAINER_MIB} "
                         f"MiB container each) and {available} MiB is available: at most {fits} here")
    return {"available_mib": available, "estimated_need_mib": need}


def measure(rootfs: str, command: list[str], n: int, devices: str = "none",
            memory: str | None = None, cpus: str | None = None, kernel: str | None = None) -> dict:
    """The rounds at N = 1, N/2, N (`plan`) with one device model; the report (`table`
    prints it, `draw` plots it). memory, cpus, kernel: the guests' (as `vm run` takes them).
    Refuses first, in one line, when N VMs would not fit (`check_memory`)."""
    from minicontainer.vm import launch
    from minicontainer.vm.compare import _progress, _progress_bar, scratch_state

    guest_mib = launch.parse_memory(memory) if memory is not None else 128
    check_memory(n, guest_mib)  # before fetching a kernel for VMs that cannot fit
    config = launch.VMConfig(rootfs=rootfs, args=command, kernel=kernel, devices=devices)
    launch.check(config)
    launch.prepare(config, progress=_progress_bar())  # the cache is filled before any timing
    vm_flags = ["--devices", devices, "-m", f"{guest_mib}m"]
    if cpus is not None:
        vm_flags += ["--cpus", cpus]
    if kernel is not None:
        vm_flags += ["--kernel", kernel]
    state = scratch_state()
    try:
        return run(rootfs, command, n, guest_mib, vm_flags, state, _progress)
    finally:
        shutil.rmtree(state, ignore_errors=True)


def run(rootfs: str, command: list[str], n: int, guest_mib: int, vm_flags: list[str],
        state: str, say) -> dict:
    """The rounds themselves, in state root `state`; `say` reports progress."""
    memory = check_memory(n, guest_mib)
    rounds = []
    # A SIGTERM or SIGHUP must unwind through _round's clean-up like Ctrl-C does.
    old = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        for k in plan(n):
            say(f"density: {k} container(s) and {k} VM(s)")
            rounds.append(_round(rootfs, command, k, vm_flags, state))
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    from minicontainer.vm.compare import _machine

    return {"machine": _machine(), "rootfs": rootfs, "command": command, "n": n,
            "guest_memory_mib": guest_mib, "memory_check": memory, "rounds": rounds}


def _interrupt(signum, frame):
    raise KeyboardInterrupt


# --- one round ---------------------------------------------------------------------------------

MC = [sys.executable, "-m", "minicontainer"]


def _wrapped(command):
    return ["/bin/sh", "-c", WRAP, "sh", *command]


def container_argv(state, rootfs, command) -> list[str]:
    """--init: SIGTERM stops it (a PID 1 without a handler ignores it). --stats: the
    container's cgroup gets the memory controller where cgroup v2 has one, hence a
    memory.current to read (its report on exit goes nowhere)."""
    return [*MC, "--root", state, "run", "--init", "--stats", rootfs, *_wrapped(command)]


def _round(rootfs, command, k, vm_flags, state) -> dict:
    started: list[subprocess.Popen] = []
    try:
        containers = _start_all(started, k, container_argv(state, rootfs, command))
        vms = _start_all(started, k, [*MC, "vm", "run", *vm_flags, rootfs, *_wrapped(command)])
        tree = _children_map()
        result = {"n": k, "container": _memory(containers, tree, cgroup=True),
                  "vm": _memory(vms, tree, cgroup=False)}
        result["container"]["all_up_s"] = containers.up_s
        result["vm"]["all_up_s"] = vms.up_s
        return result
    finally:
        _stop(started)


class _Group:
    def __init__(self, procs, up_s):
        self.procs, self.up_s = procs, up_s


def _start_all(started, k, argv) -> _Group:
    """Start K copies of ARGV at once; return when each has printed UP (or raise why not)."""
    t0 = time.monotonic()
    procs = []
    for _ in range(k):
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)
        started.append(p)
        procs.append(p)
    waiting = {p.stdout.fileno(): p for p in procs}
    sel = selectors.DefaultSelector()
    for p in procs:
        sel.register(p.stdout, selectors.EVENT_READ, p)
    deadline = t0 + 120 + 30 * k  # VMs under TCG on a loaded 2-core machine
    seen = {p.pid: b"" for p in procs}
    try:
        while waiting:
            events = sel.select(timeout=max(0.0, deadline - time.monotonic()))
            if not events:
                raise ContainerError(f"compare --density: {len(waiting)} of {k} not up after "
                                     f"{deadline - t0:.0f} s: {' '.join(argv[3:6])} ...")
            for key, _ in events:
                p = key.data
                chunk = os.read(p.stdout.fileno(), 4096)
                seen[p.pid] += chunk
                if UP in seen[p.pid]:
                    sel.unregister(p.stdout)
                    del waiting[p.stdout.fileno()]
                elif not chunk:
                    p.wait()
                    err = p.stderr.read().decode(errors="replace").strip().splitlines()
                    raise ContainerError(f"compare --density: an instance exited ({p.returncode}) "
                                         f"before it was up: {err[-1] if err else 'no message'}")
    finally:
        sel.close()
    return _Group(procs, time.monotonic() - t0)


def _stop(procs) -> None:
    """SIGTERM to every `run`/`vm run` (they clean up after themselves), SIGKILL to the
    whole session of any still there after the grace period; reap all."""
    for p in procs:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + STOP_GRACE_S
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        for stream in (p.stdout, p.stderr):
            stream.close()


# --- memory ------------------------------------------------------------------------------------

def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(entry))
    return kids


def _descendants(pid, kids) -> list[int]:
    out, todo = [], list(kids.get(pid, ()))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def _rollup(pid) -> tuple[int, int]:
    """(PSS, RSS) in KiB of one process; (0, 0) if it is gone."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except OSError:
        pass
    return pss, rss


def _cgroup_memory_current(pids) -> int | None:
    """memory.current of the cgroup the container's processes are in, in KiB, if cgroup v2
    gives it one (not on a hybrid host)."""
    from minicontainer.kernel.cgroupfs import mounts

    v2 = mounts()[0]
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                path = next((ln[3:].strip() for ln in f if ln.startswith("0::")), None)
            with open(f"{v2}{path}/memory.current") as f:
                return int(f.read()) >> 10
        except (OSError, TypeError, ValueError):
            continue
    return None


def _memory(group: _Group, kids, cgroup: bool) -> dict:
    instances = []
    for p in group.procs:
        workload = _descendants(p.pid, kids)
        runtime_pss, runtime_rss = _rollup(p.pid)
        figures = [_rollup(w) for w in workload]
        instances.append({
            "runtime_pss_kib": runtime_pss, "runtime_rss_kib": runtime_rss,
            "workload_pss_kib": sum(f[0] for f in figures),
            "workload_rss_kib": sum(f[1] for f in figures),
            "cgroup_memory_current_kib": _cgroup_memory_current(workload) if cgroup else None,
        })
    total_pss = sum(i["runtime_pss_kib"] + i["workload_pss_kib"] for i in instances)
    total_rss = sum(i["runtime_rss_kib"] + i["workload_rss_kib"] for i in instances)
    cg = [i["cgroup_memory_current_kib"] for i in instances if i["cgroup_memory_current_kib"] is not None]
    return {"total_pss_kib": total_pss, "total_rss_kib": total_rss,
            "per_instance_pss_kib": total_pss / len(instances),
            "runtime_pss_kib": sum(i["runtime_pss_kib"] for i in instances) / len(instances),
            "workload_pss_kib": sum(i["workload_pss_kib"] for i in instances) / len(instances),
            "cgroup_memory_current_kib": sum(cg) if cg else None,
            "instances": instances}


# --- output ------------------------------------------------------------------------------------

def table(report: dict) -> str:
    from minicontainer.vm.compare import _m, _t

    rs = report["rounds"]
    rows = []
    for kind, label in (("container", "containers"), ("vm", "VMs")):
        workload = "container" if kind == "container" else "qemu"
        rows += [
            (f"{label}: all up after", [_t(r[kind]["all_up_s"]) for r in rs]),
            ("  host PSS, total", [_m(r[kind]["total_pss_kib"]) for r in rs]),
            ("  host RSS, total", [_m(r[kind]["total_rss_kib"]) for r in rs]),
            ("  PSS per instance", [_m(r[kind]["per_instance_pss_kib"]) for r in rs]),
            (f"    runtime + {workload}", [f"{_m(r[kind]['runtime_pss_kib'])} + {_m(r[kind]['workload_pss_kib'])}"
                                           for r in rs]),
        ]
        if kind == "container":
            rows.append(("  cgroup memory.current", [_m(r[kind]["cgroup_memory_current_kib"])
                                                     if r[kind]["cgroup_memory_current_kib"] is not None
                                                     else "- (no cgroup v2 memory)" for r in rs]))
    head = ("", [f"N={r['n']}" for r in rs])
    width0 = max(len(r[0]) for r in rows + [head])
    widths = [max(len(r[1][i]) for r in rows + [head]) for i in range(len(rs))]
    m = report["machine"]
    lines = [f"N containers and N VMs ({report['guest_memory_mib']} MiB each) alive at once, running "
             f"{' '.join(report['command'])} in {report['rootfs']}; host kernel {m['kernel']}, "
             f"{m['cpus']} CPUs, {m['memory_mib']} MiB"]
    for label, cells in [head] + rows:
        lines.append(label.ljust(width0) + "  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
    return "\n".join(lines) + "\n"


def draw(report: dict, path: str) -> None:
    """Two panels against N: total host PSS (MiB), and the time until all are up (s);
    one line for containers, one for VMs. SVG by hand; PNG through matplotlib."""
    rs = report["rounds"]
    ns = [r["n"] for r in rs]
    series = {kind: ([r[kind]["total_pss_kib"] / 1024 for r in rs], [r[kind]["all_up_s"] for r in rs])
              for kind in ("container", "vm")}
    colors = {"container": "#4a7ab5", "vm": "#c0504d"}
    if path.endswith(".png"):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for i, title in enumerate(("host PSS, total (MiB)", "all up after (s)")):
            for kind, values in series.items():
                axes[i].plot(ns, values[i], marker="o", color=colors[kind], label=kind)
            axes[i].set_title(title)
            axes[i].set_xlabel("N instances")
            axes[i].legend()
        fig.tight_layout()
        fig.savefig(path)
        return
    w, h, pad = 420, 300, 55
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * w}" height="{h + 50}" '
             f'font-family="sans-serif" font-size="11">']
    for i, (title, unit) in enumerate((("host PSS, total, against N", "MiB"), ("all up after, against N", "s"))):
        x0 = i * w
        top = max(max(v[i]) for v in series.values()) or 1
        nmax = max(ns)
        sx = lambda n: x0 + pad + (w - pad - 20) * (n / nmax)  # noqa: E731
        sy = lambda v: h - (h - 60) * (v / top)  # noqa: E731
        parts.append(f'<text x="{x0 + pad}" y="20" font-size="13">{title}</text>')
        parts.append(f'<line x1="{x0 + pad}" y1="{h}" x2="{x0 + w - 10}" y2="{h}" stroke="black"/>')
        parts.append(f'<line x1="{x0 + pad}" y1="{h}" x2="{x0 + pad}" y2="40" stroke="black"/>')
        parts.append(f'<text x="{x0 + pad - 5}" y="{sy(top):.1f}" text-anchor="end">{top:.3g} {unit}</text>')
        for n in ns:
            parts.append(f'<text x="{sx(n):.1f}" y="{h + 15}" text-anchor="middle">{n}</text>')
        parts.append(f'<text x="{x0 + w / 2}" y="{h + 32}" text-anchor="middle">N instances</text>')
        for j, (kind, values) in enumerate(series.items()):
            points = " ".join(f"{sx(n):.1f},{sy(v):.1f}" for n, v in zip(ns, values[i]))
            parts.append(f'<polyline points="{points}" fill="none" stroke="{colors[kind]}" stroke-width="2"/>')
            for n, v in zip(ns, values[i]):
                parts.append(f'<circle cx="{sx(n):.1f}" cy="{sy(v):.1f}" r="3" fill="{colors[kind]}"/>')
            parts.append(f'<text x="{x0 + pad + 10}" y="{45 + 14 * j}" fill="{colors[kind]}">{kind}s</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")
