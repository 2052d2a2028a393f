"""The container's process: environment, user, working directory, volumes, exit status,
signals, --init, and what happens when the runtime itself dies."""
from __future__ import annotations

import os
import signal
import subprocess
import time

from conftest import container_processes


def test_environment_defaults_and_flags(mc, rootfs, monkeypatch):
    monkeypatch.setenv("FROM_HOST", "yes")
    r = mc("run", "-e", "A=1", "--env=B=two words", "-e", "FROM_HOST", "-e", "NOT_SET_ANYWHERE",
           "--hostname", "h", rootfs, "env")
    env = dict(line.split("=", 1) for line in r.stdout.splitlines())
    assert env["A"] == "1" and env["B"] == "two words" and env["FROM_HOST"] == "yes"
    assert "NOT_SET_ANYWHERE" not in env
    assert env["PATH"].startswith("/usr/local/sbin") and env["HOSTNAME"] == "h"
    assert env["HOME"] == "/root"


def test_workdir_created_if_missing(mc, rootfs):
    assert mc("run", "-w", "/srv/app", rootfs, "pwd").stdout.strip() == "/srv/app"


def test_user_by_name_uid_and_group(mc, rootfs):
    assert mc("run", "-u", "user", rootfs, "id").stdout.strip() == \
        "uid=1000(user) gid=1000(user) groups=100(users),1000(user)"
    assert mc("run", "-u", "4242:100", rootfs, "id", "-u").stdout.strip() == "4242"
    assert mc("run", "-u", "nobody:users", rootfs, "id", "-g").stdout.strip() == "100"
    home = mc("run", "-u", "user", rootfs, "/bin/sh", "-c", "echo $HOME").stdout.strip()
    assert home == "/home/user"


def test_non_root_user_has_no_capabilities(mc, rootfs):
    r = mc("run", "-u", "user", rootfs, "grep", "CapEff", "/proc/self/status")
    assert r.stdout.split()[1] == "0000000000000000"


def test_volumes_and_tmpfs(mc, rootfs, tmp_path):
    (tmp_path / "hello.txt").write_text("from the host\n")
    r = mc("run", "-v", f"{tmp_path}:/data", "-v", f"{tmp_path}:/ro:ro", "--tmpfs", "/scratch:size=1m",
           rootfs, "/bin/sh", "-c",
           "cat /data/hello.txt; echo back > /data/out.txt; touch /ro/x 2>&1; "
           "grep ' /scratch ' /proc/self/mountinfo")
    assert "from the host" in r.stdout
    assert "Read-only file system" in r.stdout
    assert "tmpfs" in r.stdout and "size=1024k" in r.stdout
    assert (tmp_path / "out.txt").read_text() == "back\n"


def test_exit_status_is_propagated(mc, rootfs):
    assert mc("run", rootfs, "/bin/sh", "-c", "exit 3").returncode == 3
    assert mc("run", rootfs, "/bin/true").returncode == 0
    assert mc("run", rootfs, "/bin/false").returncode == 1


def test_killed_by_signal_is_128_plus_n(mc, rootfs):
    # PID 1 ignores signals it has no handler for, even SIGKILL from inside: kill a child.
    r = mc("run", rootfs, "/bin/sh", "-c", "sleep 30 & kill -9 $!; wait $!")
    assert r.returncode == 137
    assert mc("run", "--init", rootfs, "/bin/sh", "-c", "kill -TERM $$").returncode == 143


def _wait_for_container(state_root, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs = container_processes(state_root)
        if procs:
            return procs
        time.sleep(0.02)
    raise AssertionError("the container did not start")


def _start(mc_cmd, *args):
    return subprocess.Popen([*mc_cmd, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)


def test_signals_are_forwarded(mc_cmd, rootfs, state_root):
    for sig, code in ((signal.SIGTERM, 42), (signal.SIGINT, 43), (signal.SIGHUP, 44),
                      (signal.SIGQUIT, 45)):
        p = _start(mc_cmd, "run", rootfs, "/bin/sh", "-c",
                   f"trap 'exit {code}' {sig.name[3:]}; echo ready; while :; do sleep 0.05; done")
        assert p.stdout.readline().strip() == "ready"
        p.send_signal(sig)
        assert p.wait(timeout=10) == code, sig.name
        p.stdout.close(), p.stderr.close()


def test_init_forwards_signals_to_a_command_without_handlers(mc_cmd, rootfs, state_root):
    """Without --init, `sleep` as PID 1 ignores SIGTERM (the kernel's rule for a namespace's
    init); with --init the signal reaches it and kills it: 128+15."""
    p = _start(mc_cmd, "run", "--init", rootfs, "/bin/sleep", "60")
    _wait_for_container(state_root)
    time.sleep(0.2)
    p.terminate()
    assert p.wait(timeout=10) == 143
    p.stdout.close(), p.stderr.close()


def test_init_reaps_zombies(mc, rootfs):
    # The subshell exits at once, orphaning a sleep that the init adopts and must reap.
    script = "(sleep 0.2 &); sleep 1; ps -o stat,comm | grep -c '^Z' || true"
    r = mc("run", "--init", rootfs, "/bin/sh", "-c", script)
    assert r.stdout.strip() == "0", r.stdout
    ps = mc("run", "--init", rootfs, "/bin/sh", "-c", "ps -o pid,args").stdout.splitlines()
    assert ps[1].split() == ["1", "init"], ps  # PID 1 is the init, the command its child
    assert mc("run", "--init", rootfs, "/bin/sh", "-c", "echo $$").stdout.strip() != "1"


def test_container_dies_with_the_runtime(mc_cmd, rootfs, state_root, mc):
    p = _start(mc_cmd, "run", rootfs, "/bin/sleep", "60")
    procs = _wait_for_container(state_root)
    p.kill()  # SIGKILL: the runtime gets no chance to clean up
    p.wait()
    p.stdout.close(), p.stderr.close()
    deadline = time.monotonic() + 5
    while container_processes(state_root) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not container_processes(state_root), f"container outlived its runtime: {procs}"
    # The state it left is reclaimed by gc (and by the next run).
    assert os.listdir(os.path.join(state_root, "containers"))
    r = mc("gc")
    assert r.returncode == 0 and r.stdout.startswith("removed ")
    assert not os.listdir(os.path.join(state_root, "containers"))


def test_names_are_unique_among_running_containers(mc_cmd, mc, rootfs, state_root):
    p = _start(mc_cmd, "run", "--init", "--name", "web", rootfs, "/bin/sleep", "60")
    try:
        _wait_for_container(state_root)
        r = mc("run", "--name", "web", rootfs, "/bin/true")
        assert r.returncode == 125
        assert r.stderr.strip() == 'minicontainer: the container name "web" is already in use'
    finally:
        p.terminate()
        p.wait(timeout=10)
        p.stdout.close(), p.stderr.close()
    assert mc("run", "--name", "web", rootfs, "/bin/true").returncode == 0  # free again


def test_signal_dispositions_are_defaults(mc, rootfs):
    """Nothing of Python's own signal set-up (SIGPIPE and SIGXFSZ ignored) or of the
    runtime's blocking during set-up leaks into the container, nor into `exec`."""
    clean = ["SigBlk:", "0000000000000000", "SigIgn:", "0000000000000000"]
    for flags in ([], ["--init"]):
        r = mc("run", *flags, rootfs, "grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status")
        assert r.stdout.split() == clean, flags
    assert mc("run", "-d", "--name", "sigs", rootfs, "sleep", "30").returncode == 0
    try:
        r = mc("exec", "sigs", "grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status")
        assert r.stdout.split() == clean
    finally:
        assert mc("rm", "-f", "sigs").returncode == 0


def test_sigterm_during_set_up_is_not_lost(mc_cmd, rootfs):
    """With --init, a SIGTERM that lands while the container is still being set up waits,
    blocked, and reaches the command once it runs."""
    for delay in (0.0, 0.02, 0.05, 0.1):
        p = _start(mc_cmd, "run", "--init", rootfs, "/bin/sleep", "30")
        time.sleep(delay)
        p.terminate()
        assert p.wait(timeout=10) in (143, -15), delay  # -15: before the runtime's handlers
        p.stdout.close(), p.stderr.close()
