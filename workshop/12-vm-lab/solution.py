"""Level 12: the same rootfs as a virtual machine. Run as root from the repository:
    .venv/bin/python workshop/12-vm-lab/solution.py [ROOTFS]
Three guests boot under QEMU (a few seconds each under TCG): no devices, emulated devices,
virtio devices. No new code of yours: the exercise is reading, and `compare`.
"""
import os
import subprocess
import sys

sys.stdout.reconfigure(line_buffering=True)
ROOTFS = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "rootfs")
MC = [sys.executable, "-m", "minicontainer"]
# Which driver the guest kernel bound to its disk and its NIC.
DRIVERS = ("for d in /sys/block/[sv]da /sys/class/net/eth0; do "
           "basename $(readlink $d/device/driver); done")


def output(*args: str) -> str:
    done = subprocess.run(MC + list(args), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip()


host = os.uname().release
# >>> exercise: the kernel a container sees, and the one a VM sees (minicontainer run / vm run: uname -r)
container = output("run", ROOTFS, "uname", "-r")
vm = output("vm", "run", ROOTFS, "uname", "-r")
# <<< exercise
print(f"container: sees the host's kernel: {container == host}")
print(f"vm: sees the host's kernel: {vm == host}; its own: {vm != ''}")
for devices in ("emulated", "virtio"):
    # >>> exercise: the drivers a guest binds with --devices emulated and --devices virtio
    drivers = output("vm", "run", "--devices", devices, ROOTFS, "sh", "-c", DRIVERS).split()
    # <<< exercise
    print(f"vm --devices {devices}: disk driver {drivers[0]}, NIC driver {drivers[1]}")
