"""KVM or TCG: detected by running guest code, never assumed from /dev/kvm existing.

    detect_accel(qemu='qemu-system-x86_64', kernel=None) -> Accel(name='kvm'|'tcg', note)

A /dev/kvm that opens and answers the KVM API is not enough: on the machines this project is
built on it is a software implementation without VT-x/SVM, and QEMU either aborts
(`failed to set MSR 0x10a`), crawls, or stops on an instruction it cannot emulate
(`KVM internal error ... emulation failure`, after which QEMU hangs with the guest paused).
So the probe runs guest code under KVM with the CPU model a real boot would use, in two
steps:
1. a 25-byte PVH ELF whose entry point writes 42 to QEMU's isa-debug-exit port, which makes
   QEMU exit with status 42*2+1 = 85 (rejects a KVM that cannot run anything, in ~0.1 s);
2. given the guest kernel that will be booted, that kernel itself, with no initramfs: it
   must get as far as its "cannot mount root" panic, after which QEMU exits (panic=-1,
   -no-reboot). A trivial guest passed step 1 on one of our machines where the real kernel
   then hit an emulation failure in its first second, so only a real boot proves KVM.
Anything else (an error, another status, no exit within the timeout) means TCG. The verdict
is cached per boot (keyed by /proc/sys/kernel/random/boot_id, the QEMU binary and the
kernel image), so it is paid once.
"""
from __future__ import annotations

import os
import struct
import subprocess

from minicontainer.vm import kernel as kernels

PROBE_TIMEOUT = 3.0
PROBE_STATUS = 85
KERNEL_PROBE_TIMEOUT = 8.0  # a real KVM reaches the panic in well under a second


class Accel:
    __slots__ = ("name", "note")

    def __init__(self, name: str, note: str | None = None):
        self.name, self.note = name, note

    def __repr__(self):
        return f"Accel({self.name!r}, note={self.note!r})"

    def describe(self) -> str:
        return f"{self.name.upper()}" + (f" ({self.note}; falling back to TCG)" if self.note else "")


def probe_elf() -> bytes:
    """A minimal 32-bit ELF with a Xen PVH entry note (type 18), loaded at 1 MiB:
    mov al, 42; out 0xf4, al; hlt; jmp $-1."""
    code = bytes([0xB0, 42, 0xE6, 0xF4, 0xF4, 0xEB, 0xFD])
    base = 0x100000
    note = struct.pack("<III4sI", 4, 4, 18, b"Xen\0", base)  # namesz, descsz, type, name, entry
    ehsize, phsize = 52, 32
    note_off = ehsize + 2 * phsize
    code_off = note_off + len(note)
    header = struct.pack("<4sBBBB8xHHIIIIIHHHHHH", b"\x7fELF", 1, 1, 1, 0, 2, 3, 1, base, ehsize,
                         0, 0, ehsize, phsize, 2, 0, 0, 0)
    load = struct.pack("<IIIIIIII", 1, code_off, base, base, len(code), len(code), 5, 0x1000)
    notes = struct.pack("<IIIIIIII", 4, note_off, 0, 0, len(note), len(note), 4, 4)
    return header + load + notes + note + code


def _kvm_verdict(qemu: str) -> tuple[bool, str]:
    if not os.path.exists("/dev/kvm"):
        return False, "no /dev/kvm"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is not accessible"
    # The test guest lives in a memfd QEMU inherits: no file to leave behind, whatever kills us.
    fd = os.memfd_create("minicontainer-kvm-probe", 0)
    try:
        os.write(fd, probe_elf())
        argv = [qemu, "-accel", "kvm", "-cpu", "host", "-M", "microvm,x-option-roms=off,rtc=off",
                "-m", "16", "-nodefaults", "-no-user-config", "-display", "none",
                "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-kernel", f"/dev/fd/{fd}"]
        try:
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, timeout=PROBE_TIMEOUT, pass_fds=(fd,))
        except subprocess.TimeoutExpired:  # run() has killed and reaped it
            return False, f"KVM unusable: a test guest did not finish in {PROBE_TIMEOUT:g} s"
    finally:
        os.close(fd)
    if r.returncode != PROBE_STATUS:
        lines = [ln for ln in r.stderr.decode(errors="replace").splitlines() if ln.strip()]
        why = lines[0].split("error: ", 1)[-1] if lines else f"exit status {r.returncode}"
        return False, f"KVM unusable: a test guest failed with {why.strip()!r}"
    return True, ""


def _kernel_verdict(qemu: str, kernel: str) -> tuple[bool, str]:
    """Boot `kernel` under KVM without an initramfs: it panics for want of a root
    filesystem and QEMU exits. Seeing that panic on the console proves a real boot works."""
    machine = "microvm,x-option-roms=off" if kernel.rsplit("/", 1)[-1].startswith("vmlinux") \
        else "pc"
    argv = [qemu, "-accel", "kvm", "-cpu", "host", "-M", machine, "-m", "128",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-serial", "stdio", "-kernel", kernel,
            "-append", "console=ttyS0 panic=-1 loglevel=1 root=/dev/nonexistent"]
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=KERNEL_PROBE_TIMEOUT)
    except subprocess.TimeoutExpired:
        return False, (f"KVM unusable: the guest kernel did not get through its boot in "
                       f"{KERNEL_PROBE_TIMEOUT:g} s")
    if b"Kernel panic" in r.stdout:
        return True, ""
    text = (r.stderr + r.stdout).decode(errors="replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    why = lines[0].split("error: ", 1)[-1] if lines else f"exit status {r.returncode}"
    return False, f"KVM unusable: the guest kernel failed with {why.strip()!r}"


def detect_accel(qemu: str = "qemu-system-x86_64", kernel: str | None = None,
                 use_cache: bool = True) -> Accel:
    """KVM if a test guest (and, given one, the guest kernel) really runs under it, else
    TCG with a note saying why."""
    key = _cache_key(qemu, kernel)
    path = os.path.join(kernels.cache_dir(), "kvm-probe")
    if use_cache and key:
        try:
            with open(path) as f:
                cached_key, ok, why = f.read().split("\n", 2)
            if cached_key == key:
                return Accel("kvm") if ok == "1" else Accel("tcg", why.strip())
        except (OSError, ValueError):
            pass
    ok, why = _kvm_verdict(qemu)
    if ok and kernel:
        ok, why = _kernel_verdict(qemu, kernel)
    if key:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path + ".tmp", "w") as f:
                f.write(f"{key}\n{int(ok)}\n{why}\n")
            os.rename(path + ".tmp", path)
        except OSError:
            pass
    return Accel("kvm") if ok else Accel("tcg", why)


def _cache_key(qemu: str, kernel: str | None) -> str | None:
    import shutil

    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        binary = shutil.which(qemu) or qemu
        st = os.stat(binary)
        image = f"{kernel}:{os.stat(kernel).st_mtime_ns}" if kernel else "-"
    except OSError:
        return None
    return f"v3:{boot}:{binary}:{st.st_mtime_ns}:{image}"
