"""The guest's root filesystem: the user's rootfs packed into an initramfs, with a small init.

    build_initramfs(rootfs, kernel, modules=DEVICE_MODULES, extra_files=()) -> path
        A newc cpio (what the kernel unpacks into its first root), written in pure Python and
        cached under CACHE/initramfs/ by a hash of a manifest of everything that goes in,
        without reading any file's contents: for each rootfs entry its path, mode, owner,
        rdev, size, mtime_ns and ctime_ns (a symlink: its target); the init's text; the
        kernel's version and its modules directory's identity; the module groups asked for;
        the busybox and each extra file's stat (or bytes). A cache check is one walk of
        lstat calls (~5 ms for the busybox rootfs; hashing the contents took ~140 ms per
        run). ctime_ns is set by the kernel on any write and cannot be set back, so changed
        contents always change the key even when size and mtime were restored.

What the archive holds besides the rootfs (all under /.minicontainer, out of the way):
    /init                          INIT below: busybox sh, runs as the guest's PID 1
    /.minicontainer/busybox        a static busybox, so the init works whatever the rootfs is
    /.minicontainer/modules/G/*.ko one directory per module group (G = 'virtio', 'emulated',
                                   or a caller's own, e.g. '9p'), in load order
    /.minicontainer/hooks/*.sh     optional, from extra_files: sourced by the init before the
                                   command (the guest test lane mounts its 9p share there)

Nothing about one particular run (command, environment, working directory) is in the archive:
that comes on the kernel command line (see qemu.guest_cmdline), so the cache hits for any
command.
"""
from __future__ import annotations

import hashlib
import os
import stat
import subprocess

from minicontainer.errors import ContainerError
from minicontainer.vm import kernel as kernels

# Which modules each device model needs; loaded by the init for groups named in `mcmods=`.
DEVICE_MODULES = {
    "virtio": ["virtio_mmio", "virtio_blk", "virtio_net"],  # microvm: no PCI, so no virtio_pci
    "emulated": ["ata_piix", "sd_mod", "e1000"],
}

# The guest's PID 1. The kernel hands it `key=value` words of its command line as environment
# (mcmods, mcdisk, mcerr, mctty...) and the words after `--` as arguments: the run's settings,
# each as TYPE:BASE64 (a: argument, e: KEY=VALUE, w: working directory, h: hostname).
# It prints \001MC-READY\001 once the console is set up (the host holds stdin back until then)
# and ends with a marker the host parses: \001MC-EXIT status mem_used_kib release\001.
INIT = r"""#!/.minicontainer/busybox sh
B=/.minicontainer/busybox
$B mkdir -p /proc /sys /dev /tmp /run
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
$B mount -t devtmpfs devtmpfs /dev 2>/dev/null
$B mkdir -p /dev/pts /dev/shm
$B mount -t devpts devpts /dev/pts 2>/dev/null
for group in $(echo "$mcmods" | $B tr , ' '); do
    for m in /.minicontainer/modules/$group/*.ko; do
        [ -e "$m" ] && $B insmod "$m" 2>/dev/null
    done
done
if [ -n "$mcdisk" ]; then  # wait (at most 10 s) until the disk's driver has found it
    n=0
    while [ ! -e "/sys/block/$mcdisk" ] && [ $n -lt 1000 ]; do $B usleep 10000; n=$((n+1)); done
fi
$B ip link set lo up 2>/dev/null
if [ -e /sys/class/net/eth0 ]; then  # QEMU user networking: the host is 10.0.2.2
    $B ip addr add 10.0.2.15/24 dev eth0
    $B ip link set eth0 up
    $B ip route add default via 10.0.2.2
fi
for hook in /.minicontainer/hooks/*.sh; do [ -e "$hook" ] && . "$hook"; done

errport=$mcerr
unset mcmods mcdisk mcerr
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
wd=/
set -f
for item in "$@"; do
    value=$(echo "${item#?:}" | $B base64 -d)
    case "$item" in
        a:*) set -- "$@" "$value" ;;
        e:*) export "$value" ;;
        w:*) wd=$value ;;
        h:*) $B hostname "$value" ;;
    esac
    shift
done
set +f
$B mkdir -p "$wd" && cd "$wd"
if [ "$mctty" = 1 ]; then
    export TERM=${TERM:-xterm}
    $B stty -F /dev/$mcconsole rows ${mcrows:-24} cols ${mccols:-80} 2>/dev/null
    $B printf '\001MC-READY\001' >/dev/$mcconsole
    $B setsid -c "$@" </dev/$mcconsole >/dev/$mcconsole 2>&1
    status=$?
else
    # exact bytes out (no \n -> \r\n), no echo of what -i sends in
    $B stty -F /dev/$mcconsole -onlcr -echo 2>/dev/null
    # the command's stderr: its own port if the host attached one. No stty for it (an exec
    # costs ~50 ms under TCG): the port keeps a tty's default output processing, which only
    # turns \n into \r\n, and the host undoes exactly that (qemu._relay).
    err=/dev/$mcconsole
    if [ -n "$errport" ] && [ -c /dev/$errport ]; then err=/dev/$errport; fi
    $B printf '\001MC-READY\001' >/dev/$mcconsole  # the host sends stdin from now on
    if [ "$mcstdin" = 1 ]; then "$@" 2>$err; else "$@" </dev/null 2>$err; fi
    status=$?  # (closing $err above waited until it drained: a tty's last close does)
fi
used=$($B awk '/^MemTotal:/{t=$2} /^MemAvailable:/{a=$2} END{print t-a}' /proc/meminfo)
$B printf '\001MC-EXIT %s %s %s\001\n' "$status" "$used" "$($B uname -r)" >/dev/$mcconsole
$B stty -F /dev/$mcconsole -a >/dev/null 2>&1  # returns once the console has drained
$B poweroff -f
"""


def guest_busybox() -> str:
    """A static busybox for the init, from Debian's busybox-static (the same package
    tools/build-rootfs.sh uses), unpacked once into the cache."""
    cache = kernels.cache_dir()
    dest = os.path.join(cache, "busybox", "busybox")
    if os.path.isfile(dest):
        return dest
    debs = os.path.join(cache, "debs")
    os.makedirs(debs, exist_ok=True)
    found = sorted(n for n in os.listdir(debs) if n.startswith("busybox-static_"))
    if not found:
        r = subprocess.run(["apt-get", "-q", "-o", "APT::Sandbox::User=root", "download",
                            "busybox-static"], cwd=debs, capture_output=True, text=True)
        found = sorted(n for n in os.listdir(debs) if n.startswith("busybox-static_"))
        if r.returncode != 0 or not found:
            raise ContainerError(f"cannot fetch busybox-static for the guest's init: {r.stderr.strip()}")
    import tempfile

    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(dest)) as tmp:
        r = subprocess.run(["dpkg-deb", "-x", os.path.join(debs, found[-1]), tmp],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise ContainerError(f"dpkg-deb -x {found[-1]} failed: {r.stderr.strip()}")
        os.rename(os.path.join(tmp, "bin", "busybox"), dest)
    return dest


# --- the archive --------------------------------------------------------------------------
# An entry: (name in archive, mode, uid, gid, rdev, data: bytes | host path | None).

def _rootfs_entries(rootfs: str, manifest: bool = False) -> list[tuple]:
    """The rootfs as archive entries; with MANIFEST, a regular file's data is its size,
    mtime_ns and ctime_ns instead of its path (for the cache key: nothing is read)."""
    entries = []
    for top, dirs, files in os.walk(rootfs):
        dirs.sort()
        rel_top = os.path.relpath(top, rootfs)
        for name in dirs + sorted(files):
            path = os.path.join(top, name)
            rel = os.path.normpath(os.path.join(rel_top, name))
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                data = os.readlink(path).encode()
            elif stat.S_ISREG(st.st_mode):
                data = f"{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}".encode() if manifest else path
            else:
                data = None
            entries.append((rel, st.st_mode, st.st_uid, st.st_gid, st.st_rdev, data))
            if stat.S_ISLNK(st.st_mode) and name in dirs:
                dirs.remove(name)  # os.walk does not follow it anyway; keep the order stable
    return entries


def _manifest_key(entries: list[tuple], kernel, modules: dict) -> str:
    """The cache key: a hash of what the archive would hold, from metadata only (see the
    module docstring). Host files (data given as a path) count by their stat."""
    h = hashlib.sha256(b"minicontainer-initramfs-v2\0")
    for name, mode, uid, gid, rdev, data in entries:
        h.update(f"{name}\0{mode}\0{uid}\0{gid}\0{rdev}\0".encode())
        if isinstance(data, str):
            st = os.stat(data)
            h.update(f"{os.path.realpath(data)}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0"
                     f"{st.st_ino}".encode())
        elif data is not None:
            h.update(data)
        h.update(b"\0\0")
    h.update(f"kernel\0{kernel.version}\0{kernel.modules}\0".encode())
    if kernel.modules:
        for name in ("", "modules.dep", "modules.builtin"):
            try:
                st = os.stat(os.path.join(kernel.modules, name))
                h.update(f"{name}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\0".encode())
            except OSError:
                h.update(f"{name}\0-\0".encode())
    for group, names in sorted(modules.items()):
        h.update(f"group\0{group}\0{','.join(names)}\0".encode())
    return h.hexdigest()



def write_cpio(entries: list[tuple], out) -> None:
    """newc format: a 110-byte ASCII header, the NUL-terminated name, the data, each padded
    to 4 bytes; a TRAILER!!! entry ends the archive. Later entries replace earlier ones."""
    for ino, (name, mode, uid, gid, rdev, data) in enumerate(entries, start=1):
        if isinstance(data, str):
            with open(data, "rb") as f:
                data = f.read()
        body = data or b""
        _header(out, ino, name, mode, uid, gid, len(body), rdev)
        out.write(body)
        out.write(b"\0" * (-len(body) % 4))
    _header(out, 0, "TRAILER!!!", 0, 0, 0, 0, 0)


def _header(out, ino, name, mode, uid, gid, size, rdev) -> None:
    encoded = name.encode() + b"\0"
    fields = (ino, mode, uid, gid, 1, 0, size, 0, 0, os.major(rdev), os.minor(rdev), len(encoded), 0)
    out.write(b"070701" + "".join(f"{v:08x}" for v in fields).encode() + encoded)
    out.write(b"\0" * (-(110 + len(encoded)) % 4))


def build_initramfs(rootfs: str, kernel, modules: dict = DEVICE_MODULES,
                    extra_files=(), init: str = INIT) -> str:
    """Pack ROOTFS with the init, busybox, the module groups MODULES ({group: [module names]},
    dependencies added) and EXTRA_FILES ([(archive path, bytes or host path, mode)]).
    Returns the path of the cached archive."""
    if not os.path.isdir(rootfs):
        what = "is not a directory" if os.path.exists(rootfs) else "does not exist"
        raise ContainerError(f"rootfs {rootfs} {what}")
    d = 0o40755
    fixed = [("dev", d, 0, 0, 0, None), ("dev/console", 0o20600, 0, 0, os.makedev(5, 1), None),
             (".minicontainer", d, 0, 0, 0, None), (".minicontainer/modules", d, 0, 0, 0, None),
             (".minicontainer/hooks", d, 0, 0, 0, None),
             (".minicontainer/busybox", 0o100755, 0, 0, 0, guest_busybox()),
             ("init", 0o100755, 0, 0, 0, init.encode())]
    extras = [(name.lstrip("/"), stat.S_IFREG | mode, 0, 0, 0, data) for name, data, mode in extra_files]

    cache = os.path.join(kernels.cache_dir(), "initramfs")
    key = _manifest_key(_rootfs_entries(rootfs, manifest=True) + fixed + extras, kernel, modules)
    dest = os.path.join(cache, key[:32] + ".cpio")
    if os.path.isfile(dest):
        return dest

    entries = _rootfs_entries(rootfs) + fixed
    for group, names in sorted(modules.items()):
        entries.append((f".minicontainer/modules/{group}", d, 0, 0, 0, None))
        for i, path in enumerate(kernels.module_closure(kernel, names) if kernel.modules else []):
            entries.append((f".minicontainer/modules/{group}/{i:02d}-{os.path.basename(path)}",
                            0o100644, 0, 0, 0, path))
    entries += extras
    os.makedirs(cache, exist_ok=True)
    tmp = f"{dest}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as out:
            write_cpio(entries, out)
        os.rename(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return dest
