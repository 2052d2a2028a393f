"""`minicontainer vm run`: real boots of the busybox rootfs under QEMU (TCG here, ~3 s each).

Every test gives the CLI a private TMPDIR and checks afterwards that it is empty and that no
QEMU process mentions it: nothing is left behind after success, failure or Ctrl-C.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from conftest import PYTHON, REPO

pytestmark = pytest.mark.skipif(
    subprocess.run(["which", "qemu-system-x86_64"], capture_output=True).returncode != 0,
    reason="qemu-system-x86_64 is not installed")


def qemu_processes(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            if b"qemu-system" in cmdline and marker.encode() in cmdline:
                found.append(int(pid))
    return found


@pytest.fixture
def vm(tmp_path, rootfs):
    """vm(*args, env=...) runs `minicontainer vm run ARGS` with a private TMPDIR."""
    private = tmp_path / "tmp"
    private.mkdir()

    def call(*args, env=None, timeout=120, **kwargs):
        environ = dict(os.environ, TMPDIR=str(private), **(env or {}))
        kwargs.setdefault("capture_output", True)
        if "input" not in kwargs:
            kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run([PYTHON, "-m", "minicontainer", "vm", "run", *args], env=environ,
                              timeout=timeout, text=True, cwd=REPO, **kwargs)

    call.tmpdir = str(private)
    yield call
    assert os.listdir(private) == [], "temporary files left behind"
    assert qemu_processes(str(private)) == [], "qemu left running"


def test_output_and_exit_status(vm, rootfs):
    r = vm(rootfs, "sh", "-c", "echo out; echo err >&2; uname -r; exit 3")
    assert r.returncode == 3, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["out", "err"]  # one console: stderr arrives on stdout
    assert lines[2] != os.uname().release  # the guest's own kernel
    # The status line names the accelerator (always) and the machine.
    assert "minicontainer: vm: " in r.stderr and ("TCG" in r.stderr or "KVM" in r.stderr)
    assert "microvm" in r.stderr


def test_virtio_devices_use_virtio_drivers(vm, rootfs):
    script = ("basename $(readlink /sys/block/vda/device/driver); "
              "basename $(readlink /sys/class/net/eth0/device/driver); "
              "dd if=/dev/zero of=/dev/vda bs=64k count=16 conv=fsync 2>/dev/null; "
              "grep -c virtio /proc/interrupts; ls /sys/bus/pci/devices 2>/dev/null | wc -l")
    r = vm("--devices", "virtio", rootfs, "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    blk, net, virtio_irqs, pci_devices = r.stdout.split()
    assert (blk, net) == ("virtio_blk", "virtio_net")
    assert int(virtio_irqs) >= 2
    assert pci_devices == "0"  # microvm: no PCI bus at all


def test_emulated_devices_use_real_hardware_drivers(vm, rootfs):
    script = ("basename $(readlink /sys/block/sda/device/driver); "
              "basename $(readlink /sys/class/net/eth0/device/driver); "
              "readlink -f /sys/block/sda | grep -o ata[0-9]; "
              "for d in /sys/bus/pci/devices/*; do [ -e $d/driver ] && basename $(readlink $d/driver); done | grep -x ata_piix; "
              "ls /sys/bus/virtio/devices 2>/dev/null | wc -l")
    r = vm("--devices", "emulated", "-m", "160m", rootfs, "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    disk, net, ata, piix, virtio_devices = r.stdout.split()
    assert (disk, net, piix) == ("sd", "e1000", "ata_piix")
    assert ata.startswith("ata")
    assert virtio_devices == "0"
    assert "pc + " in r.stderr and "160 MiB" in r.stderr


def test_flags_shared_with_run(vm, rootfs):
    """-e, -w, -h, -i mean what they mean for `minicontainer run`."""
    r = vm("-e", "GREETING=hello world", "-w", "/tmp/work", "-h", "guest1", "-i", rootfs,
           "sh", "-c", 'echo "$GREETING|$(pwd)|$(hostname)"; cat', input="from stdin\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello world|/tmp/work|guest1\nfrom stdin\n"


def one_error_line(r) -> str:
    assert r.returncode == 125, (r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("minicontainer: ")
    return lines[0]


@pytest.mark.parametrize("memory", ["12x", "1m", "999999g", "-5"])
def test_bad_memory_size(vm, rootfs, memory):
    assert "memory" in one_error_line(vm("-m", memory, rootfs, "true"))


def test_command_not_in_rootfs(vm, rootfs):
    assert "nosuchcommand: command not found in rootfs" in one_error_line(vm(rootfs, "nosuchcommand"))


def test_qemu_missing(vm, rootfs, tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    assert "qemu-system-x86_64 not found" in one_error_line(vm(rootfs, "true", env={"PATH": str(empty)}))


def test_no_kernel_to_be_found(vm, rootfs, tmp_path):
    if os.access(f"/boot/vmlinuz-{os.uname().release}", os.R_OK):
        pytest.skip("this host's own kernel is readable: there is always a kernel")
    # qemu is there, but the cache is empty and neither apt-cache nor apt-get can be run.
    only_qemu = tmp_path / "bin"
    only_qemu.mkdir()
    os.symlink(subprocess.run(["which", "qemu-system-x86_64"], capture_output=True, text=True).stdout.strip(),
               only_qemu / "qemu-system-x86_64")
    r = vm(rootfs, "true", env={"PATH": str(only_qemu), "MINICONTAINER_CACHE": str(tmp_path / "cache")})
    assert "no guest kernel" in one_error_line(r)
    assert "--kernel" in r.stderr


def test_explicit_kernel_missing(vm, rootfs):
    assert "no such file" in one_error_line(vm("--kernel", "/nonexistent/vmlinuz", rootfs, "true"))


def test_guest_failure_is_one_line(vm, rootfs):
    """A guest that cannot boot (the kernel given is not one) fails with one line too."""
    r = vm("--kernel", "/etc/hostname", rootfs, "true")
    assert "not a Linux kernel image" in one_error_line(r)


def test_ctrl_c_stops_qemu_and_cleans_up(vm, rootfs):
    environ = dict(os.environ, TMPDIR=vm.tmpdir)
    proc = subprocess.Popen([PYTHON, "-m", "minicontainer", "vm", "run", rootfs, "sleep", "60"],
                            env=environ, cwd=REPO, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not qemu_processes(vm.tmpdir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert qemu_processes(vm.tmpdir), "qemu never started"
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    # the fixture checks that qemu and the scratch disk are gone
