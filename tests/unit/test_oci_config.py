"""config.json -> ContainerSpec (oci.py): every field applied as main applies it, and every
refusal, with the field named in the message. Pure: no container starts."""
from __future__ import annotations

import copy

import pytest

from minicontainer import oci
from minicontainer.errors import ContainerError
from minicontainer.kernel import syscalls

BUNDLE = "/bundles/b"
CID = "0123456789abcdef0123"


def config(**changes) -> dict:
    """runc's default spec as `minicontainer spec` writes it, with changes (dotted keys)."""
    c = oci.default_config()
    for key, value in changes.items():
        *path, last = key.split(".")
        node = c
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return c


def spec(c: dict, **kw):
    return oci.to_spec(copy.deepcopy(c), BUNDLE, CID, **kw)


def refused(c: dict) -> str:
    with pytest.raises(ContainerError) as e:
        spec(c)
    return str(e.value)


# --- applied -------------------------------------------------------------------------------

def test_the_default_config_runs_as_it_is():
    s = spec(config())
    assert s.root.path == "/bundles/b/rootfs" and s.root.readonly is True
    assert s.root.pivot_root is True
    assert set(s.namespaces) == {"pid", "net", "ipc", "uts", "mnt", "cgroup"}
    assert s.network == "none" and s.namespace_paths == {}
    assert s.hostname == "minicontainer"
    assert s.process.args == ["sh"] and s.process.terminal is True
    assert s.process.interactive is True  # an engine's container keeps stdin
    assert s.process.env["TERM"] == "xterm" and s.process.env["PATH"].startswith("/usr/local")
    assert s.process.user == "0:0" and s.process.cwd == "/"
    assert s.process.rlimits == [(7, 1024, 1024)]  # RLIMIT_NOFILE
    assert s.security.capabilities == {"audit_write", "kill", "net_bind_service"}
    assert s.security.no_new_privs is True and s.security.privileged is False
    # the config's own /proc, /dev... are mounted as it lists them, not run's defaults
    assert s.system_mounts is False
    assert [(m.kind, m.target) for m in s.mounts] == [
        ("proc", "/proc"), ("tmpfs", "/dev"), ("devpts", "/dev/pts"), ("tmpfs", "/dev/shm"),
        ("mqueue", "/dev/mqueue"), ("sysfs", "/sys"), ("cgroup2", "/sys/fs/cgroup")]  # v1 spelled v2
    assert s.masked_paths == tuple(oci.rootfs.MASKED_PATHS)
    assert s.readonly_paths == tuple(oci.rootfs.READONLY_PATHS)
    assert s.resources is None and s.devices == [] and s.sysctl == {}


def test_root_path_is_relative_to_the_bundle_and_absolute_stays():
    assert spec(config(**{"root.path": "../x/./r"})).root.path == "/bundles/x/r"
    assert spec(config(**{"root.path": "/abs/r"})).root.path == "/abs/r"


def test_no_pivot():
    assert spec(config(), no_pivot=True).root.pivot_root is False


def test_hostname_defaults_to_the_short_id_with_a_uts_namespace():
    c = config()
    del c["hostname"]
    assert spec(c).hostname == CID[:12]


def test_no_uts_namespace_no_hostname():
    c = config()
    del c["hostname"]
    c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "uts"]
    s = spec(c)
    assert s.hostname is None and "uts" not in s.namespaces


def test_namespaces_joined_by_path_and_host_network():
    c = config()
    c["linux"]["namespaces"] = [{"type": "pid"}, {"type": "mount"},
                                {"type": "network", "path": "/proc/42/ns/net"},
                                {"type": "ipc", "path": "/proc/42/ns/ipc"}]
    del c["hostname"]
    s = spec(c)
    assert set(s.namespaces) == {"pid", "mnt"}
    assert s.namespace_paths == {"net": "/proc/42/ns/net", "ipc": "/proc/42/ns/ipc"}
    assert s.network == "host"  # no new network namespace: nothing of ours to set up


def test_process_fields():
    s = spec(config(process={
        "args": ["/bin/app", "-x"], "env": ["A=1", "B=x=y", "EMPTY="], "cwd": "/srv",
        "terminal": False, "user": {"uid": 1000, "gid": 100, "umask": 0o027},
        "rlimits": [{"type": "RLIMIT_NPROC", "soft": 10, "hard": 20},
                    {"type": "RLIMIT_RTTIME", "soft": 1, "hard": 2}],
        "consoleSize": {"height": 10, "width": 10}}))
    p = s.process
    assert p.args == ["/bin/app", "-x"] and p.cwd == "/srv" and p.terminal is False
    assert p.env == {"A": "1", "B": "x=y", "EMPTY": ""}
    assert p.user == "1000:100" and p.umask == 0o027
    assert p.rlimits == [(6, 10, 20), (15, 1, 2)]


def test_capabilities_and_privileged():
    from minicontainer.kernel import caps

    every = ["CAP_" + c.upper() for c in caps.all_names()]
    s = spec(config(**{"process.capabilities": {"bounding": every, "effective": every,
                                                 "permitted": every}}))
    # the five sets as given (kernel/caps.py applies them exactly)
    assert s.security.privileged is False and s.security.capabilities == set(caps.all_names())
    assert s.security.sets["permitted"] == set(caps.all_names())
    assert s.security.sets["inheritable"] == s.security.sets["ambient"] == set()
    # no capabilities object at all: nothing is cut (runc)
    c = config()
    del c["process"]["capabilities"]
    assert spec(c).security.privileged is True
    c = config(**{"process.capabilities": {}, "process.noNewPrivileges": False})
    assert spec(c).security.capabilities == frozenset()
    assert spec(c).security.no_new_privs is False


def test_mknod_is_granted_with_the_device_allowlist():
    from minicontainer.runtime import devices

    c = config(**{"process.capabilities": {k: ["CAP_MKNOD", "CAP_KILL"] for k in
                                           ("bounding", "effective", "permitted")}})
    s = spec(c)
    assert s.security.capabilities == {"kill", "mknod"}
    assert s.device_rules == [(False, "a", None, None, "rwm"), *devices.ALLOWED]
    c["linux"]["resources"]["devices"].append({"allow": True, "access": "rwm"})
    assert devices.program(spec(c).device_rules) is None  # allow-all: no filter


def test_devices_and_sysctl():
    c = config(**{"linux.devices": [{"path": "/dev/fuse", "type": "c", "major": 10,
                                     "minor": 229, "fileMode": 0o100660, "uid": 1, "gid": 2},
                                    {"path": "/dev/loop9", "type": "b", "major": 7,
                                     "minor": 9}],
                  "linux.sysctl": {"net.ipv4.ip_forward": 1, "kernel.msgmax": "8192"}})
    s = spec(c)
    assert s.devices == [("/dev/fuse", "c", 10, 229, 0o660, 1, 2),
                         ("/dev/loop9", "b", 7, 9, 0o666, 0, 0)]
    assert s.sysctl == {"net.ipv4.ip_forward": "1", "kernel.msgmax": "8192"}


def test_masked_and_readonly_paths_are_taken_as_given():
    s = spec(config(**{"linux.maskedPaths": ["/x"], "linux.readonlyPaths": []}))
    assert s.masked_paths == ("/x",) and s.readonly_paths == ()


def test_bind_and_tmpfs_mounts_with_their_flags():
    c = config(mounts=[
        {"destination": "/data/", "type": "bind", "source": "vol",
         "options": ["rbind", "ro", "nosuid", "nodev", "noexec", "rprivate"]},
        {"destination": "/abs", "source": "/srv/x", "options": ["bind"]},  # type from options
        {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "size=1m", "mode=755"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/x", "type": "proc", "source": "proc"},
    ])
    data, absolute, run, tmp, proc = spec(c).mounts
    assert (data.kind, data.source, data.target, data.recursive) == \
        ("bind", "/bundles/b/vol", "/data", True)
    assert data.flags == syscalls.MS_RDONLY | syscalls.MS_NOSUID | syscalls.MS_NODEV | \
        syscalls.MS_NOEXEC
    assert data.propagation == (syscalls.MS_REC | syscalls.MS_PRIVATE,)
    assert (absolute.kind, absolute.source, absolute.flags, absolute.recursive) == \
        ("bind", "/srv/x", 0, False)
    assert (run.kind, run.options, run.flags) == ("tmpfs", "size=1m,mode=755", syscalls.MS_NOSUID)
    assert (tmp.kind, tmp.options) == ("tmpfs", "")
    assert (proc.kind, proc.target) == ("proc", "/x")


def test_root_propagation():
    s = spec(config(**{"linux.rootfsPropagation": "rshared"}))
    assert s.rootfs_propagation == syscalls.MS_REC | syscalls.MS_SHARED
    assert spec(config()).rootfs_propagation == 0


def test_resources_in_dockers_units():
    r = spec(config(**{"linux.resources": {
        "memory": {"limit": 64 << 20, "swap": 128 << 20, "reservation": 32 << 20,
                   "swappiness": None},
        "cpu": {"quota": 50000, "period": 100000, "shares": 512, "cpus": "0"},
        "pids": {"limit": 100}, "blockIO": {"weight": 300}}})).resources
    assert (r.memory, r.memory_swap, r.memory_reservation) == (64 << 20, 128 << 20, 32 << 20)
    assert (r.cpus, r.cpu_shares, r.cpuset_cpus) == (0.5, 512, "0")
    assert (r.pids_limit, r.io_weight) == (100, 300)


def test_quota_with_the_default_period_and_no_limits_at_all():
    r = spec(config(**{"linux.resources.cpu": {"quota": 150000}})).resources
    assert r.cpus == 1.5
    limits = {"memory": {"limit": -1}, "pids": {"limit": -1}, "cpu": {"quota": -1}}
    assert spec(config(**{"linux.resources": limits})).resources is None


def test_load_bundle_reads_config_and_annotations(tmp_path):
    import json

    c = config(annotations={"a": "b"})
    (tmp_path / "config.json").write_text(json.dumps(c))
    s, annotations = oci.load_bundle(str(tmp_path), CID)
    assert s.root.path == str(tmp_path / "rootfs") and annotations == {"a": "b"}


def test_load_bundle_errors(tmp_path):
    with pytest.raises(ContainerError, match="no config.json in bundle"):
        oci.load_bundle(str(tmp_path), CID)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ContainerError, match="invalid JSON"):
        oci.load_bundle(str(tmp_path), CID)


def test_exec_process_translation():
    p, sec = oci.to_process({"args": ["ls"], "env": ["A=1"], "user": {"uid": 5},
                             "capabilities": {"bounding": ["CAP_KILL"],
                                              "effective": ["CAP_KILL"],
                                              "permitted": ["CAP_KILL"]}}, for_exec=True)
    assert p.args == ["ls"] and p.user == "5:0" and p.env == {"A": "1"}
    assert sec.capabilities == {"kill"} and sec.no_new_privs is False


def test_features_name_what_is_implemented():
    f = oci.features()
    assert f["ociVersionMax"] == oci.OCI_VERSION and f["hooks"] == list(oci.HOOK_STAGES)
    assert "ro" in f["mountOptions"] and "nosuid" in f["mountOptions"]
    assert f["linux"]["cgroup"]["v2"] is True and f["linux"]["cgroup"]["v1"] is False
    assert "CAP_SYS_ADMIN" in f["linux"]["capabilities"]


# --- refused, each naming its field --------------------------------------------------------

def without_ns(kind):
    c = config()
    c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != kind]
    return c


REFUSALS = [
    (config(hooks={"prestart": [{"path": "x"}]}), "hooks.prestart: path 'x' must be an absolute"),
    (config(hooks={"poststop": [{"path": "/x", "timeout": 0}]}), "above zero"),
    (config(**{"linux.seccomp": {"defaultAction": "SCMP_ACT_NOTIFY"}}), "SCMP_ACT_NOTIFY"),
    (config(**{"linux.intelRdt": {"closID": "x"}}), "linux.intelRdt"),
    (config(**{"linux.personality": {"domain": "LINUX32"}}), "linux.personality"),
    (config(**{"linux.mountLabel": "x"}), "linux.mountLabel"),
    (config(**{"linux.timeOffsets": {"boottime": {}}}), "linux.timeOffsets"),
    (config(**{"linux.uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}),
     "linux.uidMappings/gidMappings"),
    (config(**{"linux.rootfsPropagation": "bogus"}), "linux.rootfsPropagation"),
    (config(root={}), "root.path is required"),
    (config(**{"linux.namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "user"}]}),
     "linux.namespaces user"),
    (config(**{"linux.namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "bogus"}]}),
     "linux.namespaces 'bogus'"),
    (config(**{"linux.namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "time"}]}),
     "linux.namespaces time"),
    (config(**{"linux.namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "pid"}]}),
     "pid given twice"),
    (without_ns("uts"), "hostname needs a uts namespace"),
    (config(hostname=None, **{"linux.namespaces": [{"type": "pid"}]}),
     "mount namespace of its own"),
    (config(hostname=None, **{"linux.namespaces": [{"type": "mount"}]}),
     "pid namespace of its own"),
    (config(**{"process.apparmorProfile": "docker-default"}), "process.apparmorProfile"),
    (config(**{"process.selinuxLabel": "x"}), "process.selinuxLabel"),
    (config(**{"process.oomScoreAdj": -1001}), "process.oomScoreAdj -1001 is outside"),
    (config(**{"process.ioPriority": {"class": "IOPRIO_CLASS_RT"}}), "process.ioPriority"),
    (config(**{"process.scheduler": {"policy": "SCHED_OTHER"}}), "process.ioPriority/scheduler"),
    (config(**{"process.args": []}), "process.args is empty"),
    (config(**{"process.user": {"username": "x"}}), "process.user.username"),
    (config(**{"process.user": {"uid": 0, "gid": 0, "additionalGids": ["x"]}}),
     "process.user.additionalGids"),
    (config(**{"process.rlimits": [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]}),
     "process.rlimits 'RLIMIT_BOGUS'"),
    (config(**{"process.cwd": "relative"}), "process.cwd 'relative' must be absolute"),
    (config(**{"process.capabilities": {"bounding": ["CAP_BOGUS"]}}), "process.capabilities"),
    (config(**{"process.capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]}}),
     "process.capabilities.effective: CAP_KILL not in permitted"),
    (config(**{"process.capabilities": {"bounding": ["CAP_KILL"], "inheritable": ["CAP_CHOWN"]}}),
     "process.capabilities.inheritable: CAP_CHOWN not in bounding"),
    (config(**{"linux.devices": [{"path": "/dev/p", "type": "s"}]}), "linux.devices /dev/p"),
    (config(**{"linux.resources.devices": [{"allow": False, "access": "rwm"},
                                           {"allow": False, "type": "c", "major": 1, "minor": 3}]}),
     "a deny rule for c 1:3"),
    (config(mounts=[{"destination": "relative", "type": "tmpfs"}]), "must be absolute"),
    (config(mounts=[{"destination": "/", "type": "tmpfs"}]), "must be absolute"),
    (config(mounts=[{"destination": "/x", "type": "tmpfs", "options": ["mand"]}]),
     "mount /x option 'mand'"),
    (config(mounts=[{"destination": "/x", "type": "bind", "source": "/y",
                     "options": ["size=1m"]}]), "mount /x option 'size=1m'"),
    (config(mounts=[{"destination": "/x", "type": "nfs", "source": "h:/e"}]),
     "mount /x of type 'nfs'"),
    (config(mounts=[{"destination": "/proc/x", "type": "tmpfs"}]), "under /proc only"),
    (config(**{"linux.resources.hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}),
     "linux.resources.hugepageLimits"),
    (config(**{"linux.resources.memory": {"limit": 1 << 30, "kernel": 1}}),
     "linux.resources.memory.kernel"),
    (config(**{"linux.resources.memory": {"disableOOMKiller": True}}),
     "linux.resources.memory.disableOOMKiller"),
    (config(**{"linux.resources.cpu": {"realtimeRuntime": 1}}),
     "linux.resources.cpu.realtimeRuntime"),
    (config(**{"linux.resources.cpu": {"mems": "0"}}), "linux.resources.cpu.mems"),
    (config(**{"linux.resources.blockIO": {"leafWeight": 10}}),
     "linux.resources.blockIO.leafWeight"),
]


@pytest.mark.parametrize("c, words", REFUSALS, ids=[w for _, w in REFUSALS])
def test_refusals_name_the_field(c, words):
    assert words in refused(c)


def test_a_device_bind_is_left_to_the_device_allowlist():
    c = config(mounts=[{"destination": "/dev/xnull", "type": "bind", "source": "/dev/null"}])
    s = spec(c)  # applied: the device cgroup decides whether it opens (runtime/devices.py)
    assert s.mounts[0].source == "/dev/null" and s.device_rules[0][0] is False


def test_empty_linux_fields_are_not_refusals():
    assert spec(config(**{"linux.seccomp": None, "linux.intelRdt": {},
                          "linux.personality": ""})).namespaces


def test_exec_process_refusals():
    with pytest.raises(ContainerError, match="process.args is empty"):
        oci.to_process({}, for_exec=True)
    with pytest.raises(ContainerError, match="process.oomScoreAdj"):
        oci.to_process({"args": ["x"], "oomScoreAdj": 5000}, for_exec=True)


def test_refusal_is_one_line():
    msg = refused(config(**{"linux.personality": {"domain": "LINUX32"}}))
    assert "\n" not in msg and msg.startswith("config.json: ")
