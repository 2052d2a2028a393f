"""Mount targets are resolved inside the container's root, never on the host (issue 9).

Each test performs the attack: a rootfs (a throwaway copy of ./rootfs) holding a symlink to a
host directory, or a `..` symlink, and a volume, tmpfs, working directory or OCI mount
through it. The host directory must stay untouched and the mount must be where the
container's own view of the path leads: inside it, as with docker. Also: a symlink swapped in
between resolving and mounting, the fallback walk, and read-only all the way down.
"""
from __future__ import annotations

import errno
import json
import os
import subprocess

import pytest

from conftest import PYTHON, REPO
from test_lifecycle import make_bundle, oci_create, wait_for


@pytest.fixture
def evil(tmp_path, rootfs):
    """(rootfs copy, host target dir): the copy has /evil -> the target's absolute host path
    (which does not exist inside the copy: a dangling symlink there)."""
    copy = tmp_path / "rootfs"
    subprocess.run(["cp", "-a", rootfs, str(copy)], check=True)
    target = tmp_path / "target"
    target.mkdir()
    os.symlink(str(target), copy / "evil")
    return copy, target


def sh(mc, *args):
    r = mc("run", *args)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_file_volume_through_symlink_lands_inside(mc, evil, tmp_path):
    copy, target = evil
    src = tmp_path / "secret.txt"
    src.write_text("volume content\n")
    out = sh(mc, "-v", f"{src}:/evil/newfile", str(copy), "cat", f"{target}/newfile")
    assert out == "volume content\n"  # mounted at the symlink's target inside the container
    assert os.listdir(target) == []   # and nothing made on the host


def test_dir_volume_with_missing_nested_dirs_lands_inside(mc, evil, tmp_path):
    copy, target = evil
    src = tmp_path / "vol"
    src.mkdir()
    (src / "in-volume").write_text("x")
    out = sh(mc, "-v", f"{src}:/evil/a/b", str(copy), "ls", f"{target}/a/b")
    assert out.split() == ["in-volume"]
    assert os.listdir(target) == []


def test_tmpfs_through_symlink_lands_inside(mc, evil):
    copy, target = evil
    out = sh(mc, "--tmpfs", "/evil/t", str(copy), "grep", f" {target}/t ", "/proc/self/mountinfo")
    assert " - tmpfs " in out
    assert os.listdir(target) == []


def test_workdir_through_symlink_lands_inside(mc, evil):
    copy, target = evil
    assert sh(mc, "-w", "/evil/w", str(copy), "pwd").strip() == f"{target}/w"
    assert os.listdir(target) == []


def test_dotdot_symlink_stays_in_the_root(mc, evil, tmp_path):
    """up -> ../../../../.. climbs to the host's / from the copy, but to the container's /
    inside it: the volume is at /escape-NAME inside, and nothing appears on the host."""
    copy, _ = evil
    name = f"escape-{os.getpid()}-{tmp_path.name}"
    os.symlink("../../../../../../..", copy / "up")
    src = tmp_path / "f"
    src.write_text("here\n")
    out = sh(mc, "-v", f"{src}:/up/{name}", str(copy), "cat", f"/{name}")
    assert out == "here\n"
    assert not os.path.exists(f"/{name}")


def test_oci_bind_through_symlink_lands_inside(mc, mc_cmd, evil, tmp_path):
    copy, target = evil
    src = tmp_path / "vol"
    src.mkdir()
    (src / "in-volume").write_text("x")
    bundle = make_bundle(tmp_path, str(copy), ["ls", f"{target}/v"])
    config = json.loads(open(f"{bundle}/config.json").read())
    config["root"]["readonly"] = False
    config["mounts"].append({"destination": "/evil/v", "type": "bind", "source": str(src),
                             "options": ["rbind", "ro"]})
    open(f"{bundle}/config.json", "w").write(json.dumps(config))
    out = tmp_path / "out"
    with open(out, "w") as f:
        r = oci_create(mc_cmd, tmp_path, "--bundle", bundle, "sym", stdout=f)
    assert r.returncode == 0, r.stderr
    assert mc("start", "sym").returncode == 0
    assert wait_for(lambda: json.loads(mc("state", "sym").stdout)["status"] == "stopped")
    assert mc("delete", "sym").returncode == 0
    assert out.read_text().split() == ["in-volume"]
    assert os.listdir(target) == []
    assert (copy / str(target).lstrip("/") / "v").is_dir()  # the mount point, made in the root


def in_mount_namespace(script: str) -> subprocess.CompletedProcess:
    """Run Python `script` as root in a private mount namespace (its mounts die with it)."""
    return subprocess.run(["unshare", "--mount", "--propagation", "private", PYTHON, "-c",
                           script], cwd=REPO, capture_output=True, text=True, timeout=60)


def test_symlink_swapped_after_resolving_cannot_redirect_the_mount(evil, tmp_path):
    """The race, made deterministic: resolve /dir/sub, then swap /dir for a symlink to the
    host's target, then mount. Through the fd the mount lands on the directory that was
    resolved (now renamed away), never on the host target."""
    copy, target = evil
    (copy / "dir" / "sub").mkdir(parents=True)
    r = in_mount_namespace(f"""
import os
from minicontainer.runtime import rootfs
root = rootfs.open_root({str(copy)!r})
fd = rootfs.resolve(root, "/dir/sub")
os.rename({str(copy / 'dir')!r}, {str(copy / 'old')!r})
os.symlink({str(target)!r}, {str(copy / 'dir')!r})
os.mkdir({str(target / 'sub')!r})
rootfs.mount("tmpfs", rootfs.fd_path(fd), "tmpfs", 0, "size=1m")
open({str(copy / 'old/sub/made-on-tmpfs')!r}, "w").close()
print(sorted(os.listdir({str(target / 'sub')!r})), os.path.ismount({str(copy / 'old/sub')!r}))
""")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[0] == "[] True"


def test_fallback_walk_resolves_like_openat2(evil):
    """The per-component walk (kernels without openat2): symlinks absolute, relative and `..`
    are followed inside the root, what is missing is made there, a loop is ELOOP."""
    copy, target = evil
    os.symlink("../../..", copy / "up")
    os.symlink("loop", copy / "loop")
    from minicontainer.runtime import rootfs

    root = rootfs.open_root(str(copy))
    try:
        def where(path, create=None):
            fd = rootfs._walk(root, path, create)
            try:
                return os.readlink(f"/proc/self/fd/{fd}")
            finally:
                os.close(fd)

        assert where("evil/a/b", "dir") == f"{copy}{target}/a/b"
        assert where("up/etc/passwd") == f"{copy}/etc/passwd"
        assert where("evil/a/..") == f"{copy}{target}"  # .. after a symlink: from its target
        assert where("up/../../bin/../etc") == f"{copy}/etc"  # and never above the root
        assert where("evil/file", "file") == f"{copy}{target}/file"
        assert os.path.isfile(f"{copy}{target}/file")
        with pytest.raises(OSError) as e:
            where("loop/x")
        assert e.value.errno == errno.ELOOP
        with pytest.raises(OSError) as e:
            where("etc/passwd/x", "dir")
        assert e.value.errno == errno.ENOTDIR
        assert os.listdir(target) == []
    finally:
        os.close(root)


def test_ro_volume_is_read_only_all_the_way_down(mc_cmd, tmp_path, rootfs):
    """A mount nested under a :ro volume's source is read-only inside too (EROFS), as with
    docker 25+; without :ro both are writable. The nested mount lives in a private mount
    namespace around the runtime."""
    src = tmp_path / "src"
    (src / "nested").mkdir(parents=True)
    run = " ".join(mc_cmd)
    script = (f"mount -t tmpfs nested {src}/nested && "
              f"{run} run -v {src}:/v:ro {rootfs} sh -c 'touch /v/nested/x; touch /v/y'; "
              f"{run} run -v {src}:/v {rootfs} sh -c 'touch /v/nested/ok && echo writable'")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, timeout=60)
    assert "touch: /v/nested/x: Read-only file system" in r.stderr
    assert "touch: /v/y: Read-only file system" in r.stderr
    assert r.stdout.strip() == "writable"


def test_read_only_root_is_read_only_all_the_way_down(mc_cmd, tmp_path, rootfs):
    """--read-only: a mount the rootfs directory carries on the host is read-only inside too;
    the container's own /dev/shm and --tmpfs stay writable."""
    copy = tmp_path / "rootfs"
    subprocess.run(["cp", "-a", rootfs, str(copy)], check=True)
    run = " ".join(mc_cmd)
    script = (f"mount -t tmpfs sub {copy}/mnt && "
              f"{run} run --read-only --tmpfs /tmp {copy} sh -c "
              "'touch /mnt/x; touch /x; touch /dev/shm/ok /tmp/ok && echo own-writable'")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, timeout=60)
    assert "touch: /mnt/x: Read-only file system" in r.stderr
    assert "touch: /x: Read-only file system" in r.stderr
    assert r.stdout.strip() == "own-writable"


def test_oci_device_through_symlink_lands_inside(mc, mc_cmd, evil, tmp_path):
    """linux.devices paths are resolved the same way: the node is made inside the root."""
    copy, target = evil
    bundle = make_bundle(tmp_path, str(copy), ["ls", "-l", f"{target}/mydev"])
    config = json.loads(open(f"{bundle}/config.json").read())
    config["root"]["readonly"] = False
    config["linux"]["devices"] = [{"path": "/evil/mydev", "type": "c", "major": 1, "minor": 3,
                                   "fileMode": 0o666}]
    open(f"{bundle}/config.json", "w").write(json.dumps(config))
    out = tmp_path / "out"
    with open(out, "w") as f:
        r = oci_create(mc_cmd, tmp_path, "--bundle", bundle, "dev", stdout=f)
    assert r.returncode == 0, r.stderr
    assert mc("start", "dev").returncode == 0
    assert wait_for(lambda: json.loads(mc("state", "dev").stdout)["status"] == "stopped")
    assert mc("delete", "dev").returncode == 0
    assert out.read_text().startswith("crw-rw-rw-")
    assert os.listdir(target) == []


def test_classic_bind_fallback_is_read_only_all_the_way_down(tmp_path):
    """Where open_tree/mount_setattr are missing: mount(2) through the fd, then every mount
    under the target remounted read-only from /proc/self/mountinfo."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "nested").mkdir(parents=True)
    dst.mkdir()
    r = in_mount_namespace(f"""
import os
from minicontainer.runtime import rootfs
rootfs.mount("nested", {str(src / 'nested')!r}, "tmpfs", 0, "size=1m")
fd = os.open({str(dst)!r}, os.O_PATH | os.O_CLOEXEC)
rootfs._bind_classic({str(src)!r}, fd, True, rootfs.MS_RDONLY, ())
for path in ({str(dst / 'x')!r}, {str(dst / 'nested/x')!r}):
    try:
        open(path, "w")
        print("writable", path)
    except OSError as e:
        print(e.errno)
""")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(errno.EROFS)] * 2


def test_volume_through_a_symlink_into_proc_is_refused(mc, evil, tmp_path):
    """myproc -> /proc/sys: a volume there would cover the container's /proc/sys with a host
    directory; refused (runc's CVE-2019-19921 check), nothing left."""
    copy, _ = evil
    os.symlink("/proc/sys", copy / "myproc")
    r = mc("run", "-v", f"{tmp_path}:/myproc", str(copy), "true")
    assert r.returncode == 125
    assert r.stderr.strip() == ("minicontainer: mount target /myproc leads into /proc "
                                "(/proc/sys) through a symlink: refused")
