"""The same command as a container and as virtual machines, measured side by side on this
machine: what `minicontainer compare` runs (cli/compare.py parses its flags and prints).
(`--density N`: N of each alive at once instead, in vm/density.py.)

Each variant runs through the real CLI in a child process, N times:
    container            minicontainer run ROOTFS CMD
    vm virtio (TCG|KVM)  minicontainer vm run --devices virtio ...
    vm emulated (...)    minicontainer vm run --devices emulated ...
The start-to-exit time is the child's wall time; CPU time is the child's whole process tree
(os.wait4). Peak RSS is reported per part: the runtime's own process and its workload (the
container's process, or QEMU), read with getrusage in the child (container: a small wrapper
around cli.main; VM: `vm run --stats`).
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from minicontainer.errors import ContainerError
from minicontainer.runtime import api

IO_MIB = 32

# Runs the container through cli.main and reports the peak RSS of the runtime (this process)
# and of its workload (the largest waited-for child: the container's process) on the fd
# given as its first argument.
CONTAINER_WRAPPER = """\
import os, resource, sys
from minicontainer.cli import main
code = main(sys.argv[2:])
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
os.write(int(sys.argv[1]), b"%d %d" % (me.ru_maxrss, kids.ru_maxrss))
sys.stdout.flush()
os._exit(code)
"""


def measure(rootfs: str, command: list[str], runs: int = 10, io: bool = False,
            devices=("virtio", "emulated"), memory: str | None = None, cpus: str | None = None,
            kernel: str | None = None) -> dict:
    """Run `command` `runs` times as a container and as VMs (each device model in `devices`;
    TCG, and KVM where it works); the report (`table` prints it, `draw` plots it).
    io: also a disk write and a download from the host's loopback in each. memory, cpus,
    kernel: the guests' (as `vm run` takes them)."""
    from minicontainer.vm import accel as accels, launch

    vm_flags = []
    if memory is not None:
        vm_flags += ["-m", memory]
        launch.parse_memory(memory)
    if cpus is not None:
        vm_flags += ["--cpus", cpus]
    if kernel is not None:
        vm_flags += ["--kernel", kernel]
    config = launch.VMConfig(rootfs=rootfs, args=command, kernel=kernel)
    for d in devices:
        config.devices = d
        qemu_path = launch.check(config)
    # Fetch and pack before any timing, so no run pays for the cache.
    guest, image, initrd = launch.prepare(config, progress=_progress_bar())
    accel = accels.detect_accel(qemu_path, image)
    accel_names = ["tcg"] + (["kvm"] if accel.name == "kvm" else [])
    if accel.note:
        _say(f"compare: {accel.note}; VMs run under TCG only")

    state = scratch_state()
    try:
        variants = [_container(rootfs, command, runs, state, io)]
        for d in devices:
            for a in accel_names:
                variants.append(_vm(rootfs, command, runs, d, a, vm_flags, state, io,
                                    footprint=os.path.getsize(image) + os.path.getsize(initrd)))
    finally:
        shutil.rmtree(state, ignore_errors=True)
    _progress("")
    return {"machine": _machine(), "rootfs": rootfs, "command": command, "runs": runs,
            "guest_kernel": {"version": guest.version, "image": image, "initramfs": initrd},
            "accel_note": accel.note, "variants": variants}


def scratch_state() -> str:
    """A state root of its own for the measured runs (under /run where there is one),
    removed by the caller."""
    return tempfile.mkdtemp(prefix="minicontainer-compare-",
                            dir="/run" if os.path.isdir("/run") else None)


# --- running the variants --------------------------------------------------------------------

def _timed(argv, env=None, stdin=subprocess.DEVNULL, pass_fds=()):
    """Run ARGV; return (wall seconds, exit status, CPU seconds of its tree, stdout)."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, pass_fds=pass_fds)
    try:
        out, err = proc.stdout.read(), proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    proc.stderr.close()
    return wall, proc.returncode, usage.ru_utime + usage.ru_stime, out, err


def _container(rootfs, command, runs, state, io) -> dict:
    base = [sys.executable, "-c", CONTAINER_WRAPPER, "-1", "--root", state, "run"]
    results = []
    for i in range(runs):
        _progress(f"container: run {i + 1}/{runs}")
        r, w = os.pipe()
        argv = base[:3] + [str(w)] + base[4:]
        try:
            wall, status, cpu, _out, err = _timed(argv + [rootfs, *command], pass_fds=(w,))
        finally:
            os.close(w)
        figures = os.read(r, 100).split()
        os.close(r)
        runtime_rss, workload_rss = (int(x) for x in figures) if len(figures) == 2 else (None, None)
        _check_status(status, err, "container")
        results.append({"wall_s": wall, "cpu_s": cpu, "exit_status": status,
                        "runtime_maxrss_kib": runtime_rss, "workload_maxrss_kib": workload_rss,
                        "guest_used_kib": None})
    plain = [sys.executable, "-m", "minicontainer", "--root", state, "run"]
    sees = _container_sees(plain, rootfs)
    footprint = _upper_layer_bytes(plain, rootfs, command, state)
    variant = _summary("container", "container", None, None, results, sees, footprint,
                       footprint_what="overlay upper layer after the command")
    if io:
        variant["io"] = _container_io(plain, rootfs)
    return variant


def _check_status(status, err, what):
    if status == 125:
        raise ContainerError(f"{what} failed: {err.decode(errors='replace').strip().splitlines()[-1:]}")


def _container_sees(base, rootfs) -> str | None:
    """`uname -r` inside the container (the host's kernel, by construction)."""
    _w, status, _c, out, _e = _timed(base + [rootfs, "uname", "-r"])
    return out.decode().strip() if status == 0 else None


def _upper_layer_bytes(base, rootfs, command, state) -> int | None:
    """What the container wrote: its overlay upper layer, measured while it waits after the
    command (the layer is removed when it exits). Needs /bin/sh in the rootfs."""
    script = '"$@"; echo __minicontainer_done__; read _'
    proc = subprocess.Popen(base + ["-i", rootfs, "/bin/sh", "-c", script, "sh", *command],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        for line in proc.stdout:
            if line.strip() == b"__minicontainer_done__":
                total = 0
                for upper in api.upper_dirs(state):
                    for top, dirs, files in os.walk(upper):
                        for n in files + dirs:
                            total += os.lstat(os.path.join(top, n)).st_size
                return total
        return None
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()


def _vm(rootfs, command, runs, devices, accel, vm_flags, state, io, footprint) -> dict:
    stats = os.path.join(state, "vm-stats.json")
    base = [sys.executable, "-m", "minicontainer", "vm", "run", "--devices", devices,
            "--accel", accel, "--stats", stats, *vm_flags]
    name = f"vm {devices} ({accel.upper()})"
    results = []
    sees = None
    for i in range(runs):
        _progress(f"{name}: booting {i + 1}/{runs}")
        wall, status, cpu, _out, err = _timed(base + [rootfs, *command])
        _check_status(status, err, name)
        with open(stats) as f:
            s = json.load(f)
        sees = s["guest_release"]
        results.append({"wall_s": wall, "cpu_s": cpu, "exit_status": status,
                        "runtime_maxrss_kib": s["runtime_maxrss_kib"],
                        "workload_maxrss_kib": s["qemu_maxrss_kib"],
                        "guest_used_kib": s["guest_mem_kib"]})
    variant = _summary(name, "vm", devices, accel, results, sees, footprint,
                       footprint_what="kernel image + initramfs")
    if io and devices != "none":  # no disk, no NIC: nothing to measure
        variant["io"] = _vm_io(base, rootfs, devices)
    return variant


def _summary(name, kind, devices, accel, results, sees, footprint, footprint_what) -> dict:
    walls = [r["wall_s"] for r in results]
    rss = [r["runtime_maxrss_kib"] + r["workload_maxrss_kib"] for r in results
           if r["runtime_maxrss_kib"] is not None]
    used = [r["guest_used_kib"] for r in results if r["guest_used_kib"] is not None]
    return {
        "name": name, "kind": kind, "devices": devices, "accel": accel,
        "wall_median_s": statistics.median(walls), "wall_min_s": min(walls), "wall_max_s": max(walls),
        "cpu_median_s": statistics.median(r["cpu_s"] for r in results),
        "host_peak_rss_median_kib": statistics.median(rss) if rss else None,
        "runtime_maxrss_median_kib": statistics.median(r["runtime_maxrss_kib"] for r in results),
        "workload_maxrss_median_kib": statistics.median(r["workload_maxrss_kib"] for r in results),
        "guest_used_median_kib": statistics.median(used) if used else None,
        "kernel_seen": sees,
        "disk_footprint_bytes": footprint, "disk_footprint_what": footprint_what,
        "io": None,
        "runs": results,
    }


# --- --io: a disk write and a download from the host's loopback ------------------------------

def _io_script(target: str, url: str) -> str:
    """Timed with busybox's `time` applet (10 ms resolution; Debian's busybox dd prints no
    timing of its own)."""
    disk = f"dd if=/dev/zero of={target} bs=1M count={IO_MIB} conv=fsync 2>/dev/null"
    net = f"wget -q -O - {url} | dd of=/dev/null bs=64k 2>/dev/null"
    return f"time sh -c '{disk}' 2>&1; time sh -c '{net}' 2>&1; rm -f /tmp/mc-io"


def _parse_io(out: bytes) -> dict:
    """Two 'real\t0m 0.05s' lines: the write, then the download."""
    result = {"disk_write_s": None, "net_download_s": None, "bytes": IO_MIB << 20}
    lines = [ln.split(None, 1)[1] for ln in out.decode(errors="replace").splitlines()
             if ln.startswith("real") and len(ln.split(None, 1)) == 2]
    for key, text in zip(("disk_write_s", "net_download_s"), lines):
        try:
            minutes, seconds = text.replace("m", " ").replace("s", " ").split()
            result[key] = int(minutes) * 60 + float(seconds)
        except ValueError:
            pass
    return result


class _BlobServer:
    """HTTP on 127.0.0.1 only, serving IO_MIB MiB of zeros to whoever asks."""

    def __enter__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(IO_MIB << 20))
                self.end_headers()
                block = b"\0" * (1 << 20)
                for _ in range(IO_MIB):
                    self.wfile.write(block)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _container_io(base, rootfs) -> dict:
    _progress("container: --io")
    with _BlobServer() as srv:
        _w, status, _c, out, err = _timed(base + ["--network", "host", rootfs, "/bin/sh", "-c",
                                                  _io_script("/tmp/mc-io", f"http://127.0.0.1:{srv.port}/")])
    return _parse_io(out)


def _vm_io(base, rootfs, devices) -> dict:
    from minicontainer.vm.qemu import DEVICES

    disk = "/dev/" + DEVICES[devices][2]
    _progress(f"vm {devices}: --io")
    with _BlobServer() as srv:
        _w, status, _c, out, err = _timed(
            base + ["--guestfwd", f"80:{srv.port}", rootfs, "/bin/sh", "-c",
                    _io_script(disk, "http://10.0.2.100/")])
    return _parse_io(out)


# --- output ----------------------------------------------------------------------------------

def _machine() -> dict:
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) >> 10
    except (OSError, ValueError):
        mem = None
    return {"kernel": os.uname().release, "cpus": os.cpu_count(), "cpu_model": model, "memory_mib": mem}


def _t(seconds):
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _m(kib):
    return "-" if kib is None else f"{kib / 1024:.1f} MiB"


def _b(n):
    if n is None:
        return "-"
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


def table(report: dict) -> str:
    vs = report["variants"]
    m = report["machine"]
    rows = [
        ("start-to-exit (median)", [_t(v["wall_median_s"]) for v in vs]),
        ("  min - max", [f"{_t(v['wall_min_s'])} - {_t(v['wall_max_s'])}" for v in vs]),
        ("CPU time (median)", [_t(v["cpu_median_s"]) for v in vs]),
        ("host peak RSS", [_m(v["host_peak_rss_median_kib"]) for v in vs]),
        ("  runtime + workload", [f"{_m(v['runtime_maxrss_median_kib'])} + {_m(v['workload_maxrss_median_kib'])}" for v in vs]),
        ("guest reports using", [_m(v["guest_used_median_kib"]) if v["kind"] == "vm" else "(no guest)" for v in vs]),
        ("kernel seen (uname -r)", [v["kernel_seen"] or "-" for v in vs]),
        ("disk footprint", [_b(v["disk_footprint_bytes"]) for v in vs]),
        ("  of what", ["upper layer" if v["kind"] == "container" else "kernel+initramfs" for v in vs]),
    ]
    if any(v["io"] for v in vs):
        rows.append((f"write {IO_MIB} MiB + fsync", [_t(v["io"]["disk_write_s"]) if v["io"] and v["io"]["disk_write_s"] else "-" for v in vs]))
        rows.append((f"download {IO_MIB} MiB (lo)", [_t(v["io"]["net_download_s"]) if v["io"] and v["io"]["net_download_s"] else "-" for v in vs]))
    head = ("", [v["name"] for v in vs])
    width0 = max(len(r[0]) for r in rows + [head])
    widths = [max(len(r[1][i]) for r in rows + [head]) for i in range(len(vs))]
    lines = [f"{' '.join(report['command'])} in {report['rootfs']}, {report['runs']} runs each; "
             f"host kernel {m['kernel']}, {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_mib']} MiB"]
    if report.get("accel_note"):
        lines.append(f"VMs under TCG: {report['accel_note']}")
    for label, cells in [head] + rows:
        lines.append(label.ljust(width0) + "  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
    return "\n".join(lines) + "\n"


def draw(report: dict, path: str) -> None:
    """Two bar charts: start-to-exit (log scale: milliseconds vs seconds) and host peak RSS."""
    vs = report["variants"]
    names = [v["name"] for v in vs]
    walls = [v["wall_median_s"] for v in vs]
    rss = [(v["host_peak_rss_median_kib"] or 0) / 1024 for v in vs]
    if path.endswith(".png"):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
        a.bar(names, walls)
        a.set_yscale("log")
        a.set_title("start-to-exit, median (s, log)")
        b.bar(names, rss)
        b.set_title("host peak RSS (MiB)")
        for ax in (a, b):
            ax.tick_params(axis="x", rotation=20)
        fig.tight_layout()
        fig.savefig(path)
        return
    import math

    w, h, pad, bar_w = 420, 300, 50, 60
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * w}" height="{h + 60}" font-family="sans-serif" font-size="11">']

    def panel(x0, title, values, scale, label):
        parts.append(f'<text x="{x0 + pad}" y="20" font-size="13">{title}</text>')
        parts.append(f'<line x1="{x0 + pad}" y1="{h}" x2="{x0 + w - 10}" y2="{h}" stroke="black"/>')
        for i, (n, v) in enumerate(zip(names, values)):
            bh = scale(v)
            x = x0 + pad + i * (bar_w + 20)
            parts.append(f'<rect x="{x}" y="{h - bh:.1f}" width="{bar_w}" height="{bh:.1f}" fill="#4a7ab5"/>')
            parts.append(f'<text x="{x + bar_w / 2}" y="{h - bh - 4:.1f}" text-anchor="middle">{label(v)}</text>')
            parts.append(f'<text x="{x + bar_w / 2}" y="{h + 15}" text-anchor="middle">{n.split(" (")[0]}</text>')
            if "(" in n:
                parts.append(f'<text x="{x + bar_w / 2}" y="{h + 28}" text-anchor="middle">({n.split(" (")[1]}</text>')

    lo = min(walls + [0.001])
    top = max(walls)
    span = math.log10(top / lo) or 1
    panel(0, "start-to-exit, median (log scale)", walls,
          lambda v: 20 + (h - 70) * math.log10(v / lo) / span, _t)
    big = max(rss) or 1
    panel(w, "host peak RSS, median", rss, lambda v: (h - 50) * v / big, lambda v: f"{v:.0f} MiB")
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


# --- progress ----------------------------------------------------------------------------------

def _progress(text: str) -> None:
    """One self-overwriting status line on a terminal; nothing otherwise."""
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\033[K{text}")
        sys.stderr.flush()


def _progress_bar():
    from minicontainer.vm.kernel import progress_bar

    return progress_bar("minicontainer: downloading the guest kernel")


def _say(message: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
    sys.stderr.write(f"minicontainer: {message}\n")
