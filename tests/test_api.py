"""The Python API (minicontainer.run, minicontainer.Container) against real containers, and
the host ports it picks (`-p 80`, `minicontainer port`).

Every test uses the session's state root, so conftest's nothing_left_behind checks that each
one leaves no container, mount, process or cgroup. Traffic goes only to 127.0.0.1 (published
ports) and to the bridge network of that state root.
"""
from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request

import pytest

import minicontainer
from minicontainer.runtime import api
from minicontainer.runtime.network.ipam import Network

HTTPD = ["httpd", "-f", "-v", "-p", "80", "-h", "/etc"]  # serves the rootfs's /etc


def fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


# One-shot runs.

def test_run_captures_output_status_and_input(rootfs, state_root):
    r = minicontainer.run(rootfs, ["sh", "-c", "echo out; echo err >&2; cat; exit 3"],
                          input="from stdin\n", text=True, root=state_root)
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\nfrom stdin\n", "err\n")
    assert r.args == ["sh", "-c", "echo out; echo err >&2; cat; exit 3"]


def test_run_applies_the_options(rootfs, state_root, tmp_path):
    (tmp_path / "data").write_text("from the host\n")
    tmp_path.chmod(0o755)  # user 1000 reads it through the bind mount
    r = minicontainer.run(
        rootfs, ["sh", "-c", 'echo "$GREETING"; id -u; pwd; hostname; cat /v/data; '
                             'touch /v/x 2>/dev/null || echo read-only; mount | grep " /t "'],
        env={"GREETING": "hello"}, user="1000", workdir="/srv", hostname="box",
        volumes={str(tmp_path): ("/v", "ro")}, tmpfs={"/t": "size=1m"}, text=True,
        root=state_root)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:6] == ["hello", "1000", "/srv", "box", "from the host", "read-only"]
    assert lines[6].startswith("tmpfs on /t type tmpfs") and "size=1024k" in lines[6]


def test_run_output_larger_than_a_pipe_and_bytes_by_default(rootfs, state_root):
    r = minicontainer.run(rootfs, ["head", "-c", "1000000", "/dev/zero"], root=state_root)
    assert r.stdout == b"\0" * 1000000 and r.stderr == b""


def test_run_leaks_no_signal_handler_mask_fd_or_namespace(rootfs, state_root):
    handlers = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)]
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    open_fds = fds()
    pid_ns = os.readlink("/proc/self/ns/pid_for_children")
    minicontainer.run(rootfs, ["true"], root=state_root)
    with pytest.raises(minicontainer.CommandNotFound):
        minicontainer.run(rootfs, ["nosuch"], root=state_root)
    with minicontainer.Container(rootfs, ["sleep", "30"], root=state_root) as c:
        c.exec(["true"])
    assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)] \
        == handlers
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == mask
    assert fds() == open_fds
    assert os.readlink("/proc/self/ns/pid_for_children") == pid_ns  # exec gave it back


def test_check_raises_with_status_and_output(rootfs, state_root):
    with pytest.raises(minicontainer.ExitStatusError) as e:
        minicontainer.run(rootfs, ["sh", "-c", "echo o; echo e >&2; exit 4"], check=True,
                          text=True, root=state_root)
    assert (e.value.returncode, e.value.stdout, e.value.stderr) == (4, "o\n", "e\n")
    assert str(e.value) == "command ['sh', '-c', 'echo o; echo e >&2; exit 4'] exited with status 4"


def test_missing_command_has_its_own_exception(rootfs, state_root):
    with pytest.raises(minicontainer.CommandNotFound) as e:
        minicontainer.run(rootfs, ["nosuch-command"], root=state_root)
    assert str(e.value) == 'exec: "nosuch-command": executable file not found in $PATH'
    assert e.value.exit_code == 127
    with pytest.raises(minicontainer.CannotExecute) as e:
        minicontainer.run(rootfs, ["/etc/passwd"], root=state_root)
    assert e.value.exit_code == 126


@pytest.mark.parametrize("options, message", [
    ({"volumes": ["relative:/x"]},
     "invalid volume specification: 'relative:/x': the host path must be absolute"),
    ({"network": "overlay"},
     "unknown network mode 'overlay' (have: none, host, bridge, container:NAME)"),
    ({"ports": ["80:http"]}, "invalid --publish '80:http': want "
                             "[[HOSTIP:][HOSTPORT]:]CONTAINERPORT[/tcp|udp] "
                             "('http' is not a port number)"),
    ({"colour": "blue"}, "unknown option colour= (see help(minicontainer.run))"),
    ({"name": "no spaces"}, "invalid container name 'no spaces': only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                            "are allowed, at most 255 characters"),
])
def test_bad_option_fails_before_anything_starts(rootfs, state_root, options, message):
    with pytest.raises(minicontainer.UsageError) as e:
        minicontainer.run(rootfs, ["true"], root=state_root, **options)
    assert str(e.value) == message
    with pytest.raises(minicontainer.UsageError) as e:
        minicontainer.Container(rootfs, ["true"], root=state_root, **options)  # not start()
    assert str(e.value) == message
    assert not os.listdir(os.path.join(state_root, "containers")) \
        if os.path.isdir(os.path.join(state_root, "containers")) else True


def test_timeout_kills_and_keeps_the_output(rootfs, state_root):
    with pytest.raises(minicontainer.Timeout) as e:
        minicontainer.run(rootfs, ["sh", "-c", "echo started; sleep 30"], timeout=0.5,
                          root=state_root)
    assert str(e.value) == \
        "container ['sh', '-c', 'echo started; sleep 30'] did not exit within 0.5 s"
    assert e.value.stdout == b"started\n"


def test_a_command_that_closes_its_output_still_times_out(rootfs, state_root):
    with pytest.raises(minicontainer.Timeout):
        minicontainer.run(rootfs, ["sh", "-c", "exec >&- 2>&-; sleep 30"], timeout=0.5,
                          root=state_root)


# Services.

def test_service_port_wait_exec_logs(rootfs, state_root):
    with minicontainer.Container(rootfs, ["sh", "-c", "echo booting; exec " + " ".join(HTTPD)],
                                 ports={80: None}, name="web", root=state_root) as web:
        web.wait_for_port(80, timeout=10)
        port = web.host_port(80)
        assert 1024 <= port <= 65535
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=5).read()
        assert body == open(os.path.join(rootfs, "etc", "hostname"), "rb").read()
        assert ipaddress.IPv4Address(web.ip) in Network(state_root).subnet
        r = web.exec(["sh", "-c", "echo $HOSTNAME; cat /proc/1/cmdline | tr '\\0' ' '"],
                     text=True, check=True)
        assert r.stdout.splitlines() == [web.id[:12], " ".join(HTTPD) + " "]
        assert web.wait_for_log(r"response:200").group(0) == "response:200"
        assert web.logs().startswith(b"booting\n")
        out = subprocess.run([sys.executable, "-m", "minicontainer", "--root", state_root,
                              "port", "web", "80"], capture_output=True, text=True)
        assert out.stdout == f"0.0.0.0:{port}\n"
        assert web.status() == "running"
    assert not os.path.exists(os.path.join(state_root, "containers", web.id))


def test_two_services_at_once(rootfs, state_root):
    with minicontainer.Container(rootfs, HTTPD, ports={80: None}, root=state_root) as a, \
            minicontainer.Container(rootfs, HTTPD, ports={80: ("127.0.0.1", None)},
                                    root=state_root) as b:
        a.wait_for_port(80)
        b.wait_for_port(80)
        assert a.host_port(80) != b.host_port(80) and a.ip != b.ip
        for c in (a, b):
            assert urllib.request.urlopen(f"http://127.0.0.1:{c.host_port(80)}/hostname",
                                          timeout=5).status == 200
        # b reaches a over the bridge network, by address
        r = b.exec(["wget", "-q", "-O", "-", f"http://{a.ip}/hostname"], timeout=10)
        assert r.returncode == 0, r.stderr


def test_wait_that_times_out_names_what_it_waited_for(rootfs, state_root):
    with minicontainer.Container(rootfs, ["sleep", "30"], network="bridge", ports={81: None},
                                 name="idle", root=state_root) as c:
        with pytest.raises(minicontainer.Timeout) as e:
            c.wait_for_log("ready", timeout=0.3)
        assert str(e.value) == ("timed out after 0.3 s waiting for output matching 'ready' "
                                "from container idle")
        with pytest.raises(minicontainer.Timeout) as e:
            c.wait_for_port(81, timeout=0.3)
        assert str(e.value) == ("timed out after 0.3 s waiting for port 81/tcp of container "
                                f"idle (127.0.0.1:{c.host_port(81)})")
        with pytest.raises(minicontainer.ContainerError) as e:
            c.host_port(82)
        assert str(e.value) == "container idle publishes no port 82/tcp"


def test_wait_on_a_container_that_exits(rootfs, state_root):
    c = minicontainer.Container(rootfs, ["sh", "-c", "echo bye; exit 3"], root=state_root)
    with c:
        with pytest.raises(minicontainer.ContainerError) as e:
            c.wait_for_log("never", timeout=10)
        assert str(e.value) == ("waiting for output matching 'never' from container "
                                f"{c.name}: the container exited (status 3); its output: 'bye\\n'")
        assert c.wait() == 3
    c.remove()  # twice is fine


def test_stats_where_cgroups_allow(rootfs, state_root):
    with minicontainer.Container(rootfs, ["sleep", "30"], root=state_root) as c:
        container_cgroup = [v for k, v in api.lookup(c.id, state_root).owned()
                            if k == "cgroup"]
        if container_cgroup and os.path.exists(container_cgroup[0] + "/memory.current"):
            stats = c.stats()
            assert stats["pids"] >= 1 and stats["memory"] > 0
            return
        with pytest.raises(minicontainer.ContainerError) as e:
            c.stats()
        assert "needs cgroup v2's" in str(e.value) and "controller(s)" in str(e.value)


# Host ports picked at start, from the CLI.

def test_cli_publish_without_host_port_and_port_verb(mc, rootfs):
    r = mc("run", "-d", "--name", "ports", "-p", "80", "-p", "127.0.0.1::81",
           "-p", "53/udp", rootfs, "sleep", "30")
    assert r.returncode == 0, r.stderr
    try:
        listing = mc("port", "ports").stdout.splitlines()
        assert [line.split(" -> ")[0] for line in listing] == ["80/tcp", "81/tcp", "53/udp"]
        hosts = [line.split(" -> ")[1] for line in listing]
        assert hosts[0].startswith("0.0.0.0:") and hosts[1].startswith("127.0.0.1:")
        ports = [int(h.rsplit(":", 1)[1]) for h in hosts]
        assert len(set(ports)) == 3
        # held by the container's shim: nobody else can take them meanwhile
        s = socket.socket()
        with pytest.raises(OSError):
            s.bind(("127.0.0.1", ports[1]))
        s.close()
        assert mc("port", "ports", "81").stdout == f"127.0.0.1:{ports[1]}\n"
        missing = mc("port", "ports", "82")
        assert (missing.returncode, missing.stderr) == (
            125, "minicontainer: no public port 82/tcp published for ports\n")
    finally:
        mc("rm", "-f", "ports")


def test_ctrl_c_during_a_run_kills_and_removes_the_container(rootfs, state_root):
    handler = signal.getsignal(signal.SIGINT)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        minicontainer.run(rootfs, ["sleep", "30"], root=state_root)
    timer.join()
    assert signal.getsignal(signal.SIGINT) is handler
    assert os.listdir(os.path.join(state_root, "containers")) == []


def test_a_start_that_fails_in_the_network_leaks_nothing(rootfs, state_root):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    open_fds = None
    try:
        for _ in range(3):  # the first opens this process's netlink and nft sockets, kept
            with pytest.raises(minicontainer.ContainerError) as e:
                minicontainer.run(rootfs, ["true"], ports={80: ("127.0.0.1", port)},
                                  root=state_root)
            assert str(e.value) == (f"cannot publish 127.0.0.1:{port}/tcp: the port is "
                                    "already in use on the host")
            assert open_fds is None or fds() == open_fds
            open_fds = fds()
    finally:
        taken.close()



def test_a_fork_that_fails_leaks_no_pipe_or_signal_mask(rootfs, state_root, monkeypatch):
    """clone3 refused (EAGAIN: a pids limit, say) after the protocol's pipes were made: the
    caller gets the error and keeps no fd and no blocked signal, for a run and an exec."""
    from minicontainer.kernel import syscalls
    from minicontainer.runtime import launch, native

    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    with minicontainer.Container(rootfs, ["sleep", "30"], root=state_root) as c:
        c.exec(["true"])  # what the first exec imports and keeps is not a leak
        open_fds = fds()

        def refused(*args):
            raise OSError(11, "Resource temporarily unavailable")

        monkeypatch.setattr(launch, "_fork", refused)  # the Python child's fork
        monkeypatch.setattr(native, "_clone", lambda *args: -11)  # native.c's clone3
        with pytest.raises(OSError):
            minicontainer.run(rootfs, ["true"], root=state_root)
        with pytest.raises(OSError):
            minicontainer.run(rootfs, ["true"], root=state_root, tmpfs=["/x"])  # Python's
        monkeypatch.setattr(syscalls, "fork", refused)
        with pytest.raises(OSError):
            c.exec(["true"])
        assert fds() == open_fds
        assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == mask
