"""The guest kernel: find one, or fetch Debian's, and the modules the guest's init needs.

    guest_kernel(explicit=None, progress=None) -> GuestKernel
        .version     '6.1.0-56-amd64'
        .image       bzImage (vmlinuz): boots on any machine type, through firmware
        .vmlinux     the same kernel uncompressed (ELF), or None: boots directly via PVH,
                     which skips the decompressor (~1 s under TCG); see vmlinux_of()
        .modules     the kernel's /lib/modules/VERSION directory, or None
        .source      where it came from, for the status line
    module_closure(kernel, names) -> [paths of .ko files, dependencies first]

Where the kernel comes from, in order (issue 3): `--kernel PATH`; the host's own
/boot/vmlinuz-$(uname -r) if readable; otherwise Debian's linux-image-*-amd64, fetched with
`apt-get download` and unpacked (never installed) into CACHE/kernels/PACKAGE/. Unpacking is
done into a temporary directory renamed into place at the end, so an interrupted fetch leaves
nothing a later run would trust.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from minicontainer.errors import ContainerError

CACHE = os.environ.get("MINICONTAINER_CACHE", "/var/cache/minicontainer")


class GuestKernel:
    __slots__ = ("version", "image", "vmlinux", "modules", "source")

    def __init__(self, version, image, vmlinux, modules, source):
        self.version, self.image, self.vmlinux = version, image, vmlinux
        self.modules, self.source = modules, source

    def __repr__(self):
        return f"GuestKernel({self.version!r}, image={self.image!r}, source={self.source!r})"


def cache_dir() -> str:
    return os.environ.get("MINICONTAINER_CACHE", CACHE)


def guest_kernel(explicit: str | None = None, progress=None) -> GuestKernel:
    """The kernel to boot. `progress(done_fraction)` is called while a package downloads."""
    if explicit:
        return _explicit(explicit)
    release = os.uname().release
    host = f"/boot/vmlinuz-{release}"
    if os.access(host, os.R_OK):
        modules = f"/lib/modules/{release}"
        return GuestKernel(release, host, None, modules if os.path.isdir(modules) else None,
                           f"host {host}")
    return _debian(progress)


def _explicit(path: str) -> GuestKernel:
    if not os.path.isfile(path):
        raise ContainerError(f"kernel {path}: no such file")
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 20)
    except OSError as e:
        raise ContainerError(f"kernel {path}: {e.strerror}")
    version = _version_of(head)
    is_elf = head[:4] == b"\x7fELF"
    if not is_elf and head[0x202:0x206] != b"HdrS":
        raise ContainerError(f"kernel {path}: not a Linux kernel image (bzImage or vmlinux)")
    modules = f"/lib/modules/{version}" if version else None
    if modules and not os.path.isdir(modules):
        modules = None
    return GuestKernel(version or "unknown", path, path if is_elf else None, modules,
                       f"--kernel {path}")


def _version_of(head: bytes) -> str | None:
    """The release string, from the bzImage header's kernel_version pointer or, for an ELF
    vmlinux, the 'Linux version X' banner."""
    if head[0x202:0x206] == b"HdrS":
        offset = int.from_bytes(head[0x20E:0x210], "little") + 0x200
        return head[offset:offset + 64].split(b" ")[0].decode(errors="replace") or None
    m = re.search(rb"Linux version (\S+)", head)
    return m.group(1).decode() if m else None


# --- Debian's kernel package --------------------------------------------------------------

def debian_package() -> str:
    """The current linux-image-X-amd64 that the metapackage linux-image-amd64 points at."""
    try:
        out = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ContainerError(f"no guest kernel: /boot/vmlinuz-{os.uname().release} is not "
                             f"readable and apt-cache failed ({e}); give one with --kernel PATH")
    m = re.search(r"Depends: (linux-image-\S+-amd64)\b", out)
    if not m:
        raise ContainerError(f"no guest kernel: /boot/vmlinuz-{os.uname().release} is not "
                             "readable and apt knows no linux-image-amd64; give one with --kernel PATH")
    return m.group(1)


def _debian(progress) -> GuestKernel:
    kernels = os.path.join(cache_dir(), "kernels")
    # Reuse whatever was unpacked before without asking apt (fast, and works offline);
    # the newest package name wins.
    done = sorted((d for d in _listdir(kernels) if os.path.isfile(os.path.join(kernels, d, ".complete"))),
                  key=_version_key)
    if done:
        return _from_unpacked(os.path.join(kernels, done[-1]))
    package = debian_package()
    deb = _download(package, progress)
    return _from_unpacked(_unpack(deb, os.path.join(kernels, package)))


def _version_key(name: str):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _from_unpacked(directory: str) -> GuestKernel:
    boot = os.path.join(directory, "boot")
    image = next((os.path.join(boot, n) for n in sorted(os.listdir(boot)) if n.startswith("vmlinuz-")), None)
    if image is None:
        raise ContainerError(f"{directory}: no boot/vmlinuz-* in the unpacked kernel package")
    version = os.path.basename(image)[len("vmlinuz-"):]
    modules = os.path.join(directory, "lib", "modules", version)
    vmlinux = os.path.join(boot, f"vmlinux-{version}")
    return GuestKernel(version, image, vmlinux if os.path.isfile(vmlinux) else None,
                       modules if os.path.isdir(modules) else None,
                       f"Debian {os.path.basename(directory)} (cached in {directory})")


def _download(package: str, progress) -> str:
    """apt-get download into CACHE/debs; apt reports progress on a status fd."""
    debs = os.path.join(cache_dir(), "debs")
    os.makedirs(debs, exist_ok=True)
    have = [n for n in os.listdir(debs) if n.startswith(package + "_") and n.endswith(".deb")]
    if have:
        return os.path.join(debs, sorted(have)[-1])
    if shutil.which("apt-get") is None:
        raise ContainerError(f"no guest kernel: /boot/vmlinuz-{os.uname().release} is not "
                             "readable and apt-get is not available to fetch "
                             f"{package}; give one with --kernel PATH")
    status_r, status_w = os.pipe()
    try:
        proc = subprocess.Popen(
            ["apt-get", "-q", "-o", "APT::Sandbox::User=root", "-o", f"APT::Status-Fd={status_w}",
             "download", package],
            cwd=debs, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            pass_fds=(status_w,))
    except BaseException:
        os.close(status_r)
        os.close(status_w)
        raise
    os.close(status_w)
    try:
        with os.fdopen(status_r, "r") as status:
            for line in status:  # dlstatus:1:45.5:Retrieving file 1 of 1
                fields = line.split(":", 3)
                if progress and fields[0] == "dlstatus" and len(fields) > 2:
                    progress(float(fields[2]) / 100)
        err = proc.stderr.read().decode(errors="replace").strip()
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        for n in os.listdir(debs):  # apt's partial download
            if n.startswith(package + "_") and not n.endswith(".deb"):
                os.unlink(os.path.join(debs, n))
        raise
    have = [n for n in os.listdir(debs) if n.startswith(package + "_") and n.endswith(".deb")]
    if code != 0 or not have:
        last = err.splitlines()[-1] if err else f"exit status {code}"
        raise ContainerError(f"no guest kernel: apt-get download {package} failed: {last}")
    return os.path.join(debs, sorted(have)[-1])


def _unpack(deb: str, dest: str) -> str:
    """dpkg -x into DEST.tmp.PID, keep boot/ and lib/modules/, add the vmlinux, rename."""
    tmp = f"{dest}.tmp.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        result = subprocess.run(["dpkg-deb", "-x", deb, tmp], capture_output=True, text=True)
        if result.returncode != 0:
            raise ContainerError(f"dpkg-deb -x {deb} failed: {result.stderr.strip()}")
        shutil.rmtree(os.path.join(tmp, "usr"), ignore_errors=True)  # docs, not needed
        boot = os.path.join(tmp, "boot")
        for name in os.listdir(boot):
            if name.startswith("vmlinuz-"):
                extract_vmlinux(os.path.join(boot, name),
                                os.path.join(boot, "vmlinux-" + name[len("vmlinuz-"):]))
        open(os.path.join(tmp, ".complete"), "w").close()
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


# --- the uncompressed kernel, for PVH --------------------------------------------------------

def extract_vmlinux(bzimage: str, dest: str) -> bool:
    """Write the ELF kernel inside BZIMAGE to DEST (what scripts/extract-vmlinux does): the
    payload is compressed (xz for Debian); try each compression Python can undo. False if
    none found (say zstd or lz4), in which case only the bzImage is used."""
    import bz2
    import lzma
    import zlib

    with open(bzimage, "rb") as f:
        data = f.read()
    candidates = [
        (b"\xfd7zXZ\x00", lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ)),
        (b"\x1f\x8b\x08", lambda: zlib.decompressobj(16 + zlib.MAX_WBITS)),
        (b"BZh", lambda: bz2.BZ2Decompressor()),
        (b"\x5d\x00\x00", lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE)),
    ]
    for magic, make in candidates:
        start = data.find(magic)
        while start != -1:
            try:
                out = make().decompress(data[start:])
            except (lzma.LZMAError, zlib.error, OSError, EOFError):
                out = b""
            if out[:4] == b"\x7fELF":
                with open(dest + ".tmp", "wb") as f:
                    f.write(out)
                os.rename(dest + ".tmp", dest)
                return True
            start = data.find(magic, start + 1)
    return False


def vmlinux_of(kernel: GuestKernel) -> str | None:
    """The uncompressed kernel for KERNEL, extracting it into the cache once if needed."""
    if kernel.vmlinux:
        return kernel.vmlinux
    import hashlib

    st = os.stat(kernel.image)
    key = hashlib.sha256(f"{os.path.realpath(kernel.image)}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    dest = os.path.join(cache_dir(), "vmlinux", f"vmlinux-{kernel.version}-{key}")
    if os.path.isfile(dest):
        kernel.vmlinux = dest
        return dest
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if extract_vmlinux(kernel.image, dest):
        kernel.vmlinux = dest
        return dest
    return None


# --- modules --------------------------------------------------------------------------------

def find_module(kernel: GuestKernel, name: str) -> str | None:
    """Path of module NAME (dashes and underscores are the same) under kernel.modules."""
    if not kernel.modules:
        return None
    index = _module_index(kernel.modules)
    return index.get(name.replace("-", "_"))


_indexes: dict = {}


def _module_index(modules_dir: str) -> dict:
    if modules_dir not in _indexes:
        index = {}
        for top, _dirs, files in os.walk(os.path.join(modules_dir, "kernel")):
            for f in files:
                if f.endswith(".ko"):
                    index[f[:-3].replace("-", "_")] = os.path.join(top, f)
        _indexes[modules_dir] = index
    return _indexes[modules_dir]


def builtin_modules(kernel: GuestKernel) -> set[str]:
    try:
        with open(os.path.join(kernel.modules, "modules.builtin")) as f:
            return {os.path.basename(line.strip())[:-3].replace("-", "_") for line in f}
    except (OSError, TypeError):
        return set()


def module_depends(path: str) -> list[str]:
    """The 'depends=' field of a module's .modinfo section: what must be loaded before it."""
    with open(path, "rb") as f:
        data = f.read()
    m = re.search(rb"(?:^|\x00)depends=([^\x00]*)\x00", data)
    return [d.decode() for d in m.group(1).split(b",") if d] if m else []


def module_closure(kernel: GuestKernel, names) -> list[str]:
    """Paths of the modules NAMES and everything they depend on, dependencies first.
    Modules built into the kernel are skipped; a missing one is an error."""
    builtin = builtin_modules(kernel)
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in seen or name in builtin:
            return
        seen.add(name)
        path = find_module(kernel, name)
        if path is None:
            raise ContainerError(f"kernel {kernel.version}: module {name} not found "
                                 f"(in {kernel.modules or 'no modules directory'})")
        for dep in module_depends(path):
            visit(dep)
        order.append(path)

    for n in names:
        visit(n)
    return order


def progress_bar(label: str):
    """A progress callback drawing a bar on stderr when it is a terminal, else silent."""
    if not sys.stderr.isatty():
        return None
    width = 30

    def draw(fraction: float) -> None:
        filled = int(width * min(max(fraction, 0.0), 1.0))
        sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {fraction * 100:5.1f}%")
        if fraction >= 1.0:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return draw
