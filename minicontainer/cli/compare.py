"""`minicontainer compare [OPTIONS] ROOTFS -- COMMAND [ARG...]`: the same command as a
container and as virtual machines, measured side by side (vm/compare.py), or with
`--density N`, N of each alive at once (vm/density.py). This verb parses, checks the
flags, calls one of the two and prints its report.
"""
from __future__ import annotations

import os
import sys

from minicontainer.cli.flags import parse
from minicontainer.errors import UsageError

HELP = """\
Usage: minicontainer compare [OPTIONS] ROOTFS -- COMMAND [ARG...]

Run COMMAND N times as a container and as virtual machines (virtio and emulated devices;
TCG, and KVM where it works) and print what each cost: start-to-exit time, host memory,
CPU time, the kernel each sees, disk footprint.

Options:
  -n, --runs N          runs per variant (default 10)
      --io              also a 32 MiB disk write and a 32 MiB download from the host's
                        loopback inside each (needs sh, time, dd, wget in ROOTFS)
      --json FILE       write every raw figure as JSON
      --plot FILE       draw the figures (FILE.svg; FILE.png needs matplotlib)
  -m, --memory SIZE     guest memory (default 128m)
      --cpus N          guest CPUs (default 1)
      --kernel PATH     the guest kernel (see 'minicontainer vm run --help')
      --devices LIST    VM device models to include (default virtio,emulated; none is
                        what `vm run` boots by default: no disk, no NIC, so no --io)
      --density N       instead: N containers and N VMs alive at once (COMMAND should
                        last, e.g. sleep 600), at N = 1, N/2, N: time until all are up,
                        host memory (PSS, RSS) in total and per instance; refuses if N
                        VMs do not fit in the memory available. With --json, --plot
                        (cost against N), -m, --cpus, --kernel, --devices (one model,
                        default none)
"""

FLAGS = {
    "-n": ("runs", True), "--runs": ("runs", True),
    "--io": ("io", False),
    "--json": ("json", True), "--plot": ("plot", True),
    "-m": ("memory", True), "--memory": ("memory", True),
    "--cpus": ("cpus", True), "--kernel": ("kernel", True),
    "--devices": ("devices", True),
    "--density": ("density", True),
    "--help": ("help", False), "-h": ("help", False),
}


def parse_args(args: list[str]) -> tuple[dict, str | None, list[str]]:
    """(options, rootfs, command) of `compare [OPTIONS] ROOTFS [OPTIONS] -- COMMAND...`:
    options may also come between ROOTFS and `--`; after `--` everything is the command."""
    opts, positionals = parse(args, FLAGS, repeatable=())
    if opts.get("help"):
        return opts, None, []
    if "--" in positionals:  # parse() stopped at ROOTFS: options may follow it up to --
        i = positionals.index("--")
        more, stray = parse(positionals[1:i], FLAGS, repeatable=())
        if stray:
            raise UsageError(f"compare: {stray[0]!r} between ROOTFS and --: the command goes "
                             "after --: minicontainer compare [OPTIONS] ROOTFS -- COMMAND [ARG...]")
        opts.update(more)
        positionals = positionals[:1] + positionals[i + 1:]
    elif len(positionals) > 1 and positionals[1].startswith("-"):
        raise UsageError(f"compare: {positionals[1]!r} after ROOTFS: options go before ROOTFS "
                         "or between ROOTFS and --: minicontainer compare [OPTIONS] ROOTFS -- "
                         "COMMAND [ARG...]")
    if len(positionals) < 2:
        raise UsageError('"compare" needs a rootfs and a command: minicontainer compare ROOTFS -- COMMAND [ARG...]')
    return opts, os.path.abspath(positionals[0]), positionals[1:]


def main(args: list[str], root: str | None) -> int:
    opts, rootfs, command = parse_args(args)
    if opts.get("help"):
        sys.stdout.write(HELP)
        return 0
    plot = opts.get("plot")
    if plot and not plot.endswith((".svg", ".png")):
        raise UsageError(f"--plot {plot}: the file name must end in .svg or .png")
    if plot and plot.endswith(".png"):
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError("--plot FILE.png needs matplotlib (pip install matplotlib); FILE.svg does not")
    guest = {"memory": opts.get("memory"), "cpus": opts.get("cpus"), "kernel": opts.get("kernel")}
    if "density" in opts:
        n = _positive(opts["density"], "--density")
        for flag in ("runs", "io"):
            if flag in opts:
                raise UsageError(f"--{flag} does not apply to --density")
        devices = opts.get("devices", "none")
        if "," in devices:
            raise UsageError(f"--density runs one device model: --devices {devices!r}")
        from minicontainer.vm import density as measured

        report = measured.measure(rootfs, command, n, devices, **guest)
    else:
        runs = _positive(opts.get("runs", "10"), "--runs")
        from minicontainer.vm import compare as measured

        report = measured.measure(rootfs, command, runs, bool(opts.get("io")),
                                  opts.get("devices", "virtio,emulated").split(","), **guest)
    sys.stdout.write(measured.table(report))
    if "json" in opts:
        import json

        with open(opts["json"], "w") as f:
            json.dump(report, f, indent=2)
    if plot:
        measured.draw(report, plot)
    return 0


def _positive(text, flag) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise UsageError(f"{flag} {text!r}: want a positive number")
    return value
