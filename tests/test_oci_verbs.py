"""runc's verbs and flags that clients call beyond create/start/kill/delete: pause/resume,
ps [--format], update, events, delete --force of a missing id, checkpoint/restore (refused),
exec's runc flags, create --no-pivot, the global --systemd-cgroup, features.

The unit tests (no root, no container) check the argument parsing; the others drive a real
container created from a bundle and look at it from the host: its cgroup's files and /proc.
"""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from conftest import PYTHON, REPO
from test_lifecycle import make_bundle, oci_create, wait_for


# --- argument parsing (unit) ---------------------------------------------------------------

@pytest.mark.unit
def test_events_interval_is_a_go_duration():
    from minicontainer.cli.events import parse_duration
    from minicontainer.errors import UsageError

    assert parse_duration("5s") == 5
    assert parse_duration("100ms") == pytest.approx(0.1)
    assert parse_duration("1m30s") == 90
    assert parse_duration("1.5h") == 5400
    for bad in ("5", "s", "0s", "-1s", "5 s", "5sx", ""):
        with pytest.raises(UsageError, match="interval"):
            parse_duration(bad)


@pytest.mark.unit
def test_update_flags_become_linux_resources(tmp_path):
    from minicontainer.cli import update
    from minicontainer.errors import UsageError

    def parse(*args):
        return update.parse(update.VERB.parse([*args, "id"]))

    assert parse("--memory", "64m", "--cpu-quota", "50000", "--cpu-period", "100000",
                 "--pids-limit", "20", "--cpuset-cpus", "0") == {
        "memory": {"limit": 64 << 20}, "cpu": {"quota": 50000, "period": 100000, "cpus": "0"},
        "pids": {"limit": 20}}
    assert parse("--memory-swap", "-1", "--memory", "1g")["memory"] == {"swap": -1,
                                                                        "limit": 1 << 30}
    f = tmp_path / "r.json"
    f.write_text(json.dumps({"memory": {"limit": 1 << 20}, "pids": {"limit": 5}}))
    # the flags go over the file, as runc's do
    assert parse("-r", str(f), "--pids-limit", "7") == {"memory": {"limit": 1 << 20},
                                                        "pids": {"limit": 7}}
    with pytest.raises(UsageError, match="removing a limit"):
        parse("--pids-limit", "0")
    with pytest.raises(UsageError, match="want a whole number"):
        parse("--cpu-quota", "lots")
    f.write_text(json.dumps({"devices": [{"allow": True, "access": "rwm"}]}))
    with pytest.raises(UsageError, match="devices cannot be changed"):
        parse("-r", str(f))
    f.write_text("[1]")
    with pytest.raises(UsageError, match="not a JSON object"):
        parse("-r", str(f))


@pytest.mark.unit
def test_flags_refused_before_any_container_is_looked_up():
    from minicontainer.cli import checkpoint, exec as exec_cli, ps, restore
    from minicontainer.errors import UsageError

    nowhere = "/nonexistent-state-root"
    with pytest.raises(UsageError, match="--apparmor .*AppArmor"):
        exec_cli.main(["--apparmor", "docker-default", "c", "true"], nowhere)
    with pytest.raises(UsageError, match="--process-label .*SELinux"):
        exec_cli.main(["--process-label", "system_u:system_r:container_t", "c", "true"], nowhere)
    with pytest.raises(UsageError, match="--format lists the processes of a container"):
        ps.main(["--format", "json"], nowhere)
    with pytest.raises(UsageError, match="take no container id"):
        ps.main(["-a", "c"], nowhere)
    with pytest.raises(UsageError, match="invalid --format .yaml."):
        ps.main(["--format", "yaml", "c"], nowhere)
    with pytest.raises(UsageError, match="^checkpoint is not supported: .*no CRIU"):
        checkpoint.main(["--image-path", "/tmp/x", "c"], nowhere)
    with pytest.raises(UsageError, match="^restore is not supported: .*no CRIU"):
        restore.main(["c"], nowhere)


@pytest.mark.unit
def test_systemd_cgroup_is_refused_in_one_line(capsys):
    from minicontainer.cli import main

    assert main(["--systemd-cgroup", "state", "c"]) == 125
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--systemd-cgroup is not supported: systemd is not running here" in err or \
        os.path.isdir("/run/systemd/system")
    assert main(["--systemd-cgroup=false", "--help"]) == 0  # runc's default, accepted


@pytest.mark.unit
def test_features_say_checkpoint_is_off():
    from minicontainer import oci

    f = oci.features()
    assert f["annotations"]["org.opencontainers.runc.checkpoint.enabled"] == "false"
    assert f["linux"]["cgroup"] == {"v1": False, "v2": True, "systemd": False,
                                    "systemdUser": False}


# --- with a real container -----------------------------------------------------------------

def state(mc, cid) -> dict:
    r = mc("state", cid)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def started(mc, mc_cmd, tmp_path, rootfs, cid, args, **process):
    """A running container from a bundle whose process has `args` (and `process` fields)."""
    bundle = make_bundle(tmp_path, rootfs, args)
    if process:
        path = os.path.join(bundle, "config.json")
        with open(path) as f:
            config = json.load(f)
        config["process"].update(process)
        with open(path, "w") as f:
            json.dump(config, f)
    r = oci_create(mc_cmd, tmp_path, "--bundle", bundle, cid)
    assert r.returncode == 0, r.stderr
    assert mc("start", cid).returncode == 0
    return state(mc, cid)


def cgroup_of(pid: int) -> str:
    """The host path of a process's cgroup v2 (its 0:: line, under the mounted hierarchy)."""
    from minicontainer.kernel.cgroupfs import mounts

    with open(f"/proc/{pid}/cgroup") as f:
        rel = next(line[3:].strip() for line in f if line.startswith("0::"))
    return mounts()[0] + rel


def cpu_usec(cgroup: str) -> int:
    with open(f"{cgroup}/cpu.stat") as f:
        return int(next(line.split()[1] for line in f if line.startswith("usage_usec")))


def test_pause_freezes_every_process_and_resume_thaws(mc, mc_cmd, rootfs, tmp_path):
    # two busy loops: a paused container uses no CPU at all, then uses it again after resume
    s = started(mc, mc_cmd, tmp_path, rootfs, "p1",
                ["sh", "-c", "while :; do :; done & while :; do :; done"])
    cgroup = cgroup_of(s["pid"])
    try:
        assert mc("resume", "p1").returncode == 125  # not paused
        r = mc("pause", "p1")
        assert r.returncode == 0, r.stderr
        assert state(mc, "p1")["status"] == "paused"
        assert state(mc, "p1")["pid"] == s["pid"]
        with open(f"{cgroup}/cgroup.events") as f:
            assert "frozen 1\n" in f.read()
        before = cpu_usec(cgroup)
        time.sleep(0.3)
        assert cpu_usec(cgroup) == before
        r = mc("pause", "p1")
        assert r.returncode == 125 and "it is paused" in r.stderr
        r = mc("exec", "p1", "true")
        assert r.returncode == 125 and "it is paused" in r.stderr
        r = mc("resume", "p1")
        assert r.returncode == 0, r.stderr
        assert state(mc, "p1")["status"] == "running"
        with open(f"{cgroup}/cgroup.events") as f:
            assert "frozen 0\n" in f.read()
        before = cpu_usec(cgroup)
        assert wait_for(lambda: cpu_usec(cgroup) > before + 1000)
        # a paused container can still be killed, as with runc
        assert mc("pause", "p1").returncode == 0
        assert mc("kill", "p1", "KILL").returncode == 0
        assert wait_for(lambda: state(mc, "p1")["status"] == "stopped")
        r = mc("pause", "p1")
        assert r.returncode == 125 and "it is stopped" in r.stderr
    finally:
        assert mc("delete", "--force", "p1").returncode == 0


def test_ps_lists_the_container_processes(mc, mc_cmd, rootfs, tmp_path):
    s = started(mc, mc_cmd, tmp_path, rootfs, "ps1",
                ["sh", "-c", "sleep 1001 & sleep 1002 & wait"])
    try:
        cgroup = cgroup_of(s["pid"])
        expected = lambda: sorted(int(p) for p in open(f"{cgroup}/cgroup.procs").read().split())
        assert wait_for(lambda: len(expected()) == 3)
        r = mc("ps", "--format", "json", "ps1")
        assert r.returncode == 0, r.stderr
        assert sorted(json.loads(r.stdout)) == expected() and s["pid"] in expected()
        r = mc("ps", "ps1")  # table: the host's ps -ef, only the container's lines
        assert r.returncode == 0, r.stderr
        header, *lines = r.stdout.splitlines()
        assert header.split()[:2] == ["UID", "PID"]
        assert sorted(int(line.split()[1]) for line in lines) == expected()
        assert sum(line.endswith((" sleep 1001", " sleep 1002")) for line in lines) == 2
        r = mc("ps", "ps1", "--", "-o", "pid,comm")
        assert r.returncode == 0, r.stderr
        assert sorted(r.stdout.split()[3::2]) == ["sh", "sleep", "sleep"]
        r = mc("ps", "--format", "json", "ps1", "--", "-ef")
        assert r.returncode == 125 and "takes no ps arguments" in r.stderr
        assert mc("ps", "-q").stdout.split() == ["ps1"]  # docker's listing, unchanged
    finally:
        assert mc("delete", "--force", "ps1").returncode == 0
    r = mc("ps", "--format", "json", "ps1")
    assert r.returncode == 125 and "does not exist" in r.stderr


def test_update_refuses_what_the_host_cannot_enforce(mc, mc_cmd, rootfs, tmp_path):
    s = started(mc, mc_cmd, tmp_path, rootfs, "u1", ["sleep", "1000"])
    try:
        available = open(os.path.join(os.path.dirname(cgroup_of(s["pid"])),
                                      "cgroup.controllers")).read().split()
        # nothing asked: nothing to do, as runc
        r = mc("update", "-r", "-", "u1", stdin=None, input="{}")
        assert r.returncode == 0, r.stderr
        if "pids" in available:
            pytest.skip("this host's cgroup v2 has a pids controller: see the guest tests")
        r = mc("update", "--pids-limit", "10", "u1")
        assert r.returncode == 125
        assert r.stderr.count("\n") == 1
        assert "cannot apply --pids-limit" in r.stderr and "no pids controller" in r.stderr
        r = mc("update", "-r", "-", "u1", stdin=None,
               input=json.dumps({"memory": {"kernel": 1 << 20}}))
        assert r.returncode == 125
        assert "linux.resources.memory.kernel is not supported" in r.stderr
        with open(f"{cgroup_of(s['pid'])}/cgroup.events") as f:
            assert "populated 1" in f.read()  # the container is untouched
    finally:
        assert mc("delete", "--force", "u1").returncode == 0
    r = mc("update", "--pids-limit", "10", "u1")
    assert r.returncode == 125 and "does not exist" in r.stderr


def test_events_stats_from_the_cgroup(mc, mc_cmd, rootfs, tmp_path):
    s = started(mc, mc_cmd, tmp_path, rootfs, "e1", ["sh", "-c", "sleep 1000 & wait"])
    try:
        cgroup = cgroup_of(s["pid"])
        assert wait_for(lambda: len(open(f"{cgroup}/cgroup.procs").read().split()) == 2)
        r = mc("events", "--stats", "e1")
        assert r.returncode == 0, r.stderr
        (event,) = [json.loads(line) for line in r.stdout.splitlines()]
        assert event["type"] == "stats" and event["id"] == "e1"
        assert event["data"]["pids"]["current"] == 2
        usage = event["data"]["cpu"]["usage"]
        assert usage["total"] > 0 and usage["total"] >= usage["user"]
        # the stream: a stats event every interval until the container stops
        stream = subprocess.Popen([*mc_cmd, "events", "--interval", "100ms", "e1"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first = json.loads(stream.stdout.readline())
            second = json.loads(stream.stdout.readline())
            assert first["type"] == second["type"] == "stats"
            assert mc("kill", "e1", "KILL").returncode == 0
            out, err = stream.communicate(timeout=10)  # it ends when the container stops
            assert stream.returncode == 0, err
        finally:
            stream.kill()
            stream.wait()
        r = mc("events", "--stats", "e1")
        assert r.returncode == 125 and "is not running" in r.stderr
    finally:
        assert mc("delete", "--force", "e1").returncode == 0


def test_delete_force_of_a_missing_id_succeeds(mc):
    r = mc("delete", "--force", "never-was")
    assert r.returncode == 0 and r.stderr == ""
    r = mc("delete", "never-was")
    assert r.returncode == 125 and "does not exist" in r.stderr


def test_the_lifecycle_verbs_import_nothing_heavy():
    """An engine starts the runtime for every call: `state`, `kill`, `start`, `delete --force`,
    `pause` and `resume`, through the launcher install.sh writes (-S, the checkout first on
    sys.path), import none of argparse, json, re, enum, shutil or subprocess."""
    heavy = {"argparse", "json", "re", "enum", "shutil", "subprocess"}
    for verb in (["state", "c"], ["kill", "c", "0"], ["start", "c"], ["delete", "--force", "c"],
                 ["pause", "c"], ["resume", "c"]):
        r = subprocess.run([PYTHON, "-S", "-X", "importtime", "-c",
                            f"import sys; sys.path[:0] = [{REPO!r}]; "
                            "from minicontainer.cli import entry; entry()",
                            "--root", "/nonexistent-state-root", *verb],
                           capture_output=True, text=True)
        imported = {line.split("|")[2].strip() for line in r.stderr.splitlines()
                    if line.startswith("import time:") and "|" in line}
        assert f"minicontainer.cli.{verb[0]}" in imported, r.stderr[-300:]
        assert not imported & heavy, (verb, sorted(imported & heavy))


def test_checkpoint_and_restore_are_refused(mc):
    for verb in ("checkpoint", "restore"):
        r = mc(verb, "whatever")
        assert r.returncode == 125
        assert r.stderr == f"minicontainer: {verb} is not supported: minicontainer has no " \
            "CRIU support (features: org.opencontainers.runc.checkpoint.enabled is false)\n"


def test_exec_runc_flags(mc, mc_cmd, rootfs, tmp_path):
    s = started(mc, mc_cmd, tmp_path, rootfs, "x1", ["sleep", "1000"], noNewPrivileges=False)
    try:
        r = mc("exec", "--cwd", "/tmp", "--env", "GREETING=hi", "x1",
               "sh", "-c", 'pwd; echo "$GREETING"')
        assert r.returncode == 0, r.stderr
        assert r.stdout == "/tmp\nhi\n"
        r = mc("exec", "--user", "1000:1000", "x1", "id")
        assert r.returncode == 0, r.stderr
        uid, gid = r.stdout.split()[:2]
        assert uid.partition("(")[0] == "uid=1000" and gid.partition("(")[0] == "gid=1000"

        def status_field(*flags):
            r = mc("exec", *flags, "x1", "cat", "/proc/self/status")
            assert r.returncode == 0, r.stderr
            return {k: v.strip() for k, _, v in
                    (line.partition(":") for line in r.stdout.splitlines())}

        NET_ADMIN = 1 << 12
        assert not int(status_field()["CapEff"], 16) & NET_ADMIN
        fields = status_field("--cap", "CAP_NET_ADMIN")
        for kind in ("CapEff", "CapPrm", "CapBnd"):
            assert int(fields[kind], 16) & NET_ADMIN, kind
        # the bundle says noNewPrivileges false; the flag sets it for this process alone
        assert status_field()["NoNewPrivs"] == "0"
        assert status_field("--no-new-privs")["NoNewPrivs"] == "1"
        r = mc("exec", "--cap", "CAP_NOT_A_THING", "x1", "true")
        assert r.returncode == 125 and "unknown capability 'CAP_NOT_A_THING'" in r.stderr
        r = mc("exec", "--apparmor", "unconfined", "x1", "true")
        assert r.returncode == 125 and "--apparmor unconfined: not supported" in r.stderr
        assert mc("exec", "--apparmor", "", "--process-label", "", "x1", "true").returncode == 0
        process = tmp_path / "p.json"
        process.write_text(json.dumps({"args": ["true"], "cwd": "/", "user": {"uid": 0,
                                                                                "gid": 0}}))
        r = mc("exec", "--process", str(process), "--cwd", "/tmp", "x1")
        assert r.returncode == 125 and "--cwd with --process" in r.stderr
    finally:
        assert mc("delete", "--force", "x1").returncode == 0


def test_create_no_pivot_chroots(mc, mc_cmd, rootfs, tmp_path):
    """With pivot_root the container's root is the root of its mount namespace (/proc/PID/root
    reads "/"); with --no-pivot it is a chroot into a directory of that namespace, whose root
    is still the host's tree: exec must land in the container's root all the same."""
    bundle = make_bundle(tmp_path, rootfs, ["sleep", "1000"])
    host_only = sorted(set(os.listdir("/")) - set(os.listdir(rootfs)))[0]
    for flags, chrooted in (([], False), (["--no-pivot"], True)):
        r = oci_create(mc_cmd, tmp_path, "--bundle", bundle, *flags, "np")
        assert r.returncode == 0, r.stderr
        try:
            assert mc("start", "np").returncode == 0
            root = os.readlink(f"/proc/{state(mc, 'np')['pid']}/root")
            assert (root != "/") == chrooted, (flags, root)
            r = mc("exec", "np", "ls", "/bin/busybox")
            assert r.stdout == "/bin/busybox\n", r.stderr
            r = mc("exec", "np", "ls", "-d", f"/{host_only}")
            assert r.returncode == 1 and "No such file or directory" in r.stderr, r.stdout
        finally:
            assert mc("delete", "--force", "np").returncode == 0
