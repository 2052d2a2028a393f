#!/usr/bin/env python3
"""`minicontainer vm run ROOTFS /bin/true`, start to exit, against the best hand-tuned QEMU
command line for the same kernel and initramfs (issue 3's target: within 1.1x).

    .venv/bin/python bench/vm_boot.py [-n RUNS] [ROOTFS]

The hand-tuned line is the product's own machine (microvm, PVH vmlinux, no option ROMs,
fast-boot kernel options) with everything the product adds taken away: no scratch disk, no
NIC, no module loading (mcmods= empty), no KVM probe, no Python. A third line is the
product's own QEMU command (disk, NIC, modules) run directly, which isolates what the Python
side costs. It prints the command lines and the medians; the three alternate so that drift
on the host hits all of them.
"""
from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from minicontainer.vm import launch, qemu  # noqa: E402


def timed(argv) -> float:
    start = time.monotonic()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    elapsed = time.monotonic() - start
    if r.returncode != 0 or (argv[0].endswith("qemu-system-x86_64") and b"MC-EXIT 0" not in r.stdout):
        sys.exit(f"failed: {shlex.join(argv)}\n{r.stderr.decode()[-500:]}")
    return elapsed


def main() -> None:
    args = sys.argv[1:]
    runs = 7
    if args[:1] == ["-n"]:
        runs, args = int(args[1]), args[2:]
    rootfs = os.path.abspath(args[0] if args else "rootfs")
    config = launch.VMConfig(rootfs=rootfs, args=["/bin/true"])
    kernel, image, initrd = launch.prepare(config)

    product = [sys.executable, "-m", "minicontainer", "vm", "run", rootfs, "/bin/true"]
    # Hand-tuned: the fewest devices the guest can run /bin/true with, nothing loaded.
    cmdline = qemu.guest_cmdline(["/bin/true"], devices="virtio", modules=()).replace(" mcdisk=vda", "")
    hand = [qemu.find_qemu(), "-M", "microvm,x-option-roms=off", "-accel", "tcg", "-m", "128",
            "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", image, "-initrd", initrd, "-append", cmdline, "-serial", "stdio"]

    # The product's own QEMU line, run directly: same devices and modules, no Python.
    import tempfile

    tmp = tempfile.mkdtemp(prefix="minicontainer-bench-")
    disk = os.path.join(tmp, "disk.img")
    with open(disk, "wb") as f:
        f.truncate(launch.DISK_MIB << 20)
    same = qemu.qemu_argv(image, initrd, qemu.guest_cmdline(["/bin/true"]), disk=disk,
                          qemu=qemu.find_qemu())
    same[same.index("-chardev"):same.index("-chardev") + 4] = ["-serial", "stdio"]

    timed(product)  # warm the caches (kernel, initramfs, KVM verdict, page cache)
    timed(hand)
    ours, theirs, direct = [], [], []
    try:
        for _ in range(runs):
            ours.append(timed(product))
            theirs.append(timed(hand))
            direct.append(timed(same))
    finally:
        import shutil

        shutil.rmtree(tmp)
    print(f"machine: {os.uname().release}, {os.cpu_count()} CPUs; guest kernel {kernel.version}; {runs} runs each")
    print(f"minicontainer vm run: {shlex.join(product)}")
    print(f"hand-tuned qemu:      {shlex.join(hand)}")
    print(f"product's qemu line:  {shlex.join(same)}")
    mo, mt, md = statistics.median(ours), statistics.median(theirs), statistics.median(direct)
    print(f"median start-to-exit: minicontainer {mo:.3f} s (min {min(ours):.3f}); "
          f"hand-tuned, no devices {mt:.3f} s (min {min(theirs):.3f}): ratio {mo / mt:.2f}x; "
          f"its own qemu line run directly {md:.3f} s (min {min(direct):.3f}): ratio {mo / md:.2f}x")


if __name__ == "__main__":
    main()
