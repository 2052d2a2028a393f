"""The QEMU command line, and one boot from start to the command's exit status.

    guest_cmdline(args, env=None, workdir='/', hostname=None, *, devices='virtio',
                  tty=None, stdin=False, accel='tcg', extra=()) -> str
    qemu_argv(kernel, initrd, cmdline, *, accel, devices='virtio', memory_mib=128, cpus=1,
              disk=None, guestfwd=(), err_fd=None, extra=()) -> [argv]
    boot(argv, *, interactive=False, tty=False, out=None, timeout=None,
         err_pipe=None, err=None) -> BootResult

Machine choices (all measured under TCG on the development machine, see docs/vm.md):
- none (the default of `vm run`): microvm with no disk and no NIC, as `run` defaults to
  `--network none`: the rootfs is in the initramfs, so the guest needs no device to run a
  command, and each device costs ~0.15 s of module loading and probing under TCG.
- virtio: `-M microvm`, QEMU's minimal machine (no PCI, no firmware beyond qboot, devices
  on virtio-mmio found through ACPI), and the uncompressed vmlinux booted through its PVH
  entry point, which skips the bzImage decompressor.
- emulated: `-M pc` (i440FX + PIIX), because IDE and e1000 are PCI/ISA devices of a real PC.
  The kernel is still entered through PVH (3.3 s instead of 6-7 s for bzImage + BIOS).
- `-nodefaults`, no option ROMs (`romfile=`); with virtio/emulated one disk and one NIC.
- Two serial ports, both 8250 UARTs built into the kernel (nothing to load): ttyS0 is the
  console (the command's stdout, stdin with -i), ttyS1 carries the command's stderr to a
  pipe the host relays to its own stderr (`err_fd`). With -t both go to the console, as
  with `run -t`. (virtio-console would need virtio_mmio + virtio_console loaded: slower.)
- The guest kernel command line skips work that only matters on a long-lived machine
  (FAST_BOOT below: crypto self-tests, AppArmor, audit, W^X page checks...).

Networking is QEMU user mode (slirp) with restrict=on: the guest can reach nothing but the
forwards given explicitly (`guestfwd`, to 127.0.0.1 only). No tap device, nothing to clean.
"""
from __future__ import annotations

import base64
import os
import select
import signal
import subprocess
import sys
import time

from minicontainer.errors import ContainerError

QEMU = "qemu-system-x86_64"
COMMAND_LINE_SIZE = 2048  # the x86 kernel's limit, including the terminating NUL
MARKER = b"\x01MC-EXIT "
READY = b"\x01MC-READY\x01"

# What the guest kernel may skip: it lives for one command and is thrown away. loglevel=3
# rather than quiet: microvm has no PCI bus and the kernel says so at KERN_ERR; only
# critical messages (a panic) reach the console.
FAST_BOOT = ("loglevel=3", "panic=-1", "cryptomgr.notests", "rodata=off", "apparmor=0", "audit=0",
             "mitigations=off", "8250.nr_uarts=2", "random.trust_cpu=on")
ERR_CONSOLE = "ttyS1"

DEVICES = {
    # devices: (machine, console, disk name in the guest, module groups, kernel options)
    "none": ("microvm,x-option-roms=off", "ttyS0", None, (), ()),
    "virtio": ("microvm,x-option-roms=off", "ttyS0", "vda", ("virtio",), ()),
    "emulated": ("pc", "ttyS0", "sda", ("emulated",), ()),
}


def find_qemu(name: str = QEMU) -> str:
    import shutil

    path = shutil.which(name)
    if path is None:
        raise ContainerError(f"{name} not found on PATH: install it (apt-get install qemu-system-x86)")
    return path


def host_tsc_khz() -> int | None:
    """The host's TSC rate: under TCG the guest reads the host's TSC, and telling the guest
    its rate (tsc_early_khz) avoids a calibration that can hang on microvm."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    return int(float(line.split(":")[1]) * 1000)
    except (OSError, ValueError):
        pass
    return None


def guest_cmdline(args, env=None, workdir="/", hostname=None, *, devices="virtio", tty=None,
                  stdin=False, accel="tcg", modules=None, err_console=False, extra=()) -> str:
    """The kernel command line: fast-boot options, the init's settings (key=value words the
    kernel passes to init as environment) and the run itself after `--`, base64-encoded so
    that any byte survives (see initramfs.INIT). tty is (rows, cols) for -t. err_console:
    the host attached ERR_CONSOLE (qemu_argv's err_fd), so the command's stderr goes there."""
    _machine, console, disk, groups, options = DEVICES[devices]
    words = [f"console={console}", *FAST_BOOT, *options]
    if accel == "tcg":
        khz = host_tsc_khz()
        if khz:
            words.append(f"tsc_early_khz={khz}")
    words.append(f"mcconsole={console}")
    if disk:
        words.append(f"mcdisk={disk}")
    mods = modules if modules is not None else groups
    if mods:
        words.append(f"mcmods={','.join(mods)}")
    if err_console and not tty:
        words.append(f"mcerr={ERR_CONSOLE}")
    if tty:
        words += ["mctty=1", f"mcrows={tty[0]}", f"mccols={tty[1]}"]
    if stdin:
        words.append("mcstdin=1")
    words += list(extra)
    words.append("--")

    def enc(kind: str, value: str) -> str:
        return f"{kind}:" + base64.b64encode(value.encode()).decode()

    words.append(enc("w", workdir))
    if hostname:
        words.append(enc("h", hostname))
    words += [enc("e", f"{k}={v}") for k, v in (env or {}).items()]
    words += [enc("a", a) for a in args]
    line = " ".join(words)
    if len(line) >= COMMAND_LINE_SIZE:
        raise ContainerError(f"the command and environment are too long for the guest kernel's "
                             f"command line ({len(line)} of {COMMAND_LINE_SIZE - 1} bytes)")
    return line


def qemu_argv(kernel: str, initrd: str, cmdline: str, *, accel: str = "tcg",
              devices: str = "virtio", memory_mib: int = 128, cpus: int = 1,
              disk: str | None = None, guestfwd=(), err_fd: int | None = None, extra=(),
              qemu: str = QEMU) -> list[str]:
    """argv for one boot. DISK is a raw image attached with the device model of DEVICES
    (devices='none': no disk, no NIC); GUESTFWD is [(guest_port, host_port)]: the guest's
    10.0.2.100:guest_port reaches 127.0.0.1:host_port on the host. ERR_FD, the write end
    of a pipe QEMU inherits, receives what the guest writes to ERR_CONSOLE. EXTRA is
    appended (e.g. -virtfs ... for a 9p share)."""
    machine = DEVICES[devices][0]
    argv = [qemu, "-M", machine, "-m", str(memory_mib), "-smp", str(cpus),
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", kernel, "-initrd", initrd, "-append", cmdline,
            "-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con"]
    if err_fd is not None:
        # a second 16550 at 0x2f8 (ttyS1); microvm creates only one serial port itself
        argv += ["-chardev", f"file,id=err,path=/dev/fd/{err_fd}",
                 "-device", "isa-serial,chardev=err,index=1"]
    if accel == "kvm":
        argv += ["-accel", "kvm", "-cpu", "host"]
    else:
        argv += ["-accel", "tcg"]
    netdev = "user,id=net0,restrict=on"
    for guest_port, host_port in guestfwd:
        netdev += f",guestfwd=tcp:10.0.2.100:{guest_port}-tcp:127.0.0.1:{host_port}"
    if devices == "none":
        if disk or guestfwd:
            raise ContainerError("devices 'none' has no disk and no NIC to attach")
    elif devices == "virtio":
        if disk:
            argv += ["-drive", f"file={disk},format=raw,if=none,id=disk0,cache=unsafe",
                     "-device", "virtio-blk-device,drive=disk0"]
        argv += ["-netdev", netdev, "-device", "virtio-net-device,netdev=net0"]
    else:
        argv += ["-vga", "none"]
        if disk:
            argv += ["-drive", f"file={disk},format=raw,if=none,id=disk0,cache=unsafe",
                     "-device", "ide-hd,drive=disk0,bus=ide.0"]
        argv += ["-netdev", netdev, "-device", "e1000,netdev=net0,romfile="]
    return argv + list(extra)


class BootResult:
    __slots__ = ("status", "guest_mem_kib", "guest_release", "wall_s", "cpu_s", "qemu_maxrss_kib",
                 "accel")

    def __init__(self, **values):
        for k in self.__slots__:
            setattr(self, k, values.get(k))

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__}


class _Terminate(BaseException):
    """SIGTERM or SIGHUP while a guest runs: unwind through the cleanup like Ctrl-C."""


def boot(argv: list[str], *, interactive: bool = False, tty: bool = False, out=None,
         timeout: float | None = None, err_pipe: tuple[int, int] | None = None,
         err=None) -> BootResult:
    """Run QEMU, relay the guest console to OUT (default: our stdout) and, with interactive,
    our stdin to the guest; return once QEMU exits. The command's exit status comes from the
    init's marker line, which is not relayed. ERR_PIPE is the (read, write) pipe whose write
    end argv gave QEMU (qemu_argv's err_fd): what arrives is relayed to ERR (default: our
    stderr). boot owns and closes both ends. QEMU is killed on any exception (Ctrl-C too)
    and dies with us if we are killed (PR_SET_PDEATHSIG)."""
    out_fd = (out or sys.stdout).fileno()
    err_fd = (err or sys.stderr).fileno() if err_pipe else None
    from minicontainer.kernel import syscalls  # now: the child of fork must not import

    def die_with_parent() -> None:
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)

    start = time.monotonic()
    raw = _RawTerminal(0) if tty and os.isatty(0) else None
    old_handlers = {}
    proc = None
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            old_handlers[sig] = signal.signal(sig, _raise_terminate)
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if interactive else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, preexec_fn=die_with_parent,
                                pass_fds=(err_pipe[1],) if err_pipe else ())
        if err_pipe:  # only QEMU holds the write end now: EOF when it exits
            os.close(err_pipe[1])
            err_pipe = (err_pipe[0], None)
        if raw:
            raw.enter()
        console, errors = _relay(proc, out_fd, interactive, tty, start, timeout,
                                 err_pipe[0] if err_pipe else None, err_fd)
        _, wait_status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(wait_status)
    except BaseException:
        if proc is not None and proc.returncode is None:
            proc.kill()
            proc.wait()
        raise
    finally:
        if raw:
            raw.leave()
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        if proc is not None:
            for f in (proc.stdin, proc.stdout, proc.stderr):
                if f:
                    f.close()
        for fd in err_pipe or ():
            if fd is not None:
                os.close(fd)
    wall = time.monotonic() - start
    marker = _parse_marker(console)
    if marker is None:
        lines = [ln for ln in errors.decode(errors="replace").splitlines() if ln.strip()]
        if lines:
            why = lines[-1].removeprefix(f"{argv[0]}: ")
        elif console.strip():
            why = "guest said: " + console.decode(errors="replace").strip().splitlines()[-1][:200]
        else:
            why = f"qemu exit status {proc.returncode}"
        raise ContainerError(f"the guest stopped without reporting the command's exit status ({why})")
    status, mem, release = marker
    return BootResult(status=status, guest_mem_kib=mem, guest_release=release, wall_s=wall,
                      cpu_s=usage.ru_utime + usage.ru_stime, qemu_maxrss_kib=usage.ru_maxrss)


def _relay(proc, out_fd: int, interactive: bool, tty: bool, start: float, timeout,
           guest_err: int | None = None, err_fd: int | None = None):
    """Copy guest console -> out_fd (and the guest's stderr port -> err_fd) until QEMU
    closes them. The init announces READY once the
    console is set up (what arrives earlier would be echoed or lost), so our stdin is only
    forwarded after it; the EXIT marker and what follows are held back and returned, with
    QEMU's stderr."""
    pending = b""     # console bytes not yet written: maybe the start of a marker
    tail = b""        # from the EXIT marker on
    errors = b""
    ready = False
    err_cr = b""      # a \r at the end of the last guest-err chunk: maybe the tty's, before \n
    fds = {proc.stdout.fileno(): "out", proc.stderr.fileno(): "err"}
    if guest_err is not None:
        fds[guest_err] = "guest-err"
    while any(kind != "in" for kind in fds.values()):
        wait = None if timeout is None else max(0.0, start + timeout - time.monotonic())
        ready_fds, _, _ = select.select(list(fds), [], [], wait)
        if not ready_fds:
            raise ContainerError(f"the guest did not finish within {timeout:g} s")
        for fd in ready_fds:
            kind = fds[fd]
            if kind == "in":
                data = os.read(0, 65536)
                try:
                    if data:
                        proc.stdin.write(data)
                    else:  # EOF: an end-of-file character for the guest's tty (twice, in
                        # case the last line had no newline), then stop reading
                        if not tty:
                            proc.stdin.write(b"\x04\x04")
                        del fds[0]
                    proc.stdin.flush()
                except BrokenPipeError:
                    del fds[0]
                continue
            data = os.read(fd, 65536)
            if not data:
                del fds[fd]
                continue
            if kind == "err":
                errors = (errors + data)[-8192:]
                continue
            if kind == "guest-err":
                err_cr, data = _undo_onlcr(err_cr + data)
                _write_all(err_fd, data)
                continue
            if tail:
                tail += data
                continue
            pending += data
            if not ready:
                at = pending.find(READY)
                if at < 0:
                    keep = _partial_suffix(pending, READY)
                    _write_all(out_fd, pending[:len(pending) - keep])
                    pending = pending[len(pending) - keep:]
                    continue
                _write_all(out_fd, pending[:at])
                pending = pending[at + len(READY):]
                ready = True
                if interactive:
                    fds[0] = "in"
            at = pending.find(MARKER)
            if at >= 0:
                _write_all(out_fd, pending[:at])
                tail, pending = pending[at:], b""
                continue
            keep = _partial_suffix(pending, MARKER)
            _write_all(out_fd, pending[:len(pending) - keep])
            pending = pending[len(pending) - keep:]
    if pending:
        _write_all(out_fd, pending)
    if err_cr:
        _write_all(err_fd, err_cr)
    return tail or pending, errors


def _undo_onlcr(data: bytes) -> tuple[bytes, bytes]:
    """The guest's stderr port keeps the tty default OPOST|ONLCR, which writes each \n as
    \r\n and changes nothing else; dropping the \r before each \n gives the command's bytes
    back exactly (its own \r\n arrives as \r\r\n). Returns (held back, output): a final
    \r waits for the next chunk."""
    held = b""
    if data.endswith(b"\r"):
        data, held = data[:-1], b"\r"
    return held, data.replace(b"\r\n", b"\n")


def _partial_suffix(data: bytes, marker: bytes) -> int:
    """Length of the longest suffix of DATA that is a prefix of MARKER."""
    for n in range(min(len(marker) - 1, len(data)), 0, -1):
        if data.endswith(marker[:n]):
            return n
    return 0


def _parse_marker(tail: bytes):
    if not tail.startswith(MARKER):
        return None
    fields = tail[len(MARKER):].split(b"\x01", 1)[0].split()
    try:
        return int(fields[0]), int(fields[1]), fields[2].decode()
    except (IndexError, ValueError):
        return None


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            n = os.write(fd, data)
        except BrokenPipeError:
            return
        data = data[n:]


def _raise_terminate(signum, frame):
    raise _Terminate(signum)


class _RawTerminal:
    """-t: our terminal in raw mode, so every key (Ctrl-C included) goes to the guest."""

    def __init__(self, fd: int):
        import termios

        self.fd, self.saved = fd, termios.tcgetattr(fd)

    def enter(self) -> None:
        import tty

        tty.setraw(self.fd)

    def leave(self) -> None:
        import termios

        termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
