"""config.json's root, mounts and linux.sysctl, as runc has them (issue 10 items 1-2, issue 9
item 7): root.path is the container's root (writes land there), root.readonly, every mount
applied in order with its type, options and propagation (seen in /proc/self/mountinfo
inside), the refusals, and sysctls limited to the container's own namespaces. The pure parts
(option parsing, the sysctl check) also run as unit tests, without root."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from test_lifecycle import make_bundle, oci_create, wait_for
from test_podman import podman, run_id, runtime_state_gone  # noqa: F401  (podman: a fixture)


@pytest.fixture
def root_copy(tmp_path, rootfs):
    copy = tmp_path / "rootfs"
    subprocess.run(["cp", "-a", rootfs, str(copy)], check=True)
    return copy


def run_bundle(mc, mc_cmd, tmp_path, root, script, mounts=(), cid="m", **changes):
    """create + start a bundle running `sh -c script`; (create's result, the output)."""
    bundle = make_bundle(tmp_path, str(root), ["sh", "-c", script])
    config = json.loads(open(f"{bundle}/config.json").read())
    config["mounts"] += list(mounts)
    for key, value in changes.items():
        section, _, field = key.partition("__")
        config[section][field] = value
    open(f"{bundle}/config.json", "w").write(json.dumps(config))
    out = tmp_path / f"{cid}.out"
    with open(out, "w") as f:
        r = oci_create(mc_cmd, tmp_path, "--bundle", bundle, cid, stdout=f)
    if r.returncode != 0:
        assert mc("state", cid).returncode != 0  # refused: nothing was made
        return r, ""
    assert mc("start", cid).returncode == 0
    assert wait_for(lambda: json.loads(mc("state", cid).stdout)["status"] == "stopped")
    assert mc("delete", cid).returncode == 0
    return r, out.read_text()


def mountinfo_line(out: str, point: str) -> str:
    """The mountinfo line (from `cat /proc/self/mountinfo` inside) of mount point `point`."""
    lines = [ln for ln in out.splitlines() if len(ln.split()) > 4 and ln.split()[4] == point]
    assert lines, f"{point} not mounted:\n{out}"
    return lines[-1]


def options_of(line: str) -> set[str]:
    return set(line.split()[5].split(","))


# -- root.path and root.readonly --

def test_bundle_root_is_written_in_place(mc, mc_cmd, tmp_path, root_copy):
    """No throwaway overlay: what the container writes lands in root.path, and a 0:0 char
    device (an overlay whiteout) in it is an ordinary node."""
    os.mknod(root_copy / "zero-zero", 0o20600, os.makedev(0, 0))
    r, out = run_bundle(mc, mc_cmd, tmp_path, root_copy,
                        "echo written > /written; ls -l /zero-zero | cut -c1",
                        root__readonly=False)
    assert r.returncode == 0, r.stderr
    assert out.strip() == "c"
    assert (root_copy / "written").read_text() == "written\n"


def test_bundle_root_readonly(mc, mc_cmd, tmp_path, root_copy):
    """root.readonly: EROFS on / ; a missing mount point is still made first, as runc does,
    and the container's own mounts keep their flags."""
    r, out = run_bundle(mc, mc_cmd, tmp_path, root_copy,
                        "touch /x 2>&1; touch /newdir/ok && echo tmpfs-writable",
                        mounts=[{"destination": "/newdir", "type": "tmpfs", "source": "tmpfs"}],
                        root__readonly=True)
    assert r.returncode == 0, r.stderr
    assert out.splitlines() == ["touch: /x: Read-only file system", "tmpfs-writable"]
    assert (root_copy / "newdir").is_dir() and not (root_copy / "x").exists()


# -- every mount kind --

KINDS = [
    {"destination": "/k/bind", "type": "bind", "source": "SRC", "options": ["bind"]},
    {"destination": "/k/rbind", "type": "none", "source": "SRC", "options": ["rbind"]},
    {"destination": "/k/tmpfs", "type": "tmpfs", "source": "tmpfs",
     "options": ["size=1m", "mode=700", "uid=7"]},
    {"destination": "/k/proc", "type": "proc", "source": "proc"},  # refused: under /proc only /proc
    {"destination": "/k/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]},
    {"destination": "/k/pts", "type": "devpts", "source": "devpts",
     "options": ["newinstance", "ptmxmode=0666"]},
    {"destination": "/k/mq", "type": "mqueue", "source": "mqueue"},
    {"destination": "/k/cg1", "type": "cgroup", "source": "cgroup", "options": ["ro"]},
    {"destination": "/k/cg2", "type": "cgroup2", "source": "cgroup2", "options": ["ro"]},
]


@pytest.fixture
def kinds(mc, mc_cmd, tmp_path, root_copy):
    src = tmp_path / "src"
    src.mkdir()
    (src / "from-host").write_text("x")
    mounts = [dict(m, source=str(src)) if m["source"] == "SRC" else m for m in KINDS]
    r, out = run_bundle(mc, mc_cmd, tmp_path, root_copy,
                        "cat /proc/self/mountinfo; ls /k/bind /k/rbind; stat -c %a /k/tmpfs; "
                        "ls -l /dev/null | cut -c1; readlink /dev/fd; readlink /dev/ptmx",
                        mounts=mounts, root__readonly=False)
    assert r.returncode == 0, r.stderr
    return out


def test_bind_and_rbind(kinds):
    assert "ro" not in options_of(mountinfo_line(kinds, "/k/bind"))
    assert kinds.count("from-host") == 2


def test_tmpfs_with_size_mode_and_data(kinds):
    line = mountinfo_line(kinds, "/k/tmpfs")
    assert " - tmpfs tmpfs " in line and "size=1024k" in line and "uid=7" in line
    assert "700" in kinds.split()


def test_proc_mount(kinds):
    assert " - proc proc " in mountinfo_line(kinds, "/k/proc")


def test_sysfs_read_only(kinds):
    line = mountinfo_line(kinds, "/k/sys")
    assert " - sysfs " in line and "ro" in options_of(line)


def test_devpts_with_its_data(kinds):
    line = mountinfo_line(kinds, "/k/pts")
    assert " - devpts " in line and "ptmxmode=666" in line


def test_mqueue_mount(kinds):
    assert " - mqueue " in mountinfo_line(kinds, "/k/mq")


def test_cgroup_v1_type_is_mounted_as_cgroup2(kinds):
    for point in ("/k/cg1", "/k/cg2"):
        line = mountinfo_line(kinds, point)
        assert " - cgroup2 " in line and "ro" in options_of(line)


def test_dev_tmpfs_gets_the_default_devices_and_links(kinds):
    assert " - tmpfs " in mountinfo_line(kinds, "/dev")
    tail = kinds.split()[-3:]
    assert tail == ["c", "/proc/self/fd", "pts/ptmx"]


def test_tmpfs_tmpcopyup(mc, mc_cmd, tmp_path, root_copy):
    """tmpcopyup (runc's extension, sent by podman): the tmpfs starts with what the
    directory held, with owners, modes and links; ro still applies after the copy."""
    os.makedirs(root_copy / "etc" / "sub")
    os.chown(root_copy / "etc" / "sub", 7, 8)
    os.symlink("passwd", root_copy / "etc" / "link")
    r, out = run_bundle(mc, mc_cmd, tmp_path, root_copy,
                        "grep -c root /etc/link; stat -c '%u:%g %a' /etc/sub; "
                        "touch /etc/x 2>&1; grep ' /etc ' /proc/self/mountinfo",
                        mounts=[{"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
                                 "options": ["tmpcopyup", "ro", "size=1m"]}],
                        root__readonly=False)
    assert r.returncode == 0, r.stderr
    lines = out.splitlines()
    assert lines[:3] == ["1", "7:8 755", "touch: /etc/x: Read-only file system"]
    assert " - tmpfs " in lines[3] and "ro" in options_of(lines[3])


# -- every option, on a bind and on a tmpfs --

FLAG_OPTIONS = ["ro", "nosuid", "nodev", "noexec", "noatime", "nodiratime", "relatime"]


@pytest.fixture
def options(mc, mc_cmd, tmp_path, root_copy):
    src = tmp_path / "src"
    src.mkdir()
    mounts = []
    for o in FLAG_OPTIONS + ["strictatime"]:
        mounts.append({"destination": f"/b/{o}", "type": "bind", "source": str(src),
                       "options": ["rbind", o]})
        mounts.append({"destination": f"/t/{o}", "type": "tmpfs", "source": "tmpfs",
                       "options": [o]})
    for p in ("shared", "slave", "private", "unbindable", "rshared", "rslave", "rprivate",
              "runbindable"):
        # slave of what: a mount is made shared first (applied in order, as runc does)
        order = ["shared", p] if p.endswith("slave") else [p]
        mounts.append({"destination": f"/p/{p}", "type": "bind", "source": str(src),
                       "options": ["rbind"] + order})
        mounts.append({"destination": f"/pt/{p}", "type": "tmpfs", "source": "tmpfs",
                       "options": order})
    mounts.append({"destination": "/b/rw", "type": "bind", "source": str(src),
                   "options": ["rbind", "rw", "suid", "dev", "exec"]})
    r, out = run_bundle(mc, mc_cmd, tmp_path, root_copy, "cat /proc/self/mountinfo",
                        mounts=mounts, root__readonly=False)
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.parametrize("option", FLAG_OPTIONS)
def test_flag_option_applied(options, option):
    for point in (f"/b/{option}", f"/t/{option}"):
        assert option in options_of(mountinfo_line(options, point)), point


def test_strictatime_and_the_defaults(options):
    for point in ("/b/strictatime", "/t/strictatime"):
        opts = options_of(mountinfo_line(options, point))
        assert not opts & {"relatime", "noatime"}, point
    opts = options_of(mountinfo_line(options, "/b/rw"))
    assert "rw" in opts and not opts & {"nosuid", "nodev", "noexec"}


@pytest.mark.parametrize("prop,seen", [("shared", "shared:"), ("slave", None),
                                       ("unbindable", "unbindable"), ("private", None)])
def test_propagation_applied(options, prop, seen):
    """mountinfo's optional fields. slave comes after shared (["shared", "slave"]): the
    mount was the only member of its peer group (this host's / is private, so a bind has no
    master to follow), and a slave of nothing is private: no "shared:" left shows it applied."""
    for point in (f"/p/{prop}", f"/p/r{prop}", f"/pt/{prop}", f"/pt/r{prop}"):
        fields = mountinfo_line(options, point).split(" - ")[0].split()[6:]
        if seen is None:
            assert fields == [], point
        else:
            assert any(f.startswith(seen) for f in fields), (point, fields)


def test_rootfs_propagation(mc, mc_cmd, tmp_path, root_copy):
    config = {"linux__rootfsPropagation": "rshared", "root__readonly": False}
    r, out = run_bundle(mc, mc_cmd, tmp_path, root_copy, "cat /proc/self/mountinfo", **config)
    assert r.returncode == 0, r.stderr
    assert "shared:" in mountinfo_line(out, "/").split(" - ")[0]


@pytest.mark.parametrize("mount,named", [
    ({"destination": "/x", "type": "ext4", "source": "/dev/sda1"}, "of type 'ext4'"),
    ({"destination": "/x", "type": "tmpfs", "source": "tmpfs", "options": ["bogus"]},
     "option 'bogus'"),
    ({"destination": "/x", "type": "proc", "source": "proc", "options": ["tmpcopyup"]},
     "option 'tmpcopyup'"),
    ({"destination": "/proc/sys", "type": "bind", "source": "/tmp", "options": ["rbind"]},
     "mount /proc/sys"),
])
def test_unknown_type_or_option_refused(mc, mc_cmd, tmp_path, rootfs, mount, named):
    r, _ = run_bundle(mc, mc_cmd, tmp_path, rootfs, "true", mounts=[mount])
    assert r.returncode == 125
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], r.stderr


# -- linux.sysctl --

def test_sysctl_written_inside_host_unchanged(mc, mc_cmd, tmp_path, rootfs):
    host = open("/proc/sys/kernel/shmmni").read()
    r, out = run_bundle(mc, mc_cmd, tmp_path, rootfs, "cat /proc/sys/kernel/shmmni "
                        "/proc/sys/net/ipv4/ip_forward",
                        linux__sysctl={"kernel.shmmni": "1234", "net.ipv4.ip_forward": "1"})
    assert r.returncode == 0, r.stderr
    assert out.split() == ["1234", "1"]
    assert open("/proc/sys/kernel/shmmni").read() == host


@pytest.mark.parametrize("key,why", [
    ("kernel.printk_ratelimit", "not in a namespace of the container's own"),
    ("net.ipv4.ip_forward", "shares the host's net namespace"),
    ("net/ipv4/../../kernel/printk", "not a sysctl name"),
])
def test_sysctl_refused(mc, mc_cmd, tmp_path, rootfs, key, why):
    host = open("/proc/sys/kernel/printk_ratelimit").read()
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]  # the host's network
    r, _ = run_bundle(mc, mc_cmd, tmp_path, rootfs, "true", linux__sysctl={key: "1"},
                      linux__namespaces=namespaces)
    assert r.returncode == 125
    assert r.stderr.strip().count("\n") == 0 and key in r.stderr and why in r.stderr
    assert open("/proc/sys/kernel/printk_ratelimit").read() == host


# -- the pure parts, without root --

@pytest.mark.unit
def test_parse_mount_options():
    from minicontainer import oci
    from minicontainer.kernel import syscalls as s

    m = oci.parse_mount({"destination": "/a/../b/", "type": "bind", "source": "v",
                         "options": ["rbind", "ro", "nosuid", "noatime", "rslave"]}, "/bundle")
    assert (m.kind, m.source, m.target, m.recursive) == ("bind", "/bundle/v", "/b", True)
    assert m.flags == s.MS_RDONLY | s.MS_NOSUID | s.MS_NOATIME
    assert m.propagation == (s.MS_SLAVE | s.MS_REC,)
    m = oci.parse_mount({"destination": "/t", "type": "tmpfs", "source": "tmpfs",
                         "options": ["nodev", "size=1m", "mode=755", "unbindable"]}, "/b")
    assert (m.kind, m.options, m.flags, m.propagation) == \
        ("tmpfs", "size=1m,mode=755", s.MS_NODEV, (s.MS_UNBINDABLE,))
    assert oci.parse_mount({"destination": "/c", "type": "cgroup"}, "/b").kind == "cgroup2"
    assert not oci.parse_mount({"destination": "/b", "type": "bind", "source": "/s",
                                "options": ["bind"]}, "/").recursive
    for bad in ({"destination": "rel", "type": "tmpfs"}, {"destination": "/", "type": "tmpfs"},
                {"destination": "/x", "type": "nfs"},
                {"destination": "/x", "type": "bind", "source": "/s", "options": ["size=1"]},
                {"destination": "/proc/self", "type": "bind", "source": "/s"}):
        with pytest.raises(oci.ContainerError):
            oci.parse_mount(bad, "/b")


@pytest.mark.unit
def test_sysctl_validation():
    from minicontainer import oci

    everything = {"ipc", "net", "uts"}
    oci.check_sysctl({"kernel.shmmax": "1", "fs.mqueue.msg_max": "1", "net.core.somaxconn": "1",
                      "kernel.hostname": "x", "kernel.msgmnb": "1", "kernel.sem": "1 2 3 4"},
                     everything)
    for key, own in (("kernel.printk_ratelimit", everything), ("vm.swappiness", everything),
                     ("kernel.shmmax", {"net", "uts"}), ("net.ipv4.ip_forward", {"ipc"}),
                     ("kernel.domainname", {"ipc"}), ("net..x", everything),
                     ("net.ipv4/../../x", everything), ("net.", everything)):
        with pytest.raises(oci.Refused) as e:
            oci.check_sysctl({key: "1"}, own)
        assert key in str(e.value)


# -- a real client: podman (with the workarounds of tests/test_podman.py) --

def test_podman_volumes_and_writes_reach_the_bundle_root(podman, state_root, tmp_path):
    """What issue 10 saw lost: podman's volume, /etc/hosts, /etc/hostname and
    /run/.containerenv are there
    inside, and a file written in the container is still there when it starts again (its
    writes reach root.path, podman's own overlay layer)."""
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "from-host").write_text("hello\n")
    r, cid = run_id(podman, "--name", "keeper", "--network", "none", "-v", f"{vol}:/data",
                    "localhost/busybox", "sh", "-c",
                    "cat /data/from-host; test -f /run/.containerenv && echo containerenv; "
                    "grep -c -e ' /etc/hostname ' -e ' /etc/hosts ' /proc/self/mountinfo; "
                    "echo kept > /kept")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["hello", "containerenv", "2"]  # podman's binds, both there
    r = podman("start", "-a", "keeper")  # the same command again, in the same root
    assert r.returncode == 0, r.stderr
    r = podman("diff", "keeper")
    assert "A /kept" in r.stdout, r.stdout
    assert podman("rm", "keeper").returncode == 0
    assert runtime_state_gone(state_root)
