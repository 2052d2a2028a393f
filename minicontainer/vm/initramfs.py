"""The guest's root filesystem: the user's rootfs packed into an initramfs, with a small init.

    build_initramfs(rootfs, kernel, modules=DEVICE_MODULES, extra_files=()) -> path
        A newc cpio (what the kernel unpacks into its first root), written in pure Python and
        cached under CACHE/initramfs/ by a hash of everything that goes in: the rootfs' paths,
        modes, owners and contents, the init, the modules and the extra files. The same rootfs
        boots again without packing anything.

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
# (mcmods, mcdisk, mctty...) and the words after `--` as arguments: the run's settings,
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

unset mcmods mcdisk
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
    $B printf '\001MC-READY\001' >/dev/$mcconsole  # the host sends stdin from now on
    if [ "$mcstdin" = 1 ]; then "$@"; else "$@" </dev/null; fi
    status=$?
fi
used=$($B awk '/^MemTotal:/{t=$2} /^MemAvailable:/{a=$2} END{print t-a}' /proc/meminfo)
$B printf '\001MC-EXIT %s %s %s\001\n' "$status" "$used" "$($B uname -r)" >/dev/$mcconsole
$B stty -F /dev/$mcconsole -a >/dev/null 2>&1  # returns once the console has drained
$B poweroff -f
"""


def guest_busybox() -> str:
    """A static busybox for the init, from Debian's busybox-static (the same package
    rootfs/build.sh uses), unpacked once into the cache."""
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

def _rootfs_entries(rootfs: str) -> list[tuple]:
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
                data = path
            else:
                data = None
            entries.append((rel, st.st_mode, st.st_uid, st.st_gid, st.st_rdev, data))
            if stat.S_ISLNK(st.st_mode) and name in dirs:
                dirs.remove(name)  # os.walk does not follow it anyway; keep the order stable
    return entries


def _digest(entries: list[tuple]) -> str:
    h = hashlib.sha256()
    for name, mode, uid, gid, rdev, data in entries:
        h.update(f"{name}\0{mode}\0{uid}\0{gid}\0{rdev}\0".encode())
        if isinstance(data, str):
            with open(data, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        elif data is not None:
            h.update(data)
        h.update(b"\0\0")
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
    entries = _rootfs_entries(rootfs)
    d = 0o40755
    entries += [("dev", d, 0, 0, 0, None), ("dev/console", 0o20600, 0, 0, os.makedev(5, 1), None),
                (".minicontainer", d, 0, 0, 0, None), (".minicontainer/modules", d, 0, 0, 0, None),
                (".minicontainer/hooks", d, 0, 0, 0, None),
                (".minicontainer/busybox", 0o100755, 0, 0, 0, guest_busybox()),
                ("init", 0o100755, 0, 0, 0, init.encode())]
    for group, names in sorted(modules.items()):
        entries.append((f".minicontainer/modules/{group}", d, 0, 0, 0, None))
        for i, path in enumerate(kernels.module_closure(kernel, names) if kernel.modules else []):
            entries.append((f".minicontainer/modules/{group}/{i:02d}-{os.path.basename(path)}",
                            0o100644, 0, 0, 0, path))
    for name, data, mode in extra_files:
        entries.append((name.lstrip("/"), stat.S_IFREG | mode, 0, 0, 0, data))

    cache = os.path.join(kernels.cache_dir(), "initramfs")
    dest = os.path.join(cache, _digest(entries)[:32] + ".cpio")
    if os.path.isfile(dest):
        return dest
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
