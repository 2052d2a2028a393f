"""config.json fields Docker, containerd and podman send, each shown applied from inside a
real container (and from the host where it shows there): the five capability sets, groups,
umask, oom_score_adj, rlimits, hooks at every stage with their state JSON, linux.cgroupsPath,
FIFO devices, namespaces joined by path, domainname, consoleSize. The translation itself,
and every refusal, is unit-tested in unit/test_oci_fields_translation.py."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time

import pytest

from test_lifecycle import make_bundle, oci_create, wait_for

from minicontainer.kernel.caps import NUMBER


def state(mc, cid) -> dict:
    r = mc("state", cid)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def edit(bundle: str, change) -> None:
    path = f"{bundle}/config.json"
    config = json.loads(open(path).read())
    change(config)
    open(path, "w").write(json.dumps(config))


def run_to_end(mc, mc_cmd, tmp_path, bundle, cid) -> str:
    """create, start, wait until it stopped, delete: what it wrote on stdout and stderr."""
    out = tmp_path / f"{cid}.out"
    with open(out, "w") as f:
        r = oci_create(mc_cmd, tmp_path, "--bundle", bundle, cid, stdout=f)
    assert r.returncode == 0, r.stderr
    r = mc("start", cid)
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: state(mc, cid)["status"] == "stopped")
    assert mc("delete", cid).returncode == 0
    return out.read_text()


def mask(*names) -> str:
    value = 0
    for n in names:
        value |= 1 << NUMBER[n]
    return f"{value:016x}"


def status_caps(text: str) -> dict:
    return {line.split(":")[0]: line.split()[1] for line in text.splitlines()
            if line.startswith("Cap")}


SHOW = ("grep -E '^(Cap|Groups)' /proc/self/status; umask; cat /proc/self/oom_score_adj; "
        "ulimit -n; ulimit -Hn; id -u; id -g")


def test_five_capability_sets_groups_umask_oom_rlimits(mc, mc_cmd, rootfs, tmp_path):
    """A non-root user keeps what is ambient across execve (PR_SET_KEEPCAPS, then capset),
    CAP_CHECKPOINT_RESTORE included (python-prctl does not know it)."""
    bundle = make_bundle(tmp_path, rootfs, ["sh", "-c", SHOW])
    kept = ["CAP_NET_BIND_SERVICE", "CAP_CHECKPOINT_RESTORE"]
    edit(bundle, lambda c: c["process"].update(
        user={"uid": 1000, "gid": 1000, "additionalGids": [10, 20], "umask": 0o027},
        oomScoreAdj=500, rlimits=[{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}],
        capabilities={"bounding": kept + ["CAP_CHOWN", "CAP_KILL"], "permitted": kept,
                      "effective": kept[:1], "inheritable": kept, "ambient": kept}))
    out = run_to_end(mc, mc_cmd, tmp_path, bundle, "caps")
    got = status_caps(out)
    assert got == {"CapInh": mask("net_bind_service", "checkpoint_restore"),
                   "CapPrm": mask("net_bind_service", "checkpoint_restore"),
                   "CapEff": mask("net_bind_service", "checkpoint_restore"),
                   "CapBnd": mask("net_bind_service", "checkpoint_restore", "chown", "kill"),
                   "CapAmb": mask("net_bind_service", "checkpoint_restore")}, out
    assert "Groups:\t10 20 " in out  # exactly additionalGids, as runc
    # umask, oom_score_adj, soft and hard RLIMIT_NOFILE, uid, gid
    assert out.splitlines()[-6:] == ["0027", "500", "100", "200", "1000", "1000"], out


def test_docker_non_root_user(mc, mc_cmd, rootfs, tmp_path):
    """What Docker sends for --user 1000:1000: empty effective and permitted, its default
    bounding set, additionalGids; the process ends with no capability at all."""
    docker = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
              "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
              "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
    bundle = make_bundle(tmp_path, rootfs, ["sh", "-c", SHOW])
    edit(bundle, lambda c: (c["process"].update(
        user={"uid": 1000, "gid": 1000, "additionalGids": [1000]},
        capabilities={"bounding": docker}), c["linux"].pop("resources")))
    out = run_to_end(mc, mc_cmd, tmp_path, bundle, "dockeruser")
    got = status_caps(out)
    assert got["CapEff"] == got["CapPrm"] == got["CapInh"] == got["CapAmb"] == "0" * 16
    assert got["CapBnd"] == mask(*(c[4:].lower() for c in docker))
    assert "Groups:\t1000 " in out and out.splitlines()[-2:] == ["1000", "1000"]


def test_runc_spec_default_config_runs(mc, mc_cmd, rootfs, tmp_path):
    if not shutil.which("runc"):
        pytest.skip("runc is not installed (apt-get install runc)")
    bundle = tmp_path / "runcspec"
    bundle.mkdir()
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    edit(str(bundle), lambda c: (c["root"].update(path=rootfs), c["process"].update(
        terminal=False, args=["sh", "-c", "grep ^Cap /proc/self/status; hostname"])))
    out = tmp_path / "runcspec.out"
    with open(out, "w") as f:
        r = oci_create(mc_cmd, tmp_path, "--bundle", str(bundle), "runcspec", stdout=f)
    assert r.returncode == 0, r.stderr
    # runc's default asks for ambient capabilities with no inheritable set: the kernel keeps
    # none of them; one warning line says so, as runc warns
    assert r.stderr.count("\n") == 1 and "ambient" in r.stderr and "CAP_KILL" in r.stderr
    assert mc("start", "runcspec").returncode == 0
    assert wait_for(lambda: state(mc, "runcspec")["status"] == "stopped")
    assert mc("delete", "runcspec").returncode == 0
    got = status_caps(out.read_text())
    three = mask("audit_write", "kill", "net_bind_service")
    assert got == {"CapInh": "0" * 16, "CapPrm": three, "CapEff": three, "CapBnd": three,
                   "CapAmb": "0" * 16}
    assert out.read_text().splitlines()[-1] == "runc"


# --- hooks ---------------------------------------------------------------------------------

def hook(out_dir: str, stage: str, sh="/bin/sh", **extra) -> dict:
    """A hook that saves its stdin (the state) and its environment, and appends its stage to
    the shared order file."""
    script = (f"cat > {out_dir}/{stage}.json; echo \"$HOOKVAR $0 $1\" > {out_dir}/{stage}.env; "
              f"echo {stage} >> {out_dir}/order")
    return {"path": sh, "args": ["sh", "-c", script, stage], "env": ["HOOKVAR=v-" + stage],
            **extra}


def test_hooks_run_at_every_stage_with_the_state(mc, mc_cmd, rootfs, tmp_path):
    shared = tmp_path / "shared"  # where the hooks run on the host's side write
    shared.mkdir()
    # startContainer runs inside the container (path and files the container's): it writes
    # to the container's /dev/shm, and the process shows what it found there
    bundle = make_bundle(tmp_path, rootfs, ["sh", "-c", "cat /dev/shm/startContainer.json; "
                                            "echo; cat /dev/shm/startContainer.env /dev/shm/order;"
                                            " exec sleep 1000"],
                         annotations={"org.example": "hooked"})
    stages = ("prestart", "createRuntime", "createContainer", "poststart", "poststop")
    hooks = {s: [hook(str(shared), s, timeout=20)] for s in stages}
    hooks["startContainer"] = [hook("/dev/shm", "startContainer")]
    edit(bundle, lambda c: c.update(hooks=hooks))
    pid_file = tmp_path / "pid"
    out = tmp_path / "hk.out"
    with open(out, "w") as f:
        r = oci_create(mc_cmd, tmp_path, "--bundle", bundle, "--pid-file", str(pid_file), "hk",
                       stdout=f)
    assert r.returncode == 0, r.stderr
    host_pid = int(pid_file.read_text())
    order = shared / "order"
    assert order.read_text().split() == ["prestart", "createRuntime", "createContainer"]
    assert mc("start", "hk").returncode == 0
    # poststart has run when start returns
    assert order.read_text().split() == ["prestart", "createRuntime", "createContainer",
                                         "poststart"]
    assert wait_for(lambda: "startContainer\n" in out.read_text())
    assert mc("delete", "--force", "hk").returncode == 0
    assert order.read_text().split()[-1] == "poststop"
    seen = out.read_text().splitlines()
    (shared / "startContainer.json").write_text(seen[0])
    assert seen[1:] == ["v-startContainer startContainer ", "startContainer"]
    # the state on stdin: pid as seen where the hook runs (runtime.md)
    expect = {"prestart": ("creating", host_pid), "createRuntime": ("creating", host_pid),
              "createContainer": ("creating", 1), "startContainer": ("created", 1),
              "poststart": ("running", host_pid), "poststop": ("stopped", 0)}
    for stage, (status, pid) in expect.items():
        got = json.loads((shared / f"{stage}.json").read_text())
        assert (got["id"], got["status"], got["pid"], got["bundle"]) == \
            ("hk", status, pid, bundle), stage
        assert got["annotations"] == {"org.example": "hooked"} and got["ociVersion"]
        if stage != "startContainer":
            # args[0] is argv[0] ($0 is the one after -c's script); env exactly as given
            assert (shared / f"{stage}.env").read_text() == f"v-{stage} {stage} \n"


def test_failing_hooks(mc, mc_cmd, rootfs, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    fail = {"path": "/bin/sh", "args": ["sh", "-c", "echo boom >&2; exit 3"]}
    poststop = hook(str(shared), "poststop")
    bundle = make_bundle(tmp_path, rootfs, ["sleep", "1000"])

    # createRuntime fails: create fails naming it, nothing is left, poststop still runs
    edit(bundle, lambda c: c.update(hooks={"createRuntime": [fail], "poststop": [poststop]}))
    r = oci_create(mc_cmd, tmp_path, "--bundle", bundle, "hf")
    assert r.returncode == 125
    assert "hooks.createRuntime /bin/sh failed with exit status 3: boom" in r.stderr
    assert mc("state", "hf").returncode != 0
    assert (shared / "order").read_text() == "poststop\n"

    # a timeout kills the hook
    slow = {"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}
    edit(bundle, lambda c: c.update(hooks={"prestart": [slow]}))
    started = time.monotonic()
    r = oci_create(mc_cmd, tmp_path, "--bundle", bundle, "hf")
    assert r.returncode == 125 and "hooks.prestart /bin/sleep: killed after its timeout of 1 s" \
        in r.stderr and time.monotonic() - started < 10

    # startContainer fails: start fails with its message, the container stops
    edit(bundle, lambda c: c.update(hooks={"startContainer": [fail]}))
    assert oci_create(mc_cmd, tmp_path, "--bundle", bundle, "hf").returncode == 0
    r = mc("start", "hf")
    assert r.returncode == 125 and "hooks.startContainer /bin/sh failed" in r.stderr
    assert wait_for(lambda: state(mc, "hf")["status"] == "stopped")
    assert mc("delete", "hf").returncode == 0

    # poststart fails: a warning, and the container runs on (runtime.md)
    edit(bundle, lambda c: c.update(hooks={"poststart": [fail]}))
    assert oci_create(mc_cmd, tmp_path, "--bundle", bundle, "hf").returncode == 0
    r = mc("start", "hf")
    assert r.returncode == 0 and "warning: hooks.poststart /bin/sh failed" in r.stderr
    assert state(mc, "hf")["status"] == "running"
    assert mc("delete", "--force", "hf").returncode == 0


def test_docker_empty_hooks_pass(mc, mc_cmd, rootfs, tmp_path):
    bundle = make_bundle(tmp_path, rootfs, ["echo", "ok"], hooks={}, vm={"x": 1},
                         someFutureField=True)
    edit(bundle, lambda c: c["linux"].update(someFutureLinuxField={"a": 1}))
    assert run_to_end(mc, mc_cmd, tmp_path, bundle, "emptyhooks") == "ok\n"


# --- cgroupsPath ---------------------------------------------------------------------------

@pytest.fixture
def cgroup_tag():
    """A name for the test's own cgroups, and whatever a failure left under it removed."""
    from minicontainer.kernel.cgroupfs import mounts

    v2 = mounts()[0]
    if v2 is None:
        pytest.skip("no cgroup2 mounted")
    tag = f"mctest{os.getpid()}"
    yield v2, tag
    for directory, _, _ in sorted(os.walk(v2), key=lambda w: -len(w[0])):
        if tag in directory:
            for pid in open(f"{directory}/cgroup.procs").read().split():
                os.kill(int(pid), 9)
            deadline = time.monotonic() + 5
            while os.path.isdir(directory) and time.monotonic() < deadline:
                try:
                    os.rmdir(directory)
                except OSError:
                    time.sleep(0.05)


def test_cgroups_path_absolute_relative_and_systemd_form(mc, mc_cmd, rootfs, tmp_path,
                                                         cgroup_tag):
    v2, tag = cgroup_tag
    own = [line[3:].strip() for line in open("/proc/self/cgroup") if line.startswith("0::")][0]
    under_own_parent = v2 + os.path.dirname(own).rstrip("/")  # runc's place for relative ones
    cases = {f"/{tag}/ns/cgabs": f"{v2}/{tag}/ns/cgabs",  # containerd: /<namespace>/<id>
             f"{tag}-rel/../{tag}-rel/cgrel": f"{under_own_parent}/{tag}-rel/cgrel",
             # Docker's systemd form, which runc's cgroupfs driver takes as one relative name
             f"system.slice:{tag}:cgsd": f"{under_own_parent}/system.slice:{tag}:cgsd"}
    bundle = make_bundle(tmp_path, rootfs, ["sleep", "1000"])
    for cgroups_path, where in cases.items():
        cid = where.rsplit("/", 1)[1].rsplit(":", 1)[-1]
        edit(bundle, lambda c: c["linux"].update(cgroupsPath=cgroups_path))
        pid_file = tmp_path / "pid"
        r = oci_create(mc_cmd, tmp_path, "--bundle", bundle, "--pid-file", str(pid_file), cid)
        assert r.returncode == 0, r.stderr
        pid = int(pid_file.read_text())
        assert open(f"{where}/cgroup.procs").read().split() == [str(pid)], cgroups_path
        assert f"\n0::{where[len(v2):]}\n" in open(f"/proc/{pid}/cgroup").read()
        assert mc("delete", "--force", cid).returncode == 0
        assert not os.path.exists(where)  # removed, with every directory made for it
    assert not os.path.exists(f"{v2}/{tag}") and not os.path.exists(f"{under_own_parent}/{tag}-rel")

    # a cgroup where processes run already is not taken over, nor removed
    busy = f"{v2}/{tag}-busy"
    os.mkdir(busy)
    holder = subprocess.Popen(["sleep", "1000"])
    try:
        open(f"{busy}/cgroup.procs", "w").write(str(holder.pid))
        edit(bundle, lambda c: c["linux"].update(cgroupsPath=f"/{tag}-busy"))
        r = oci_create(mc_cmd, tmp_path, "--bundle", bundle, "busy")
        assert r.returncode == 125 and f"{busy} is not empty" in r.stderr
        assert mc("state", "busy").returncode != 0
        assert open(f"{busy}/cgroup.procs").read().split() == [str(holder.pid)]
    finally:
        holder.kill()
        holder.wait()


# --- devices, namespaces, domainname, consoleSize ---------------------------------------------

def test_fifo_and_char_devices(mc, mc_cmd, rootfs, tmp_path):
    bundle = make_bundle(tmp_path, rootfs, ["sh", "-c", "stat -c '%F %a %u %g %t:%T' "
                                            "/dev/myfifo /dev/sub/mynull; echo hi > /dev/sub/mynull"])
    edit(bundle, lambda c: c["linux"].update(devices=[
        {"path": "/dev/myfifo", "type": "p", "fileMode": 0o640, "uid": 1000, "gid": 1001},
        {"path": "/dev/sub/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666}]))
    out = run_to_end(mc, mc_cmd, tmp_path, bundle, "devs")
    assert out.splitlines() == ["fifo 640 1000 1001 0:0", "character special file 666 0 0 1:3"]


@pytest.fixture
def holder():
    """A process in new mount, pid, uts, ipc, net and cgroup namespaces (unshare), as an
    engine's pause container would be: its pid."""
    p = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
                          "--uts", "--ipc", "--net", "--cgroup", "sleep", "1000"])
    try:
        assert wait_for(lambda: open(f"/proc/{p.pid}/task/{p.pid}/children").read().strip())
        yield int(open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()[0])
    finally:
        p.kill()
        p.wait()
        subprocess.run(["pkill", "-KILL", "-P", str(p.pid)], check=False)


def test_every_namespace_joined_by_path(mc, mc_cmd, rootfs, tmp_path, holder):
    kinds = {"pid": "pid", "network": "net", "ipc": "ipc", "uts": "uts", "mount": "mnt",
             "cgroup": "cgroup"}
    show = "; ".join(f"readlink /proc/self/ns/{ns}" for ns in kinds.values())
    bundle = make_bundle(tmp_path, rootfs, ["sh", "-c", f"{show}; hostname; cat /proc/sys/kernel/domainname; "
                                            "cat /proc/1/comm"], hostname="joinedhost",
                         domainname="joined.example")
    edit(bundle, lambda c: c["linux"].update(namespaces=[
        {"type": t, "path": f"/proc/{holder}/ns/{ns}"} for t, ns in kinds.items()]))
    out = run_to_end(mc, mc_cmd, tmp_path, bundle, "joiner").splitlines()
    assert out[:6] == [os.readlink(f"/proc/{holder}/ns/{ns}") for ns in kinds.values()]
    assert out[6:] == ["joinedhost", "joined.example", "sleep"]  # PID 1 is the holder's
    # the hostname was set in the holder's uts namespace
    r = subprocess.run(["nsenter", f"--uts=/proc/{holder}/ns/uts", "hostname"],
                       capture_output=True, text=True)
    assert r.stdout == "joinedhost\n"


def test_new_uts_domainname(mc, mc_cmd, rootfs, tmp_path):
    bundle = make_bundle(tmp_path, rootfs, ["cat", "/proc/sys/kernel/domainname"],
                         domainname="ns.example")
    assert run_to_end(mc, mc_cmd, tmp_path, bundle, "dom") == "ns.example\n"
    assert open("/proc/sys/kernel/domainname").read() != "ns.example\n"


def test_console_size_applied_to_the_pty(mc, mc_cmd, rootfs, tmp_path):
    bundle = make_bundle(tmp_path, rootfs, ["stty", "size"], terminal=True)
    edit(bundle, lambda c: c["process"].update(consoleSize={"height": 33, "width": 101}))
    path = str(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    r = oci_create(mc_cmd, tmp_path, "--bundle", bundle, "--console-socket", path, "tsz")
    assert r.returncode == 0, r.stderr
    conn, _ = server.accept()
    _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
    assert mc("start", "tsz").returncode == 0
    out = b""
    deadline = time.monotonic() + 10
    while b"\n" not in out and time.monotonic() < deadline:
        try:
            out += os.read(fds[0], 1024)
        except OSError:
            break
    os.close(fds[0])
    conn.close()
    server.close()
    assert out.strip() == b"33 101"
    assert wait_for(lambda: state(mc, "tsz")["status"] == "stopped")
    assert mc("delete", "tsz").returncode == 0


def test_device_cgroup_enforces_the_allowlist(mc, mc_cmd, rootfs, tmp_path):
    """Docker's shape: deny all, CAP_MKNOD granted, one device allowed for reading only (the
    tun multiplexer, which opens without any capability). The eBPF program on the container's
    cgroup decides every open and mknod (runtime/devices.py)."""
    script = ("{ mknod /dev/disk0 b 8 0 && echo made; head -c 1 /dev/disk0; "
              "mknod /dev/tun0 c 10 200 && true < /dev/tun0 && echo read; "
              "true > /dev/tun0; echo x > /dev/mynull && echo null; } 2>&1")
    bundle = make_bundle(tmp_path, rootfs, ["sh", "-c", script])
    caps = ["CAP_MKNOD", "CAP_DAC_OVERRIDE"]

    def change(c):
        c["process"]["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
        c["linux"]["resources"]["devices"] = [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "r"}]
        c["linux"]["devices"] = [{"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3}]
    edit(bundle, change)
    out = run_to_end(mc, mc_cmd, tmp_path, bundle, "devcg")
    assert out.splitlines() == [
        "made", "head: /dev/disk0: Operation not permitted", "read",
        "sh: can't create /dev/tun0: Operation not permitted", "null"], out


def test_exec_process_fields_and_the_containers_capabilities(mc, mc_cmd, rootfs, tmp_path):
    """exec --process: additionalGids, oomScoreAdj, consoleSize on its pty; with no
    capabilities object the process gets the container's sets (runc)."""
    bundle = make_bundle(tmp_path, rootfs, ["sleep", "1000"])
    sets = {"bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE"], "permitted": ["CAP_KILL"],
            "effective": ["CAP_KILL"]}
    edit(bundle, lambda c: c["process"].update(capabilities=sets))
    assert oci_create(mc_cmd, tmp_path, "--bundle", bundle, "ex").returncode == 0
    assert mc("start", "ex").returncode == 0
    process = {"args": ["sh", "-c", "grep -E '^(CapBnd|Groups)' /proc/self/status; "
                        "cat /proc/self/oom_score_adj"], "cwd": "/",
               "user": {"uid": 0, "gid": 0, "additionalGids": [7, 8]}, "oomScoreAdj": 300}
    (tmp_path / "p.json").write_text(json.dumps(process))
    r = mc("exec", "--process", str(tmp_path / "p.json"), "ex")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["Groups:\t7 8 ", f"CapBnd:\t{mask('kill', 'net_bind_service')}",
                                     "300"]
    # a pty of the size asked, through --console-socket
    process.update(args=["stty", "size"], terminal=True, consoleSize={"height": 21, "width": 77})
    (tmp_path / "p.json").write_text(json.dumps(process))
    path = str(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    p = subprocess.Popen([*mc_cmd, "exec", "--process", str(tmp_path / "p.json"),
                          "--console-socket", path, "ex"], stdin=subprocess.DEVNULL)
    conn, _ = server.accept()
    _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
    out = b""
    deadline = time.monotonic() + 10
    while b"\n" not in out and time.monotonic() < deadline:
        try:
            out += os.read(fds[0], 1024)
        except OSError:
            break
    assert p.wait(timeout=10) == 0
    os.close(fds[0])
    conn.close()
    server.close()
    assert out.strip() == b"21 77"
    assert mc("delete", "--force", "ex").returncode == 0
