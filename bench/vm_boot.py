#!/usr/bin/env python3
"""`minicontainer vm run ROOTFS /bin/true`, start to exit, against the best hand-tuned QEMU
command line for the same kernel and initramfs (issue 3's target: within 1.1x).

    .venv/bin/python bench/vm_boot.py [-n RUNS] [--devices none|virtio|emulated] [ROOTFS]

Three command lines, run in turn RUNS times (interleaved, so drift on the host hits all):
  product     `python -m minicontainer vm run --devices D ROOTFS /bin/true`: the whole CLI
              (interpreter start, imports, cache checks, KVM verdict, scratch disk, relay)
  hand-tuned  the fewest QEMU options that boot the same kernel + initramfs with the same
              devices D and run /bin/true: microvm/pc, PVH vmlinux, no option ROMs, one serial
              port (stdio), the product's fast-boot kernel options, for D=none no modules
              loaded; no second serial port for stderr, no Python
  own line    the product's own QEMU argv (as launch.run_vm builds it, second serial port
              included) run directly: the difference to `product` is what the Python side costs
It prints the command lines, the load average, medians and both ratios, each as a ratio of
medians and as the median of the per-round ratios (rounds are adjacent in time, so the
second is less sensitive to other load on the host):
  product / hand-tuned   (the issue's target)
  product / own line     (the Python side's cost)
"""
from __future__ import annotations

import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from minicontainer.vm import launch, qemu  # noqa: E402


def timed(argv, pass_fds=()) -> float:
    start = time.monotonic()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       pass_fds=pass_fds)
    elapsed = time.monotonic() - start
    if r.returncode != 0 or (argv[0].endswith("qemu-system-x86_64") and b"MC-EXIT 0" not in r.stdout):
        sys.exit(f"failed: {shlex.join(argv)}\n{r.stderr.decode()[-500:]}")
    return elapsed


def main() -> None:
    args = sys.argv[1:]
    runs, devices = 7, "none"
    while args[:1] and args[0].startswith("-"):
        if args[0] == "-n":
            runs, args = int(args[1]), args[2:]
        elif args[0] == "--devices":
            devices, args = args[1], args[2:]
        else:
            sys.exit(__doc__)
    rootfs = os.path.abspath(args[0] if args else "rootfs")
    config = launch.VMConfig(rootfs=rootfs, args=["/bin/true"], devices=devices)
    qemu_path = launch.check(config)
    kernel, image, initrd = launch.prepare(config)
    machine, _console, disk_name, groups, _opts = qemu.DEVICES[devices]

    product = [sys.executable, "-m", "minicontainer", "vm", "run", "--devices", devices, rootfs, "/bin/true"]

    tmp = tempfile.mkdtemp(prefix="minicontainer-bench-")
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        disk = None
        if disk_name:
            disk = os.path.join(tmp, "disk.img")
            with open(disk, "wb") as f:
                f.truncate(launch.DISK_MIB << 20)
        # Hand-tuned: one serial port, nr_uarts=1, the devices D and nothing else.
        cmdline = qemu.guest_cmdline(["/bin/true"], devices=devices).replace(
            "8250.nr_uarts=2", "8250.nr_uarts=1")
        hand = [qemu_path, "-M", machine, "-accel", "tcg", "-m", "128", "-smp", "1",
                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-kernel", image, "-initrd", initrd, "-append", cmdline, "-serial", "stdio"]
        if devices == "virtio":
            hand += ["-drive", f"file={disk},format=raw,if=none,id=disk0,cache=unsafe",
                     "-device", "virtio-blk-device,drive=disk0",
                     "-netdev", "user,id=net0,restrict=on", "-device", "virtio-net-device,netdev=net0"]
        elif devices == "emulated":
            hand += ["-vga", "none", "-drive", f"file={disk},format=raw,if=none,id=disk0,cache=unsafe",
                     "-device", "ide-hd,drive=disk0,bus=ide.0",
                     "-netdev", "user,id=net0,restrict=on", "-device", "e1000,netdev=net0,romfile="]
        # The product's own argv, as launch.run_vm builds it (stderr port -> /dev/null).
        own = qemu.qemu_argv(image, initrd, qemu.guest_cmdline(["/bin/true"], devices=devices,
                                                               err_console=True),
                             devices=devices, disk=disk, err_fd=devnull, qemu=qemu_path)

        timed(product)  # warm the caches (kernel, initramfs, KVM verdict, page cache)
        timed(hand)
        timed(own, pass_fds=(devnull,))
        load_before = os.getloadavg()
        ours, theirs, direct = [], [], []
        for _ in range(runs):
            ours.append(timed(product))
            theirs.append(timed(hand))
            direct.append(timed(own, pass_fds=(devnull,)))
        load_after = os.getloadavg()
    finally:
        os.close(devnull)
        shutil.rmtree(tmp)
    print(f"machine: {os.uname().release}, {os.cpu_count()} CPUs; guest kernel {kernel.version}; "
          f"devices {devices}; TCG; {runs} runs each, interleaved; load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"product:    {shlex.join(product)}")
    print(f"hand-tuned: {shlex.join(hand)}")
    print(f"own line:   {shlex.join(own)}")
    mo, mt, md = statistics.median(ours), statistics.median(theirs), statistics.median(direct)
    print(f"medians (min): product {mo:.3f} s ({min(ours):.3f}); hand-tuned {mt:.3f} s "
          f"({min(theirs):.3f}); own line {md:.3f} s ({min(direct):.3f})")
    for label, samples in (("product", ours), ("hand-tuned", theirs), ("own line", direct)):
        print(f"  {label + ':':12} " + " ".join(f"{x:.3f}" for x in samples))
    paired_t = statistics.median(o / t for o, t in zip(ours, theirs))
    paired_d = statistics.median(o / d for o, d in zip(ours, direct))
    print(f"product / hand-tuned, same devices ({devices}): {mo / mt:.3f}x of medians, "
          f"{paired_t:.3f}x median of per-round ratios (target <= 1.1x)")
    print(f"product / its own qemu line run directly: {mo / md:.3f}x of medians, "
          f"{paired_d:.3f}x median of per-round ratios (the Python side)")


if __name__ == "__main__":
    main()
