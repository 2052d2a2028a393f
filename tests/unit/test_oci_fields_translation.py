"""oci.py's translation of config.json, field by field, with no container and no root: what
each field becomes in the ContainerSpec, and every refusal with the line that names it.
test_oci_fields.py shows the same fields applied in real containers."""
from __future__ import annotations

import copy
import os

import pytest

from minicontainer import oci
from minicontainer.errors import ContainerError
from minicontainer.runtime import cgroups, devices

pytestmark = pytest.mark.unit

# runc 1.1's `runc spec`, as it writes it (ambient capabilities, no inheritable set)
RUNC_SPEC = {
    "ociVersion": "1.0.2-dev",
    "process": {
        "terminal": True, "user": {"uid": 0, "gid": 0}, "args": ["sh"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
        "cwd": "/",
        "capabilities": {k: ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                         for k in ("bounding", "effective", "permitted", "ambient")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True},
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "runc",
    "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
               {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
               {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                            "gid=5"]},
               {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
               {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"]},
               {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"]},
               {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}],
    "linux": {"resources": {"devices": [{"allow": False, "access": "rwm"}]},
              "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount",
                                                   "cgroup")],
              "maskedPaths": ["/proc/acpi", "/proc/kcore"],
              "readonlyPaths": ["/proc/bus", "/proc/sys"]},
}


def spec_of(change=None, config=None):
    config = copy.deepcopy(config or oci.default_config("/rootfs"))
    config["process"]["args"] = ["true"]
    if change:
        change(config)
    return oci.to_spec(config, "/bundle", "0123456789abcdef")


def refused(change, *words):
    with pytest.raises(ContainerError) as e:
        spec_of(change)
    for w in words:
        assert w in str(e.value), str(e.value)
    return str(e.value)


def test_runc_spec_default_accepted(capsys):
    spec = spec_of(config=RUNC_SPEC)
    three = frozenset({"audit_write", "kill", "net_bind_service"})
    assert spec.security.sets == {"bounding": three, "effective": three, "permitted": three,
                                  "inheritable": frozenset(), "ambient": frozenset()}
    # the kernel would keep none of the ambient ones: one warning line says so
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "process.capabilities.ambient: CAP_KILL, " \
        "CAP_NET_BIND_SERVICE, CAP_AUDIT_WRITE not raised" in err
    assert spec.hostname == "runc" and spec.process.rlimits == [(7, 1024, 1024)]


def test_unknown_properties_ignored():
    spec = spec_of(lambda c: (c.update(someday={"x": 1}, vm={"hypervisor": {}}, hooks={}),
                              c["linux"].update(futureThing=[1]),
                              c["process"].update(futureProcessThing=True)))
    assert spec.hooks == {} and spec.process.args == ["true"]


@pytest.mark.parametrize("key", ["intelRdt", "personality", "mountLabel",
                                 "timeOffsets", "memoryPolicy", "netDevices"])
def test_known_but_unimplemented_linux_fields_refused(key):
    refused(lambda c: c["linux"].update({key: {"x": 1}}), f"linux.{key}", "not supported")


def test_hooks_every_stage():
    hooks = {stage: [{"path": f"/hooks/{stage}", "args": [stage, "a"], "env": ["K=V"],
                      "timeout": 5}] for stage in oci.HOOK_STAGES}
    hooks["notAStage"] = [{"path": "relative"}]  # unknown: ignored
    hooks["prestart"].append({"path": "/bin/true"})
    spec = spec_of(lambda c: c.update(hooks=hooks))
    assert list(spec.hooks) == list(oci.HOOK_STAGES)
    assert spec.hooks["poststop"] == [{"path": "/hooks/poststop", "args": ["poststop", "a"],
                                       "env": ["K=V"], "timeout": 5}]
    # no args: argv is just the path, as runc's exec
    assert spec.hooks["prestart"][1] == {"path": "/bin/true", "args": ["/bin/true"],
                                         "env": [], "timeout": None}


@pytest.mark.parametrize("hook, words", [
    ({"path": "bin/true"}, "must be an absolute path"),
    ({"args": ["x"]}, "must be an absolute path"),
    ({"path": "/bin/true", "timeout": 0}, "above zero"),
    ({"path": "/bin/true", "timeout": -3}, "above zero"),
    ({"path": "/bin/true", "timeout": "5"}, "above zero")])
def test_bad_hooks_refused(hook, words):
    refused(lambda c: c.update(hooks={"createRuntime": [hook]}), "hooks.createRuntime", words)


def test_user_groups_umask_oom_console_rlimits():
    spec = spec_of(lambda c: c["process"].update(
        user={"uid": 1000, "gid": 1001, "additionalGids": [0, 10], "umask": 0o027},
        oomScoreAdj=-500, consoleSize={"height": 40, "width": 120},
        rlimits=[{"type": "RLIMIT_NPROC", "soft": 10, "hard": 20},
                 {"type": "RLIMIT_RTTIME", "soft": 1, "hard": 2}]))
    p = spec.process
    assert (p.user, p.groups, p.umask, p.oom_score_adj, p.console_size) == \
        ("1000:1001", [0, 10], 0o027, -500, (40, 120))
    assert p.rlimits == [(6, 10, 20), (15, 1, 2)]
    # none given: no supplementary group at all (runc), not the image's /etc/group ones
    assert spec_of().process.groups == []


@pytest.mark.parametrize("field, words", [
    ({"user": {"uid": 0, "gid": 0, "additionalGids": [-1]}}, "additionalGids"),
    ({"user": {"uid": 0, "gid": 0, "additionalGids": ["wheel"]}}, "additionalGids"),
    ({"user": {"uid": -1, "gid": 0}}, "process.user.uid"),
    ({"user": {"uid": 0, "gid": 0, "umask": 0o7777}}, "is not a umask"),
    ({"user": {"uid": 0, "gid": 0, "username": "x"}}, "Windows only"),
    ({"oomScoreAdj": 1001}, "outside -1000..1000"),
    ({"rlimits": [{"type": "RLIMIT_NOPE", "soft": 1, "hard": 1}]}, "unknown rlimit"),
    ({"rlimits": [{"type": "RLIMIT_CORE", "soft": 1, "hard": 1}] * 2}, "given twice"),
    ({"consoleSize": {"height": -1, "width": 3}}, "consoleSize.height"),
    ({"apparmorProfile": "docker-default"}, "apparmorProfile"),
    ({"cwd": "tmp"}, "must be absolute")])
def test_process_fields_refused(field, words):
    refused(lambda c: c["process"].update(field), words)


def test_five_capability_sets_kept_distinct():
    sets = {"bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_CHECKPOINT_RESTORE", "CAP_BPF"],
            "permitted": ["CAP_KILL", "CAP_CHECKPOINT_RESTORE", "CAP_PERFMON"],
            "effective": ["CAP_KILL"], "inheritable": ["CAP_KILL", "CAP_BPF"],
            "ambient": ["CAP_KILL"]}
    sec = spec_of(lambda c: c["process"].update(capabilities=sets)).security
    assert sec.sets == {"bounding": {"chown", "kill", "checkpoint_restore", "bpf"},
                        "permitted": {"kill", "checkpoint_restore", "perfmon"},
                        "effective": {"kill"}, "inheritable": {"kill", "bpf"},
                        "ambient": {"kill"}}
    assert not sec.privileged and sec.capabilities == sec.sets["bounding"]


def test_docker_non_root_capabilities():
    """Docker's --user 1000: empty effective and permitted, a full (default) bounding set."""
    bounding = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_KILL", "CAP_SETUID", "CAP_MKNOD"]
    spec = spec_of(lambda c: (c["process"].update(
        user={"uid": 1000, "gid": 1000, "additionalGids": [1000]},
        capabilities={"bounding": bounding, "effective": [], "permitted": [],
                      "inheritable": []}), c["linux"].pop("resources")))
    assert spec.security.sets["bounding"] == {"chown", "dac_override", "kill", "setuid",
                                              "mknod"}
    assert not spec.security.sets["effective"] and not spec.security.sets["permitted"]


def test_no_capabilities_object_cuts_nothing():
    sec = spec_of(lambda c: c["process"].pop("capabilities")).security
    assert sec.privileged and sec.sets is None


@pytest.mark.parametrize("sets, words", [
    ({"bounding": ["CAP_KILL"], "permitted": [], "effective": ["CAP_KILL"]},
     "process.capabilities.effective: CAP_KILL not in permitted"),
    ({"bounding": ["CAP_KILL"], "inheritable": ["CAP_CHOWN"]},
     "process.capabilities.inheritable: CAP_CHOWN not in bounding"),
    ({"bounding": ["CAP_NOT_A_THING"]}, "unknown capability 'CAP_NOT_A_THING'")])
def test_impossible_capability_sets_refused(sets, words):
    refused(lambda c: c["process"].update(capabilities=sets), words)


def test_mknod_kept_with_the_device_allowlist():
    sets = {k: ["CAP_MKNOD", "CAP_KILL"] for k in ("bounding", "effective", "permitted")}
    spec = spec_of(lambda c: c["process"].update(capabilities=sets))
    assert all("mknod" in spec.security.sets[k] for k in ("bounding", "effective", "permitted"))
    # the config's rules first, then what every container may use (runc's order)
    assert spec.device_rules == [(False, "a", None, None, "rwm"), *devices.ALLOWED]


def test_device_rules_from_docker_and_linux_devices():
    rules = [{"allow": False, "access": "rwm"},
             {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
             {"allow": True, "type": "b", "major": 8, "minor": -1, "access": "r"}]
    spec = spec_of(lambda c: (c["linux"]["resources"].update(devices=rules),
                              c["linux"].update(devices=[
                                  {"path": "/dev/x", "type": "c", "major": 4, "minor": 5},
                                  {"path": "/dev/f", "type": "p"}])))
    assert spec.device_rules == [(False, "a", None, None, "rwm"), (True, "c", 10, 229, "rwm"),
                                 (True, "b", 8, None, "r"), *devices.ALLOWED,
                                 (True, "c", 4, 5, "rwm")]


@pytest.mark.parametrize("rule, words", [
    ({"allow": False, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
     "a deny rule for c 1:3"),
    ({"allow": True, "type": "x", "access": "rwm"}, "type a, c or b"),
    ({"allow": True, "type": "c", "access": "rwx"}, "access of r, w, m")])
def test_device_rules_refused(rule, words):
    refused(lambda c: c["linux"]["resources"].update(devices=[rule]),
            "linux.resources.devices", words)


def test_device_rules_emulate_cgroup_v1():
    """The order of rules matters as in cgroup v1's devices.allow/deny (runc's emulator)."""
    deny_all, allow_all = (False, "a", None, None, "rwm"), (True, "a", None, None, "rwm")
    assert devices.emulate([deny_all, (True, "c", 1, 3, "rw"), (True, "c", 1, 3, "m")]) == \
        (False, {("c", 1, 3): "mrw"})
    assert devices.emulate([deny_all, (True, "c", 1, 3, "rwm"), (False, "c", 1, 3, "w")]) == \
        (False, {("c", 1, 3): "mr"})
    assert devices.emulate([(True, "c", 1, 3, "rwm"), allow_all, (False, "b", 8, None, "rwm")]) \
        == (True, {("b", 8, None): "mrw"})
    assert devices.emulate([]) == (False, {})  # no rule at all: nothing allowed
    with pytest.raises(ContainerError, match="punches a hole in the wildcard rule c \\*:\\*"):
        devices.emulate([deny_all, (True, "c", None, None, "m"), (False, "c", 1, 3, "m")])


def test_device_program():
    """The instructions: a prologue of 6, a block per exception, the default verdict."""
    assert devices.program([(True, "a", None, None, "rwm")]) is None  # allows everything
    code = devices.program([(False, "a", None, None, "rwm"), (True, "c", 1, 3, "rwm")])
    insns = [code[i:i + 8] for i in range(0, len(code), 8)]
    # jne r2, CHAR (+4: the next block); jne r4, 1 (+3); jne r5, 3 (+2); r0 = 1; exit;
    # the default: r0 = 0; exit
    assert insns[6:] == [bytes.fromhex(h) for h in (
        "5502040002000000", "5504030001000000", "5505020003000000", "b400000001000000",
        "9500000000000000", "b400000000000000", "9500000000000000")]
    code = devices.program([(False, "a", None, None, "rwm"), (True, "b", None, None, "m")])
    insns = [code[i:i + 8] for i in range(0, len(code), 8)]
    # an access test: r1 = r3; r1 &= MKNOD; jne r1, r3 (+2)
    assert insns[6:10] == [bytes.fromhex(h) for h in (
        "5502050001000000", "bc31000000000000", "5401000001000000", "5d31020000000000")]


def test_namespaces_joined_by_path():
    paths = {"pid": "/proc/9/ns/pid", "mount": "/proc/9/ns/mnt", "network": "/run/netns/x",
             "ipc": "/proc/9/ns/ipc", "uts": "/proc/9/ns/uts", "cgroup": "/proc/9/ns/cgroup"}
    spec = spec_of(lambda c: (c["linux"].update(namespaces=[
        {"type": t, "path": p} for t, p in paths.items()]), c.update(domainname="d.example")))
    assert spec.namespaces == () and spec.network == "host"
    assert spec.namespace_paths == {"pid": "/proc/9/ns/pid", "mnt": "/proc/9/ns/mnt",
                                    "net": "/run/netns/x", "ipc": "/proc/9/ns/ipc",
                                    "uts": "/proc/9/ns/uts", "cgroup": "/proc/9/ns/cgroup"}
    assert spec.hostname == "minicontainer" and spec.domainname == "d.example"


@pytest.mark.parametrize("namespaces, words", [
    ([{"type": "user"}], "user namespaces"),
    ([{"type": "time"}], "time namespaces"),
    ([{"type": "bogus"}], "unknown namespace type"),
    ([{"type": "pid"}, {"type": "pid", "path": "/proc/1/ns/pid"}], "pid given twice"),
    ([{"type": "pid"}, {"type": "mount", "path": "proc/1/ns/mnt"}], "must be absolute"),
    ([{"type": "pid"}, {"type": "uts"}], "without a mount namespace"),
    ([{"type": "mount"}, {"type": "uts"}], "without a pid namespace")])
def test_namespaces_refused(namespaces, words):
    refused(lambda c: c["linux"].update(namespaces=namespaces), words)


def test_hostname_and_domainname_need_a_uts_namespace():
    no_uts = [{"type": "pid"}, {"type": "mount"}]
    refused(lambda c: c["linux"].update(namespaces=no_uts), "hostname needs a uts namespace")
    refused(lambda c: (c["linux"].update(namespaces=no_uts), c.pop("hostname"),
                       c.update(domainname="x")), "domainname needs a uts namespace")


def test_devices_of_every_type():
    devices = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229},
               {"path": "/dev/ub", "type": "u", "major": 1, "minor": 3, "fileMode": 0o600},
               {"path": "/dev/loop9", "type": "b", "major": 7, "minor": 9, "uid": 5, "gid": 6},
               {"path": "/dev/../dev/myfifo", "type": "p", "fileMode": 0o10640}]
    spec = spec_of(lambda c: c["linux"].update(devices=devices))
    assert spec.devices == [("/dev/fuse", "c", 10, 229, 0o666, 0, 0),
                            ("/dev/ub", "c", 1, 3, 0o600, 0, 0),
                            ("/dev/loop9", "b", 7, 9, 0o666, 5, 6),
                            ("/dev/myfifo", "p", 0, 0, 0o640, 0, 0)]


@pytest.mark.parametrize("device, words", [
    ({"path": "/dev/x", "type": "s"}, "type 's'"),
    ({"path": "dev/x", "type": "p"}, "must be absolute"),
    ({"path": "/", "type": "c", "major": 1, "minor": 3}, "must be absolute")])
def test_devices_refused(device, words):
    refused(lambda c: c["linux"].update(devices=[device]), "linux.devices", words)


def test_cgroups_path_kept_and_placed():
    assert spec_of().cgroups_path is None
    assert spec_of(lambda c: c["linux"].update(cgroupsPath="/default/x")).cgroups_path == \
        "/default/x"
    v2 = "/sys/fs/cgroup"
    assert cgroups.place(v2, "/default/abc") == "/sys/fs/cgroup/default/abc"
    assert cgroups.place(v2, "//docker/../docker/abc") == "/sys/fs/cgroup/docker/abc"
    assert cgroups.place(v2, "/../../etc") == "/sys/fs/cgroup/etc"  # never above the root
    own = [line[3:].strip() for line in open("/proc/self/cgroup") if line.startswith("0::")][0]
    parent = "/sys/fs/cgroup" + os.path.dirname(own).rstrip("/")
    assert cgroups.place(v2, "system.slice:docker:abc") == f"{parent}/system.slice:docker:abc"
    assert cgroups.place(v2, "../../x") == f"{parent}/x"
    for root in ("/", "/a/.."):
        with pytest.raises(ContainerError, match="the cgroup2 root itself"):
            cgroups.place(v2, root)


def test_features_names_hooks_and_every_capability():
    f = oci.features()
    assert f["hooks"] == list(oci.HOOK_STAGES)
    # every capability up to the kernel's cap_last_cap, by the kernel's names
    assert f["linux"]["capabilities"] == ["CAP_" + n.upper() for n in oci.caps.all_names()]
    assert "CAP_LAST_CAP" not in f["linux"]["capabilities"]
