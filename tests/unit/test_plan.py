"""The child's plan (runtime/plan.py): which steps, in which order, for a spec. Pure data: no
syscall, nothing read or made, so each plan is checked here as any user."""
from __future__ import annotations

import copy

import pytest

from minicontainer import oci
from minicontainer.errors import ContainerError
from minicontainer.cli import run
from minicontainer.kernel.syscalls import MS_NODEV, MS_NOSUID, MS_REC, MS_SHARED
from minicontainer.runtime import plan, rootfs
from minicontainer.runtime.plan import (
    Chdir, DropPrivileges, Environment, Exec, FindExecutable, Init, JoinNamespaces, LoopbackUp,
    MakeDevice, MakeMountsPrivate, MaskPath, MountRoot, OpenWorkdir, OutliveRuntime, Point,
    ReadonlyPath, RootPropagation, Seccomp, SessionKeyring, SetHostname, SetUser, SwitchRoot,
    Sysctl, SystemMount, Umask, Unshare, UserMount, WaitForStart)
from minicontainer.spec import Mount


class Paths:
    """A container's paths, as state.Container has them."""
    id = "c0ffee" * 4
    rootfs, upper, work = "/s/c/rootfs", "/s/c/upper", "/s/c/work"


def cli_plan(*args, **kw):
    spec = run.build_spec(*run.parse([*args, "/images/r", "/bin/true"]))
    return spec, plan.plan(spec, Paths, spec.hostname or Paths.id[:12], **kw)


def kinds(ops):
    return [type(op).__name__ for op in ops]


OVERLAY = MountRoot("overlay", "/images/r", Paths.rootfs,
                    "lowerdir=/images/r,upperdir=/s/c/upper,workdir=/s/c/work,volatile", False)
SYSTEM = [SystemMount(entry) for entry in rootfs.SYSTEM_MOUNTS]
MASKS = [MaskPath(p) for p in rootfs.MASKED_PATHS] + \
    [ReadonlyPath(p) for p in rootfs.READONLY_PATHS]


def test_the_default_run_from_unshare_to_execve():
    spec, ops = cli_plan()
    assert ops == [
        Unshare(("mnt", "uts", "ipc", "net", "cgroup")),  # pid: made by clone3
        SetHostname("c0ffeec0ffee"),
        LoopbackUp(),
        MakeMountsPrivate(),
        OVERLAY,
        *SYSTEM,
        SwitchRoot(True, Paths.rootfs),
        *MASKS,
        SetUser(None, None),
        Environment({}, "c0ffeec0ffee", False),
        OpenWorkdir("/"),
        SessionKeyring(),
        DropPrivileges(spec.security.capabilities, None, True),
        Chdir(),
        FindExecutable("/bin/true"),
        Seccomp("default", True),  # with no_new_privs: last, just before execve
        Exec(["/bin/true"], 0),
    ]
    assert plan.describe(ops)[5] == " 6  mount proc on /proc (nosuid,nodev,noexec)"
    assert not plan.has_points(ops)  # the default run never stops for the runtime


def test_each_step_says_itself_in_one_line():
    lines = plan.describe(cli_plan("-t", "--init", "-v", "/srv:/srv:ro", "--network",
                                   "bridge")[1])
    assert all("\n" not in line and line.strip() for line in lines)
    assert [int(line.split()[0]) for line in lines] == list(range(1, len(lines) + 1))


def test_read_only_binds_the_rootfs_read_only_all_the_way_down():
    _, ops = cli_plan("--read-only")
    assert ops[4] == MountRoot("bind", "/images/r", Paths.rootfs,
                               "recursive, read-only all the way down", False)
    assert "ReadonlyRoot" not in kinds(ops)  # done at once, not after the mounts (OCI)


def test_volumes_then_tmpfs_come_after_the_system_mounts():
    _, ops = cli_plan("-v", "/srv/data:/data:ro", "--tmpfs", "/scratch:size=1m",
                      "-v", "/srv/logs:/logs")
    mounts = [op for op in ops if type(op) is UserMount]
    assert ops.index(mounts[0]) == ops.index(SYSTEM[-1]) + 1
    assert [repr(m.mount) for m in mounts] == [repr(m) for m in (  # spec.Mount has no ==
        Mount(kind="bind", source="/srv/data", target="/data", readonly=True),
        Mount(kind="bind", source="/srv/logs", target="/logs"),
        Mount(kind="tmpfs", source="tmpfs", target="/scratch", options="size=1m",
              flags=MS_NOSUID | MS_NODEV))]
    assert [m.describe() for m in mounts] == [
        "bind /srv/data on /data (ro,recursive)", "bind /srv/logs on /logs (recursive)",
        "mount tmpfs on /scratch (nosuid,nodev,size=1m)"]


def test_chroot_switches_root_without_pivot_root():
    _, ops = cli_plan("--chroot")
    assert SwitchRoot(False, Paths.rootfs) in ops and SwitchRoot(True, Paths.rootfs) not in ops
    assert SwitchRoot(False, Paths.rootfs).describe().startswith("chroot into /s/c/rootfs")


def test_privileged_keeps_every_capability_and_loads_no_filter():
    spec, ops = cli_plan("--privileged")
    assert "Seccomp" not in kinds(ops)
    drop, = [op for op in ops if type(op) is DropPrivileges]
    assert drop.capabilities == spec.security.capabilities and "sys_admin" in drop.capabilities


def test_without_no_new_privs_the_filter_goes_in_before_privileges_are_dropped():
    _, ops = cli_plan("--security-opt", "no-new-privileges=false")
    k = kinds(ops)
    assert k.index("Seccomp") < k.index("DropPrivileges") and k.count("Seccomp") == 1
    assert Seccomp("default", False) in ops


def test_terminal_init_and_detach():
    _, ops = cli_plan("-t", "--init", foreground=False)
    k = kinds(ops)
    assert k.index("OpenConsole") == k.index("SwitchRoot") - 1  # in the container's devpts
    assert k.index("SessionLeader") == k.index("OpenWorkdir") + 1
    assert OutliveRuntime() in ops and ops[-1] == Init(["/bin/true"])
    assert Environment({}, "c0ffeec0ffee", True) in ops  # TERM


def test_a_bridge_stops_after_unshare_for_the_runtime():
    _, ops = cli_plan("--network", "bridge", outside=True)
    assert kinds(ops)[:3] == ["Unshare", "Point", "SetHostname"]
    assert ops[1].byte == b"r" and plan.has_points(ops)
    # no more stops once the mounts are made: the runtime stops waiting, before pivot_root
    assert kinds(ops).index("EndPoints") == kinds(ops).index("SwitchRoot") - 1


def test_network_host_keeps_the_hosts_network():
    _, ops = cli_plan("--network", "host")
    assert ops[0] == Unshare(("mnt", "uts", "ipc", "cgroup")) and LoopbackUp() not in ops


# --- an OCI config (oci.py translates it) ---------------------------------------------------

def oci_plan(**linux):
    config = oci.default_config()
    config["linux"].update(copy.deepcopy(linux))
    config["mounts"].append({"destination": "/data", "type": "bind", "source": "/srv/data",
                             "options": ["rbind", "ro"]})
    config["hooks"] = {"prestart": [{"path": "/bin/true"}],
                       "createContainer": [{"path": "/bin/true"}],
                       "startContainer": [{"path": "/bin/true"}]}
    spec = oci.to_spec(config, "/bundles/b", "cid")
    return spec, plan.plan(spec, Paths, "h", foreground=False, create=True)


def test_an_oci_config_its_mounts_masked_paths_sysctl_and_hooks():
    spec, ops = oci_plan(maskedPaths=["/proc/kcore", "/proc/keys"],
                         readonlyPaths=["/proc/sys"],
                         sysctl={"net.ipv4.ip_forward": "1"},
                         rootfsPropagation="rshared",
                         devices=[{"path": "/dev/fuse", "type": "c", "major": 10,
                                   "minor": 229, "fileMode": 0o666, "uid": 0, "gid": 0}])
    assert kinds(ops) == [
        "Unshare", "Point", "SetHostname", "LoopbackUp",
        "MakeMountsPrivate", "MountRoot", *["UserMount"] * 8, "MakeDevice", "OpenConsole",
        "Point", "EndPoints", "ContainerHooks", "ReadonlyRoot", "SwitchRoot", "Sysctl",
        "MaskPath", "MaskPath", "ReadonlyPath", "RootPropagation",
        "SetUser", "Environment", "OpenWorkdir", "SessionLeader", "Rlimits", "OutliveRuntime",
        "SessionKeyring", "DropPrivileges", "Chdir", "FindExecutable", "WaitForStart",
        "Exec"]
    # the bundle's root, bound; read-only once the mount points are made (after the hooks)
    assert ops[5] == MountRoot("bind", "/bundles/b/rootfs", Paths.rootfs, "recursive", True)
    assert [op.mount.target for op in ops if type(op) is UserMount][0] == "/proc"
    assert UserMount(spec.mounts[-1]).describe() == "bind /srv/data on /data (ro,recursive)"
    assert [op.byte for op in ops if type(op) is Point] == [b"r", b"h"]
    assert Sysctl("net.ipv4.ip_forward", "1") in ops
    assert [op.path for op in ops if type(op) in (MaskPath, ReadonlyPath)] == \
        ["/proc/kcore", "/proc/keys", "/proc/sys"]
    assert RootPropagation(MS_SHARED | MS_REC).describe() == \
        "make / rshared (OCI rootfsPropagation)"
    assert MakeDevice(("/dev/fuse", "c", 10, 229, 0o666, 0, 0)) in ops
    assert WaitForStart(1) in ops and Exec(["sh"], 0) in ops


def test_a_joined_namespace_is_joined_not_unshared():
    config = oci.default_config()
    config["linux"]["namespaces"] = [{"type": "mount"}, {"type": "pid"},
                                     {"type": "network", "path": "/proc/42/ns/net"}]
    del config["hostname"]  # needs a uts namespace
    spec = oci.to_spec(config, "/bundles/b", "cid")
    ops = plan.plan(spec, Paths, "h")
    assert ops[:2] == [JoinNamespaces({"net": "/proc/42/ns/net"}), Unshare(("mnt",))]
    assert "SetHostname" not in kinds(ops) and "LoopbackUp" not in kinds(ops)


def test_umask_is_applied_when_given():
    spec = run.build_spec(*run.parse(["/images/r", "/bin/true"]))
    spec.process.umask = 0o027
    ops = plan.plan(spec, Paths, "h")
    assert Umask(0o027) in ops and Umask(0o027).describe() == "umask 0027"


# --- run --dry-run: the plan a start would apply ------------------------------------------

def test_a_dry_run_on_the_bridge_plans_the_networks_hosts_files(tmp_path, monkeypatch):
    """The binds of the network's /etc/hosts and resolv.conf are in the plan a start applies
    (network.prepare adds them to the spec): a dry run shows them too, and makes nothing."""
    from minicontainer.runtime import launch
    from minicontainer.runtime.state import StateStore

    image = tmp_path / "image"
    (image / "etc").mkdir(parents=True)
    root = tmp_path / "state"
    spec = run.build_spec(*run.parse(["--network", "bridge", str(image), "/bin/true"]))
    lines = plan.describe(launch.dry_run(spec, StateStore(str(root))))
    assert [line.split(None, 1)[1] for line in lines if " on /etc/" in line] == [
        f"bind {root}/network/hosts on /etc/hosts (ro,recursive)",
        f"bind {root}/network/resolv.conf on /etc/resolv.conf (ro,recursive)"]
    assert not root.exists()
    # what prepare refuses before building anything, the dry run refuses too
    monkeypatch.setenv("MINICONTAINER_SUBNET", "10.1.2.0/30")
    with pytest.raises(ContainerError, match="bridge subnet 10.1.2.0/30 is too small"):
        launch.dry_run(spec, StateStore(str(root)))


def test_a_dry_run_refuses_a_port_a_start_could_not_publish(tmp_path):
    import socket

    from minicontainer.runtime import launch
    from minicontainer.runtime.state import StateStore

    image = tmp_path / "image"
    image.mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        spec = run.build_spec(*run.parse(["-p", f"127.0.0.1:{port}:80", str(image), "true"]))
        with pytest.raises(ContainerError, match=f"cannot publish 127.0.0.1:{port}/tcp: "
                                                 "the port is already in use on the host"):
            launch.dry_run(spec, StateStore(str(tmp_path / "state")))
    assert not (tmp_path / "state").exists()


def test_a_dry_run_refuses_the_same_host_port_twice(tmp_path):
    import socket

    from minicontainer.runtime import launch
    from minicontainer.runtime.state import StateStore

    image = tmp_path / "image"
    image.mkdir()
    with socket.socket() as probe:  # a port free now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spec = run.build_spec(*run.parse(["-p", f"127.0.0.1:{port}:80", "-p",
                                      f"127.0.0.1:{port}:81", str(image), "true"]))
    with pytest.raises(ContainerError, match=f"cannot publish 127.0.0.1:{port}/tcp: "
                                             "the port is already in use on the host"):
        launch.dry_run(spec, StateStore(str(tmp_path / "state")))
    with socket.socket() as again:  # and nothing of the check is kept
        again.bind(("127.0.0.1", port))
