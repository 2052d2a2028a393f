"""The OCI runtime interface, as runc's: create/start/state/kill/delete, the state machine
(created, running, stopped), errors for unknown ids and verbs in the wrong state, exec
--process, --console-socket, features/spec, refused config fields."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time

from test_lifecycle import make_bundle, oci_create, wait_for


def state(mc, cid) -> dict:
    r = mc("state", cid)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_state_machine(mc, mc_cmd, rootfs, tmp_path):
    bundle = make_bundle(tmp_path, rootfs, ["sh", "-c", "echo ran > /tmp/out; sleep 1000"],
                         annotations={"org.example": "yes"})
    pid_file = tmp_path / "pid"
    r = oci_create(mc_cmd, tmp_path, "--bundle", bundle, "--pid-file", str(pid_file), "c1")
    assert r.returncode == 0, r.stderr
    s = state(mc, "c1")
    assert s["ociVersion"] and s["id"] == "c1" and s["status"] == "created"
    assert s["bundle"] == bundle and s["annotations"] == {"org.example": "yes"}
    assert s["pid"] == int(pid_file.read_text())
    # created: the process exists, blocked before execve (it is still the runtime's code)
    with open(f"/proc/{s['pid']}/cmdline", "rb") as f:
        assert b"sleep" not in f.read()

    # wrong state: refused, and nothing changed
    r = mc("delete", "c1")
    assert r.returncode != 0 and "created" in r.stderr
    assert state(mc, "c1")["status"] == "created"

    assert mc("start", "c1").returncode == 0
    s = state(mc, "c1")
    assert s["status"] == "running"
    assert wait_for(lambda: b"sleep" in open(f"/proc/{s['pid']}/cmdline", "rb").read())
    r = mc("start", "c1")
    assert r.returncode != 0 and "running" in r.stderr
    r = mc("delete", "c1")
    assert r.returncode != 0 and "running" in r.stderr
    assert state(mc, "c1")["status"] == "running"

    assert mc("kill", "c1", "KILL").returncode == 0
    assert wait_for(lambda: state(mc, "c1")["status"] == "stopped")
    r = mc("kill", "c1", "9")
    assert r.returncode != 0 and "stopped" in r.stderr
    r = mc("start", "c1")
    assert r.returncode != 0 and "stopped" in r.stderr
    assert mc("delete", "c1").returncode == 0
    r = mc("state", "c1")
    assert r.returncode != 0 and "does not exist" in r.stderr


def test_unknown_ids_and_bad_input(mc, mc_cmd, rootfs, tmp_path):
    for verb in (["state"], ["start"], ["delete"], ["kill"]):  # delete --force: test_oci_verbs
        r = mc(*verb, "no-such-id")
        assert r.returncode != 0 and "no-such-id" in r.stderr, verb
    bundle = make_bundle(tmp_path, rootfs, ["true"])
    assert oci_create(mc_cmd, tmp_path, "--bundle", bundle, "dup").returncode == 0
    r = oci_create(mc_cmd, tmp_path, "--bundle", bundle, "dup")
    assert r.returncode != 0 and "already exists" in r.stderr
    assert state(mc, "dup")["status"] == "created"  # the first one is untouched
    assert mc("delete", "--force", "dup").returncode == 0
    r = oci_create(mc_cmd, tmp_path, "--bundle", str(tmp_path / "nowhere"), "x")
    assert r.returncode != 0 and "config.json" in r.stderr
    r = oci_create(mc_cmd, tmp_path, "--bundle", bundle, "bad/id")
    assert r.returncode != 0 and "invalid container id" in r.stderr


def test_kill_by_name_and_number_and_all(mc, mc_cmd, rootfs, tmp_path):
    bundle = make_bundle(tmp_path, rootfs, ["sh", "-c", 'trap "exit 0" HUP; sleep 1000 & wait'])
    assert oci_create(mc_cmd, tmp_path, "--bundle", bundle, "k").returncode == 0
    assert mc("start", "k").returncode == 0
    time.sleep(0.3)
    r = mc("kill", "k", "NOSUCHSIG")
    assert r.returncode != 0 and "unknown signal" in r.stderr
    assert mc("kill", "--all", "k", "SIGKILL").returncode == 0  # every process, via the cgroup
    assert wait_for(lambda: state(mc, "k")["status"] == "stopped")
    assert mc("delete", "k").returncode == 0


def test_exec_process_json_detach_and_pid_file(mc, mc_cmd, rootfs, tmp_path):
    bundle = make_bundle(tmp_path, rootfs, ["sleep", "1000"], hostname="ocibox")
    assert oci_create(mc_cmd, tmp_path, "--bundle", bundle, "e").returncode == 0
    assert mc("start", "e").returncode == 0
    process = {"args": ["sh", "-c", "hostname > /dev/shm/h; echo $FOO >> /dev/shm/h"], "cwd": "/",
               "env": ["PATH=/bin:/usr/bin", "FOO=bar"], "user": {"uid": 0, "gid": 0}}
    (tmp_path / "p.json").write_text(json.dumps(process))
    r = mc("exec", "--process", str(tmp_path / "p.json"), "e")
    assert r.returncode == 0, r.stderr
    r = mc("exec", "e", "cat", "/dev/shm/h")
    assert r.stdout == "ocibox\nbar\n"
    process["args"] = ["sleep", "30"]
    (tmp_path / "p.json").write_text(json.dumps(process))
    # the detached process keeps the stdio it was given: no pipes to wait on here
    r = mc("exec", "--process", str(tmp_path / "p.json"), "--detach",
           "--pid-file", str(tmp_path / "epid"), "e", capture_output=False,
           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
    assert r.returncode == 0
    epid = int((tmp_path / "epid").read_text())
    with open(f"/proc/{epid}/cmdline", "rb") as f:
        assert f.read() == b"sleep\x0030\x00"
    assert os.readlink(f"/proc/{epid}/ns/pid") == os.readlink(f"/proc/{state(mc, 'e')['pid']}/ns/pid")
    assert mc("delete", "--force", "e").returncode == 0


def test_console_socket_receives_the_pty_master(mc, mc_cmd, rootfs, tmp_path):
    bundle = make_bundle(tmp_path, rootfs, ["sh", "-c", "tty; echo hello-console"], terminal=True)
    path = str(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    r = oci_create(mc_cmd, tmp_path, "--bundle", bundle, "--console-socket", path, "t")
    assert r.returncode == 0, r.stderr
    conn, _ = server.accept()
    msg, fds, _, _ = socket.recv_fds(conn, 1024, 1)
    assert msg.startswith(b"/dev/pts/") and len(fds) == 1
    master = fds[0]
    assert mc("start", "t").returncode == 0
    out = b""
    deadline = time.monotonic() + 10
    while b"hello-console" not in out and time.monotonic() < deadline:
        try:
            out += os.read(master, 1024)
        except OSError:
            break
    os.close(master)
    conn.close()
    server.close()
    assert b"/dev/pts/0" in out and b"hello-console" in out
    assert wait_for(lambda: state(mc, "t")["status"] == "stopped")
    assert mc("delete", "t").returncode == 0


def test_refused_fields_are_named(mc, mc_cmd, rootfs, tmp_path):
    for field, value, words in (
            ("linux", {"seccomp": {"defaultAction": "SCMP_ACT_NOTIFY"}}, "SCMP_ACT_NOTIFY"),
            ("linux", {"uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]},
             "uidMappings")):
        bundle = make_bundle(tmp_path, rootfs, ["true"])
        config = json.loads(open(f"{bundle}/config.json").read())
        if field == "linux":
            config["linux"].update(value)
        else:
            config[field] = value
        open(f"{bundle}/config.json", "w").write(json.dumps(config))
        r = oci_create(mc_cmd, tmp_path, "--bundle", bundle, "refused")
        assert r.returncode != 0 and words in r.stderr and "not supported" in r.stderr, r.stderr
        assert mc("state", "refused").returncode != 0  # nothing was created


def test_config_fields_applied(mc, mc_cmd, rootfs, tmp_path):
    """rlimits, env, cwd, user, sysctl, readonly root, masked paths, noNewPrivileges."""
    bundle = make_bundle(tmp_path, rootfs, ["sh", "-c",
                         "ulimit -n; echo $X; pwd; id -u; cat /proc/sys/net/ipv4/ip_forward; "
                         "touch /x 2>/dev/null || echo ro; grep NoNewPrivs /proc/self/status; "
                         "cat /proc/version | wc -c"])
    config = json.loads(open(f"{bundle}/config.json").read())
    config["process"].update(env=["PATH=/bin:/usr/bin", "X=ex"], cwd="/tmp",
                             user={"uid": 1000, "gid": 1000}, noNewPrivileges=True,
                             rlimits=[{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}])
    config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    config["linux"]["maskedPaths"] = ["/proc/version"]
    open(f"{bundle}/config.json", "w").write(json.dumps(config))
    out = tmp_path / "out"
    with open(out, "w") as f:
        r = oci_create(mc_cmd, tmp_path, "--bundle", bundle, "f", stdout=f)
    assert r.returncode == 0, r.stderr
    assert mc("start", "f").returncode == 0
    assert wait_for(lambda: state(mc, "f")["status"] == "stopped")
    assert out.read_text().split("\n")[:8] == ["123", "ex", "/tmp", "1000", "1", "ro",
                                               "NoNewPrivs:\t1", "0"]
    assert mc("delete", "f").returncode == 0


def test_features_spec_version_and_log(mc, tmp_path):
    features = json.loads(mc("features").stdout)
    assert features["ociVersionMax"] and "pid" in features["linux"]["namespaces"]
    assert mc("spec", "--bundle", str(tmp_path)).returncode == 0
    assert json.loads((tmp_path / "config.json").read_text())["process"]["args"] == ["sh"]
    assert "version" in mc("--version").stdout
    log = tmp_path / "log.json"
    r = mc("--log", str(log), "--log-format", "json", "state", "nothing-here")
    assert r.returncode != 0
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "nothing-here" in entry["msg"]
