"""seccomp and keyrings: docker's default profile on every container, each of its refusals
performed for real from inside a container (a static C probe, tests/probes/seccomp_probe.c,
bind-mounted in: busybox has no tool for these syscalls) with the exact errno asserted;
--security-opt seccomp=unconfined|FILE, OCI linux.seccomp, exec, --init, and the session
keyring. The `unit` tests at the end need no root and start no container: the profile
translation (includes/excludes by capability, argument operators, errnoRet, refusals)."""
from __future__ import annotations

import errno
import json
import os
import platform
import shutil
import subprocess

import pytest

from minicontainer.errors import ContainerError
from minicontainer.kernel import seccomp as scmp
from minicontainer.runtime import seccomp_profile as sp

PROBE_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probes",
                            "seccomp_probe.c")
DEFAULT_CAPS = frozenset(("chown", "dac_override", "fowner", "fsetid", "kill", "setgid",
                          "setuid", "setpcap", "net_bind_service", "net_raw", "sys_chroot",
                          "audit_write", "setfcap"))


@pytest.fixture(scope="session")
def probe(tmp_path_factory) -> str:
    """A directory holding the probe, compiled once per session (static: the rootfs has no
    glibc). Mount it with -v DIR:/probe:ro and run /probe/probe ATTACK."""
    if not shutil.which("gcc"):
        pytest.skip("gcc is needed to build the probe (install.sh installs it)")
    d = tmp_path_factory.mktemp("probe")
    subprocess.run(["gcc", "-static", "-O2", "-o", str(d / "probe"), PROBE_SOURCE],
                   check=True, capture_output=True)
    return str(d)


@pytest.fixture(scope="session")
def probe_rootfs(rootfs, probe, tmp_path_factory) -> str:
    """A copy of the rootfs with the probe in /probe, for OCI bundles (2 MB)."""
    d = tmp_path_factory.mktemp("probe-rootfs") / "rootfs"
    subprocess.run(["cp", "-a", rootfs, str(d)], check=True)
    os.mkdir(d / "probe")
    shutil.copy(os.path.join(probe, "probe"), d / "probe" / "probe")
    return str(d)


def in_container(mc, rootfs, probe, *args, opts=()):
    r = mc("run", *opts, "-v", f"{probe}:/probe:ro", rootfs, *args)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_on_by_default_off_when_unconfined_or_privileged(mc, rootfs):
    r = mc("run", rootfs, "grep", "Seccomp:", "/proc/self/status")
    assert r.returncode == 0 and r.stdout == "Seccomp:\t2\n", r.stderr
    for opts in (["--security-opt", "seccomp=unconfined"], ["--privileged"]):
        r = mc("run", *opts, rootfs, "grep", "Seccomp:", "/proc/self/status")
        assert r.returncode == 0 and r.stdout == "Seccomp:\t0\n", (opts, r.stderr)


# (attack, errno under docker's profile, result unconfined or None where that depends on the
# host's sysctls; extra run flags). Unconfined, each of the first ones succeeds: the filter
# is what stops it.
ATTACKS = [
    ("add_key", "EPERM", "OK", ()),            # a key in a keyring the host shares
    ("keyctl", "EPERM", "OK", ()),             # e.g. read host root's user keyring
    ("unshare_user", "EPERM", "OK", ()),       # a user namespace: every capability in it
    ("userns_mount", "EPERM", "OK", ()),       # ... and a mount there
    ("clone3", "ENOSYS", "OK", ()),            # flags BPF cannot see: libc falls back to clone
    ("io_uring_setup", "EPERM", None, ()),     # a large, often-exploited kernel surface
    ("perf_event_open", "EPERM", None, ()),    # kernel profiling, side channels
    ("userfaultfd", "EPERM", None, ("--cap-add", "SYS_PTRACE")),  # race-widening for exploits
    ("vsock", "EPERM", None, ()),              # socket(AF_VSOCK): a path to the hypervisor
]


@pytest.mark.parametrize("attack,refused,unconfined,opts", ATTACKS, ids=[a[0] for a in ATTACKS])
def test_docker_profile_refuses(mc, rootfs, probe, attack, refused, unconfined, opts):
    assert in_container(mc, rootfs, probe, "/probe/probe", attack, opts=opts) == refused
    if unconfined:
        assert in_container(mc, rootfs, probe, "/probe/probe", attack,
                            opts=(*opts, "--security-opt", "seccomp=unconfined")) == unconfined


def test_what_the_profile_allows_still_works(mc, rootfs, probe):
    # fork is clone without namespace flags (the masked argument rule), a UDP socket is
    # socket() with an allowed address family
    out = in_container(mc, rootfs, probe, "sh", "-c",
                       "/probe/probe fork; /probe/probe socket_inet; echo hi > /tmp/f; cat /tmp/f")
    assert out.split("\n") == ["OK", "OK", "hi"]


def test_capabilities_open_the_parts_docker_ties_to_them(mc, rootfs, probe):
    """docker's profile allows unshare and clone3 to a container holding CAP_SYS_ADMIN."""
    out = in_container(mc, rootfs, probe, "sh", "-c", "/probe/probe unshare_user; "
                       "/probe/probe clone3", opts=("--cap-add", "SYS_ADMIN"))
    assert out.split("\n") == ["OK", "OK"]


def test_init_and_command_are_both_filtered(mc, rootfs):
    r = mc("run", "--init", rootfs, "grep", "Seccomp:", "/proc/1/status", "/proc/self/status")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["/proc/1/status:Seccomp:\t2",
                                        "/proc/self/status:Seccomp:\t2"]


def test_without_no_new_privs_installed_before_capabilities_go(mc, rootfs):
    """Without no_new_privs the kernel wants CAP_SYS_ADMIN to install a filter: it is
    installed before a non-root user loses its capabilities, as runc does."""
    r = mc("run", "--security-opt", "no-new-privileges=false", "-u", "1000", rootfs,
           "grep", "-E", "^(NoNewPrivs|Seccomp):", "/proc/self/status")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["NoNewPrivs:\t0", "Seccomp:\t2"]


def test_custom_profile_file(mc, rootfs, probe, tmp_path):
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES,
             "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},  # AF_INET only
            {"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EINVAL},
        ],
    }
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    out = in_container(mc, rootfs, probe, "sh", "-c",
                       "grep Seccomp: /proc/self/status; /probe/probe socket_inet; "
                       "/probe/probe unshare_user; /probe/probe add_key; /probe/probe clone3",
                       opts=("--security-opt", f"seccomp={path}"))
    # its own refusals with its own errnos; what docker's would refuse is allowed here
    assert out.split("\n") == ["Seccomp:\t2", "EACCES", "EINVAL", "OK", "OK"]


def test_a_profile_asking_for_the_unsupported_is_refused_in_one_line(mc, rootfs, tmp_path):
    path = tmp_path / "notify.json"
    path.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}))
    r = mc("run", "--security-opt", f"seccomp={path}", rootfs, "true")
    assert r.returncode == 125
    assert r.stderr.count("\n") == 1 and "SCMP_ACT_NOTIFY is not supported" in r.stderr
    r = mc("run", "--security-opt", f"seccomp={tmp_path}/missing.json", rootfs, "true")
    assert r.returncode == 125 and "No such file" in r.stderr and r.stderr.count("\n") == 1


def test_exec_gets_the_containers_filter(mc, rootfs, probe):
    """(and run -d's own process is filtered: its PID 1, seen from the exec). Without
    no_new_privs the filter goes in before exec's intermediate drops CAP_SYS_ADMIN, and its
    clone3 (ENOSYS, as docker's profile says) falls back to clone, as libc does."""
    for opts, mode, add_key in (([], "2", "EPERM"),
                                (["--security-opt", "no-new-privileges=false"], "2", "EPERM"),
                                (["--security-opt", "seccomp=unconfined"], "0", "OK")):
        r = mc("run", "-d", "--rm", *opts, "-v", f"{probe}:/probe:ro", rootfs, "sleep", "100")
        assert r.returncode == 0, r.stderr
        cid = r.stdout.strip()
        try:
            r = mc("exec", cid, "sh", "-c", "grep Seccomp: /proc/1/status /proc/self/status; "
                   "/probe/probe add_key")
            assert r.returncode == 0, r.stderr
            assert r.stdout.split("\n")[:3] == [f"/proc/1/status:Seccomp:\t{mode}",
                                                f"/proc/self/status:Seccomp:\t{mode}", add_key]
        finally:
            mc("stop", "-t", "0", cid)  # --rm: its shim removes it


def test_oci_linux_seccomp_applied_as_given(mc, mc_cmd, probe_rootfs, tmp_path):
    from test_lifecycle import make_bundle, oci_create, wait_for

    script = "grep Seccomp: /proc/self/status; /probe/probe socket_inet; /probe/probe fork"
    oci_profile = {  # the OCI form, as podman and dockerd send it
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.EPERM,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": [
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES},
            {"names": ["clone"] + sorted(n for n, rules in _actions(sp.load_default()).items()
                                         if (scmp.ACT_ALLOW, ()) in rules),
             "action": "SCMP_ACT_ALLOW"},
        ],
    }
    for seccomp, expected in ((oci_profile, ["Seccomp:\t2", "EACCES", "OK"]),
                              (None, ["Seccomp:\t0", "OK", "OK"])):  # none given: none, as runc
        bundle = make_bundle(tmp_path, probe_rootfs, ["sh", "-c", script])
        config = json.loads(open(f"{bundle}/config.json").read())
        if seccomp:
            config["linux"]["seccomp"] = seccomp
        open(f"{bundle}/config.json", "w").write(json.dumps(config))
        out = tmp_path / "out"
        with open(out, "w") as f:
            r = oci_create(mc_cmd, tmp_path, "--bundle", bundle, "sc", stdout=f)
        assert r.returncode == 0, r.stderr
        assert mc("start", "sc").returncode == 0
        assert wait_for(lambda: json.loads(mc("state", "sc").stdout)["status"] == "stopped")
        assert mc("delete", "sc").returncode == 0
        assert out.read_text().split("\n")[:3] == expected


def test_features_reports_seccomp(mc):
    seccomp = json.loads(mc("features").stdout)["linux"]["seccomp"]
    assert seccomp["enabled"] is True
    assert {"SCMP_ACT_ERRNO", "SCMP_ACT_ALLOW", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP",
            "SCMP_ACT_LOG"} <= set(seccomp["actions"])
    assert "SCMP_ACT_NOTIFY" not in seccomp["actions"]
    assert "SCMP_CMP_MASKED_EQ" in seccomp["operators"] and "SCMP_ARCH_X86_64" in seccomp["archs"]


def test_container_gets_its_own_session_keyring(mc, mc_cmd, rootfs, probe, probe_rootfs,
                                                 tmp_path):
    """A key in the session keyring minicontainer was started from is not visible inside
    (unconfined, so that keyctl itself is allowed), unless OCI create --no-new-keyring."""
    host = [f"{probe}/probe", "with_session_key", "mc-test-secret"]
    r = subprocess.run([*host, f"{probe}/probe", "search", "mc-test-secret"],
                       capture_output=True, text=True)
    assert r.stdout == "OK\n", r.stderr  # the key is there, outside
    r = subprocess.run([*host, *mc_cmd, "run", "--security-opt", "seccomp=unconfined", "-v",
                        f"{probe}:/probe:ro", rootfs, "/probe/probe", "search",
                        "mc-test-secret"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "ENOKEY\n", r.stderr

    from test_lifecycle import make_bundle, wait_for

    bundle = make_bundle(tmp_path, probe_rootfs, ["/probe/probe", "search", "mc-test-secret"])
    for flags, expected in (([], "ENOKEY"), (["--no-new-keyring"], "OK")):
        out, err = tmp_path / "out", tmp_path / "err"
        with open(out, "w") as f, open(err, "w") as e:  # files: the container holds them
            r = subprocess.run([*host, *mc_cmd, "create", *flags, "--bundle", bundle, "k"],
                               stdin=subprocess.DEVNULL, stdout=f, stderr=e, timeout=60)
        assert r.returncode == 0, err.read_text()
        assert mc("start", "k").returncode == 0
        assert wait_for(lambda: json.loads(mc("state", "k").stdout)["status"] == "stopped")
        assert mc("delete", "k").returncode == 0
        assert out.read_text() == expected + "\n", flags


def test_the_run_path_reads_the_cached_filter(mc_cmd, rootfs, state_root):
    """Compiled once: later runs read <state root>/seccomp/KEY and import neither json nor
    the translator (start-up: docs/security.md)."""
    assert subprocess.run([*mc_cmd, "run", rootfs, "true"]).returncode == 0
    cache = os.path.join(state_root, "seccomp")
    before = {e.name: e.stat().st_mtime_ns for e in os.scandir(cache)}
    r = subprocess.run([mc_cmd[0], "-X", "importtime", *mc_cmd[1:], "run", rootfs, "true"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines()
                if line.startswith("import time:")}
    assert "minicontainer.runtime.seccomp" in imported
    assert not imported & {"json", "minicontainer.runtime.seccomp_profile"}
    assert {e.name: e.stat().st_mtime_ns for e in os.scandir(cache)} == before


# ---- unit: the translation, no root, no container -----------------------------------------

def _actions(profile, caps=DEFAULT_CAPS) -> dict[str, set]:
    """syscall name -> {(action, conditions)} of the rules for `caps`."""
    out: dict[str, set] = {}
    for action, name, conds in sp.rules(profile, frozenset(caps))[3]:
        out.setdefault(name, set()).add((action, tuple(conds)))
    return out


@pytest.mark.unit
def test_docker_profile_resolved_against_capabilities():
    default = sp.load_default()
    plain = _actions(default)
    admin = _actions(default, DEFAULT_CAPS | {"sys_admin"})
    allow = scmp.ACT_ALLOW
    for name in ("mount", "unshare", "setns", "bpf", "umount2", "open_by_handle_at", "reboot",
                 "add_key", "keyctl", "io_uring_setup", "userfaultfd", "perf_event_open"):
        assert name not in plain, name  # the default action (EPERM) answers
    assert (allow, ()) in admin["mount"] and (allow, ()) in admin["unshare"]
    # clone: namespace flags masked out without CAP_SYS_ADMIN; clone3 ENOSYS
    assert plain["clone"] == {(allow, ((0, scmp.CMP_MASKED_EQ, 0x7E020000, 0),))}
    assert plain["clone3"] == {(scmp.act_errno(errno.ENOSYS), ())}
    assert admin["clone"] == {(allow, ())} and admin["clone3"] == {(allow, ())}
    assert "open_by_handle_at" in _actions(default, DEFAULT_CAPS | {"dac_read_search"})
    assert "perf_event_open" in _actions(default, DEFAULT_CAPS | {"perfmon"})
    # socket: every family but AF_VSOCK (40); ptrace: kernel >= 4.8 (minKernel)
    assert plain["socket"] == {(allow, ((0, scmp.CMP_NE, 40, 0),))}
    assert (allow, ()) in plain["ptrace"]


@pytest.mark.unit
def test_docker_profile_resolved_against_the_architecture():
    if platform.machine() != "x86_64":
        pytest.skip("checks x86_64's parts of the profile")
    default = sp.load_default()
    _, arches, _, _ = sp.rules(default, DEFAULT_CAPS)
    assert arches == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    plain = _actions(default)
    assert "arch_prctl" in plain and "modify_ldt" in plain
    assert "s390_runtime_instr" not in plain and "riscv_flush_icache" not in plain
    assert all(c[0][0] == 0 for _, c in plain["clone"])  # not s390's argument order


@pytest.mark.unit
def test_operators_errnos_and_flags():
    ops = ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
           "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"]
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [
            *({"names": [f"setpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
               "args": [{"index": i, "value": 7, "valueTwo": 3, "op": op}]}
              for i, op in enumerate(ops[:6])),
            {"names": ["personality"], "action": "SCMP_ACT_KILL_PROCESS",
             "args": [{"index": 0, "value": 0xFF, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]},
            # two conditions on one argument: one rule each (either one matches), as runc
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errno": "EACCES",
             "args": [{"index": 0, "value": 16, "op": "SCMP_CMP_EQ"},
                      {"index": 0, "value": 40, "op": "SCMP_CMP_EQ"}]},
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},  # no errnoRet: EPERM
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},  # = default: skipped
            {"name": "kill", "action": "SCMP_ACT_TRAP"},
            {"names": ["chdir"], "action": "SCMP_ACT_LOG"},
            {"names": ["ptrace"], "action": "SCMP_ACT_KILL"},
        ],
    }
    default, _, flags, _ = sp.rules(profile, frozenset())
    assert default == scmp.ACT_ALLOW and flags == scmp.FLAG_LOG
    got = _actions(profile)
    assert got["setpriority"] == {(scmp.act_errno(13), ((i, getattr(scmp, op[5:]), 7, 3),))
                                  for i, op in enumerate(ops[:6])}
    assert got["personality"] == {(scmp.ACT_KILL_PROCESS, ((0, scmp.CMP_MASKED_EQ, 0xFF, 8),))}
    assert got["socket"] == {(scmp.act_errno(errno.EACCES), ((0, scmp.CMP_EQ, 16, 0),)),
                             (scmp.act_errno(errno.EACCES), ((0, scmp.CMP_EQ, 40, 0),))}
    assert got["mkdir"] == {(scmp.act_errno(errno.EPERM), ())}
    assert "getpid" not in got
    assert got["kill"] == {(scmp.ACT_TRAP, ())} and got["chdir"] == {(scmp.ACT_LOG, ())}
    assert got["ptrace"] == {(scmp.ACT_KILL_THREAD, ())}
    bpf, load_flags = sp.compile_profile(profile, frozenset())
    assert bpf and len(bpf) % 8 == 0 and load_flags == scmp.FLAG_LOG


@pytest.mark.unit
@pytest.mark.parametrize("profile,words", [
    ({"defaultAction": "SCMP_ACT_NOTIFY"}, "defaultAction: SCMP_ACT_NOTIFY is not supported"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}, "SCMP_ACT_NOTIFY is not supported"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/run/agent.sock"}, "listenerPath"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NEW_LISTENER"]},
     "flag 'SECCOMP_FILTER_FLAG_NEW_LISTENER' is not supported"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action":
      "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ALMOST"}]}]},
     "unknown operator 'SCMP_CMP_ALMOST'"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action":
      "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]},
     "argument index 6"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action":
      "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]},
     "argument value -1"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "ALLOW"}]},
     "unknown action 'ALLOW'"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]},
     "unknown architecture 'SCMP_ARCH_VAX'"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"],
      "action": "SCMP_ACT_ERRNO", "includes": {"kernelFeatures": ["x"]}}]},
     "unknown includes field 'kernelFeatures'"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "seccompAgent": True}, "unknown field 'seccompAgent'"),
    (["SCMP_ACT_ALLOW"], "not a JSON object"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "comment": 1.5}, "comment: 1.5 is not a string"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": ["mkdir"]},
     "syscalls[0] is not a JSON object"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": "mkdir",
      "action": "SCMP_ACT_ERRNO"}]}, "names must be a list of syscall names"),
])
def test_refused_with_one_line_naming_it(profile, words):
    with pytest.raises(ContainerError) as e:
        sp.check(profile)
    assert words in str(e.value) and "\n" not in str(e.value)


@pytest.mark.unit
def test_unknown_syscall_names():
    """Skipped where the default action refuses them anyway (profiles list syscalls newer
    than libseccomp, or of other architectures); refused where it would let them through."""
    strict = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["no_such_syscall", "getpid"], "action": "SCMP_ACT_ALLOW"}]}
    assert sp.compile_profile(strict, frozenset())[0]
    lax = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["no_such_syscall"], "action": "SCMP_ACT_ERRNO"}]}
    with pytest.raises(ContainerError, match="'no_such_syscall' is unknown to libseccomp"):
        sp.compile_profile(lax, frozenset())


@pytest.mark.unit
def test_filter_cache(tmp_path):
    from minicontainer.runtime import seccomp
    from minicontainer.spec import Security

    sec = Security(capabilities=DEFAULT_CAPS)
    bpf, flags = seccomp.filter_for(sec, str(tmp_path))
    (entry,) = os.listdir(tmp_path / "seccomp")
    assert seccomp.filter_for(sec, str(tmp_path)) == (bpf, flags)  # read back, the same
    assert os.listdir(tmp_path / "seccomp") == [entry]
    # other capabilities, another profile: other BPF, other entries; unconfined: none
    admin = seccomp.filter_for(Security(capabilities=DEFAULT_CAPS | {"sys_admin"}),
                               str(tmp_path))
    assert admin[0] != bpf
    custom = Security(capabilities=DEFAULT_CAPS, seccomp={"defaultAction": "SCMP_ACT_LOG"})
    assert seccomp.filter_for(custom, str(tmp_path))[0] != bpf
    assert len(os.listdir(tmp_path / "seccomp")) == 3
    assert seccomp.filter_for(Security(capabilities=DEFAULT_CAPS, seccomp=None),
                              str(tmp_path)) is None
