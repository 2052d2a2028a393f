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
        kwargs.setdefault("text", True)
        if "input" not in kwargs:
            kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run([PYTHON, "-m", "minicontainer", "vm", "run", *args], env=environ,
                              timeout=timeout, cwd=REPO, **kwargs)

    call.tmpdir = str(private)
    yield call
    assert os.listdir(private) == [], "temporary files left behind"
    assert qemu_processes(str(private)) == [], "qemu left running"


def test_output_and_exit_status(vm, rootfs):
    r = vm(rootfs, "sh", "-c", "echo out; echo err >&2; uname -r; exit 3")
    assert r.returncode == 3, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "out" and len(lines) == 2  # stderr does not arrive on stdout
    assert lines[1] != os.uname().release  # the guest's own kernel
    # stderr has its own channel (the guest's ttyS1): the status line, then the command's.
    status, err = r.stderr.splitlines()
    assert err == "err"
    # The status line names the accelerator (always), the machine and the devices: none
    # by default, as `run` defaults to --network none.
    assert status.startswith("minicontainer: vm: ") and ("TCG" in status or "KVM" in status)
    assert "microvm" in status and "no devices" in status


def test_stdout_and_stderr_apart_and_intact(vm, rootfs):
    """Much of both at once, byte for byte, each on its own stream (`2>/dev/null` works)."""
    script = ('i=0; while [ $i -lt 1500 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done; '
              'printf "cr lf\\r\\nlone cr\\r, no newline at the end\\r" >&2')
    r = vm(rootfs, "sh", "-c", script, text=False)
    assert r.returncode == 0, r.stderr[-500:]
    r.stdout, r.stderr = r.stdout.decode(), r.stderr.decode()  # text=True would turn \r into \n
    assert r.stdout == "".join(f"out {i}\n" for i in range(1500))
    guest_err = r.stderr.split("\n", 1)[1]  # after the status line
    # byte for byte: the \r\n the guest's tty makes of each \n is undone, the command's own \r stay
    assert guest_err == "".join(f"err {i}\n" for i in range(1500)) + "cr lf\r\nlone cr\r, no newline at the end\r"
    quiet = vm(rootfs, "sh", "-c", "echo visible; echo hidden >&2", stderr=subprocess.DEVNULL,
               capture_output=False, stdout=subprocess.PIPE)
    assert quiet.returncode == 0 and quiet.stdout == "visible\n"


def test_default_has_no_disk_and_no_nic(vm, rootfs):
    r = vm(rootfs, "sh", "-c", "ls /sys/block; ls /sys/class/net; ls /sys/bus/virtio/devices 2>/dev/null | wc -l")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["lo", "0"]  # no block device, only loopback, no virtio device


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


def test_guestfwd_needs_a_nic(vm, rootfs):
    assert "--guestfwd needs a NIC" in one_error_line(vm("--guestfwd", "80:8080", rootfs, "true"))


def test_explicit_kernel_missing(vm, rootfs):
    assert "no such file" in one_error_line(vm("--kernel", "/nonexistent/vmlinuz", rootfs, "true"))


def test_guest_failure_is_one_line(vm, rootfs):
    """A guest that cannot boot (the kernel given is not one) fails with one line too."""
    r = vm("--kernel", "/etc/hostname", rootfs, "true")
    assert "not a Linux kernel image" in one_error_line(r)


def test_ctrl_c_stops_qemu_and_cleans_up(vm, rootfs):
    environ = dict(os.environ, TMPDIR=vm.tmpdir)
    proc = subprocess.Popen([PYTHON, "-m", "minicontainer", "vm", "run", "--devices", "virtio",
                             rootfs, "sleep", "60"],
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


def test_sigkill_mid_boot_leaves_nothing_after_gc(vm, rootfs):
    """SIGKILL cannot be caught: QEMU dies with the CLI (PR_SET_PDEATHSIG), and the scratch
    dir it leaves is named after its dead owner, so `minicontainer gc` removes it."""
    environ = dict(os.environ, TMPDIR=vm.tmpdir)
    proc = subprocess.Popen([PYTHON, "-m", "minicontainer", "vm", "run", "--devices", "virtio",
                             rootfs, "sleep", "60"], env=environ, cwd=REPO,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not qemu_processes(vm.tmpdir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert qemu_processes(vm.tmpdir), "qemu never started"
    time.sleep(0.3)  # mid-boot: the guest kernel is still starting
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while qemu_processes(vm.tmpdir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert qemu_processes(vm.tmpdir) == [], "qemu outlived the SIGKILLed CLI"
    left = os.listdir(vm.tmpdir)
    assert len(left) == 1 and left[0].startswith(f"minicontainer-vm-{proc.pid}-"), left
    r = subprocess.run([PYTHON, "-m", "minicontainer", "gc"], env=environ, cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"removed {os.path.join(vm.tmpdir, left[0])}\n" in r.stdout
    # the fixture checks that the temp dir is empty and no qemu remains


def test_reclaim_spares_live_owners_and_old_names(tmp_path):
    """Only directories whose owner (pid + start time) is dead are removed."""
    from minicontainer.vm import scratch

    mine = scratch.make(str(tmp_path))  # owner: this process, alive
    child = subprocess.Popen(["true"])
    child.wait()
    start = "1"  # a dead pid (reaped above); any start time
    dead = tmp_path / f"minicontainer-vm-{child.pid}-{start}-abc123"
    (dead / "sub").mkdir(parents=True)
    (dead / "sub" / "disk.img").write_bytes(b"x")
    reused = tmp_path / f"minicontainer-vm-{os.getpid()}-1-zzz"  # our pid, another start time
    reused.mkdir()
    legacy = tmp_path / "minicontainer-vm-q8x1_abc"  # no owner in the name: left alone
    legacy.mkdir()
    removed = scratch.reclaim(str(tmp_path))
    assert sorted(removed) == sorted([str(dead), str(reused)])
    assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(mine), legacy.name])
