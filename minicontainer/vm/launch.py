"""One VM run, from flags to the command's exit status: what `minicontainer vm run` does.

    run_vm(VMConfig(rootfs=..., args=[...], ...), say=print_line) -> BootResult

    check the input (rootfs, command, memory, qemu)   -> one clear error, before any work
    find the guest kernel (maybe fetch it)            kernel.guest_kernel, kernel.vmlinux_of
    pack the rootfs (cached)                          initramfs.build_initramfs
    KVM or TCG                                        accel.detect_accel
    say one line: accel, machine, devices, kernel
    reclaim scratch dirs of dead runs (SIGKILLed)     scratch.reclaim
    with --devices virtio|emulated: a scratch disk    scratch.make (named after our pid)
    boot, relay the console (stdout) and the guest's  qemu.guest_cmdline/qemu_argv/boot
    second serial port (stderr), return the status
    remove the scratch dir (always, unless SIGKILLed: then gc or the next run does)

The default device set is none (no disk, no NIC), as `run` defaults to `--network none`:
the rootfs is in the initramfs, and every device costs boot time (module loading, probing).
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import sys

from minicontainer.errors import ContainerError, UsageError
from minicontainer.spec import DEFAULT_PATH
from minicontainer.vm import accel as accels
from minicontainer.vm import initramfs, kernel as kernels, qemu, scratch

MIN_MEMORY_MIB = 64
DISK_MIB = 64  # the scratch disk the device model is exercised with (/dev/vda or /dev/sda)
DEVICE_WORDS = {"none": "no devices", "virtio": "virtio-blk + virtio-net",
                "emulated": "IDE disk + e1000 NIC"}


class VMConfig:
    __slots__ = ("rootfs", "args", "env", "workdir", "hostname", "kernel", "devices",
                 "memory_mib", "cpus", "interactive", "tty", "accel", "guestfwd", "timeout",
                 "verbose")
    _defaults = {"env": {}, "workdir": "/", "hostname": None, "kernel": None, "devices": "none",
                 "memory_mib": 128, "cpus": 1, "interactive": False, "tty": False,
                 "accel": "auto", "guestfwd": (), "timeout": None, "verbose": False}

    def __init__(self, **values):
        for name in self.__slots__:
            default = self._defaults.get(name)
            setattr(self, name, values.pop(name, default.copy() if isinstance(default, dict) else default))
        if values:
            raise TypeError(f"VMConfig: unknown fields {sorted(values)}")


def parse_memory(text: str) -> int:
    """docker's -m syntax (a number of bytes, or with a unit b, k, m, g) -> MiB."""
    m = re.fullmatch(r"(\d+)([bkmg]?)(i?b)?", text.strip().lower())
    if not m or (m.group(3) and not m.group(2)):
        raise UsageError(f"invalid memory size {text!r}: use a number with a unit, e.g. 256m or 1g")
    value = int(m.group(1)) * {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2)]
    mib = value >> 20
    if mib < MIN_MEMORY_MIB:
        raise UsageError(f"memory size {text!r} is too small for a guest kernel (at least {MIN_MEMORY_MIB}m)")
    host = _host_memory_mib()
    if host and mib > host:
        raise UsageError(f"memory size {text!r} is more than this host has ({host} MiB)")
    return mib


def _host_memory_mib() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            return int(f.readline().split()[1]) >> 10
    except (OSError, ValueError, IndexError):
        return None


def find_in_rootfs(rootfs: str, command: str, path_var: str, workdir: str = "/") -> str | None:
    """Where COMMAND would be found inside ROOTFS (symlinks resolved inside it), as a guest
    path, or None. Checked on the host so that a missing command costs no boot."""
    if "/" in command:
        candidates = [command if command.startswith("/") else os.path.join(workdir, command)]
    else:
        candidates = [os.path.join(d or ".", command) for d in path_var.split(":")]
    for guest_path in candidates:
        host = _resolve(rootfs, guest_path)
        if host:
            st = os.stat(host)
            if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
                return guest_path
    return None


def _resolve(rootfs: str, guest_path: str, depth: int = 0) -> str | None:
    """The host path of GUEST_PATH, following symlinks as the guest would (absolute targets
    are relative to ROOTFS)."""
    if depth > 40:
        return None
    current = ""
    parts = [p for p in guest_path.split("/") if p not in ("", ".")]
    for i, part in enumerate(parts):
        if part == "..":
            current = os.path.dirname(current)
            continue
        host = os.path.join(rootfs, (current + "/" + part).lstrip("/"))
        if os.path.islink(host):
            target = os.readlink(host)
            base = target if target.startswith("/") else current + "/" + target
            rest = "/".join(parts[i + 1:])
            return _resolve(rootfs, base + ("/" + rest if rest else ""), depth + 1)
        if not os.path.exists(host):
            return None
        current = current + "/" + part
    return os.path.join(rootfs, current.lstrip("/"))


def check(config: VMConfig) -> str:
    """Everything that can be wrong with the input, before any slow work. Returns qemu's path."""
    rootfs = config.rootfs
    if not os.path.isdir(rootfs):
        what = "is not a directory" if os.path.exists(rootfs) else "does not exist"
        raise ContainerError(f"rootfs {rootfs} {what}")
    if not config.args:
        raise UsageError("no command given")
    if config.devices not in qemu.DEVICES:
        raise UsageError(f"--devices {config.devices!r}: choose none, virtio or emulated")
    if config.guestfwd and config.devices == "none":
        raise UsageError("--guestfwd needs a NIC: add --devices virtio (or emulated)")
    if config.cpus < 1 or config.cpus > (os.cpu_count() or 1) * 4:
        raise UsageError(f"--cpus {config.cpus}: choose 1 to {(os.cpu_count() or 1) * 4}")
    path_var = config.env.get("PATH", DEFAULT_PATH)
    if find_in_rootfs(rootfs, config.args[0], path_var, config.workdir) is None:
        raise ContainerError(f"{config.args[0]}: command not found in rootfs {rootfs}")
    if config.kernel and not os.path.isfile(config.kernel):
        raise ContainerError(f"kernel {config.kernel}: no such file")
    return qemu.find_qemu()


def prepare(config: VMConfig, progress=None):
    """The slow, cached part: (kernel, boot image, initramfs). Split out so that compare
    does it once, before it starts timing."""
    kernel = kernels.guest_kernel(config.kernel, progress=progress)
    image = kernels.vmlinux_of(kernel) or kernel.image
    initrd = initramfs.build_initramfs(os.path.abspath(config.rootfs), kernel)
    return kernel, image, initrd


def run_vm(config: VMConfig, say=None, out=None, prepared=None) -> qemu.BootResult:
    say = say or _say
    qemu_path = check(config)
    kernel, image, initrd = prepared or prepare(
        config, progress=kernels.progress_bar("minicontainer: downloading the guest kernel"))
    if config.accel == "auto":
        accel = accels.detect_accel(qemu_path, image)
    else:
        accel = accels.Accel(config.accel)
    machine = qemu.DEVICES[config.devices][0].split(",")[0]
    boot_kind = "bzImage" if image == kernel.image and not kernel.vmlinux else "PVH vmlinux"
    say(f"vm: {accel.describe()}, {machine} + {boot_kind}, {DEVICE_WORDS[config.devices]}, "
        f"kernel {kernel.version}, {config.memory_mib} MiB, {config.cpus} CPU")

    tty = None
    if config.tty:
        tty = _window_size()
    cmdline = qemu.guest_cmdline(config.args, config.env, config.workdir, config.hostname,
                                 devices=config.devices, tty=tty,
                                 stdin=config.interactive, accel=accel.name,
                                 err_console=not config.tty,
                                 extra=() if not config.verbose else ("loglevel=7",))  # later wins
    if config.verbose:
        cmdline = cmdline.replace(" loglevel=3 ", " ", 1)
    scratch.reclaim()  # what SIGKILLed runs left (one listdir when there is nothing)
    tmp = disk = None
    try:
        if qemu.DEVICES[config.devices][2]:  # a device model with a disk: give it one
            tmp = scratch.make()
            disk = os.path.join(tmp, "disk.img")
            with open(disk, "wb") as f:
                f.truncate(DISK_MIB << 20)
        err_pipe = os.pipe() if not config.tty else None
        argv = qemu.qemu_argv(image, initrd, cmdline, accel=accel.name, devices=config.devices,
                              memory_mib=config.memory_mib, cpus=config.cpus, disk=disk,
                              guestfwd=config.guestfwd, qemu=qemu_path,
                              err_fd=err_pipe[1] if err_pipe else None)
        result = qemu.boot(argv, interactive=config.interactive or config.tty, tty=config.tty,
                           out=out, timeout=config.timeout, err_pipe=err_pipe)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    result.accel = accel.name
    return result


def _window_size() -> tuple[int, int]:
    try:
        size = os.get_terminal_size(0)
        return size.lines, size.columns
    except OSError:
        return 24, 80


def _say(message: str) -> None:
    sys.stderr.write(f"minicontainer: {message}\n")
    sys.stderr.flush()
