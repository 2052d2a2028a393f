"""Descriptors, exec and input (docs/security.md): real attacks from inside real containers,
each asserting the exact failure. The classics that must keep holding are here too (mount,
mknod, modules and /proc/sys are in test_privileges.py).

Two probes are compiled at test time (gcc -static, bind-mounted in with -v): a watcher that
races every new process of the container through /proc, and the classic chroot breakout.
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from conftest import PYTHON, REPO
from test_lifecycle import make_bundle, wait_for

PROBES = os.path.join(REPO, "tests", "probes")


@pytest.fixture(scope="session")
def probes(tmp_path_factory) -> str:
    """A directory with the static probes, to bind-mount at /probes."""
    if not shutil.which("gcc"):
        pytest.fail("gcc is needed to build the probes (apt-get install -y gcc libc6-dev)")
    out = tmp_path_factory.mktemp("probes")
    for name in ("procwatch", "chroot_escape"):
        subprocess.run(["gcc", "-O2", "-static", "-o", str(out / name),
                        os.path.join(PROBES, name + ".c")], check=True)
    return str(out)


@pytest.fixture
def host_dir(tmp_path):
    """A directory only the host has, with a file in it."""
    d = tmp_path / "host-only"
    d.mkdir()
    (d / "secret").write_text("host secret\n")
    return d


def _with_fds(fds: dict[int, int], **kwargs) -> dict:
    """subprocess.run arguments that give the child fd N as a copy of our fd fds[N],
    inheritable: what a careless caller leaves open (ours stay as they are)."""
    def dup():
        for number, source in fds.items():
            os.dup2(source, number)

    return dict(preexec_fn=dup, close_fds=False, **kwargs)  # Python's own fds are CLOEXEC


# --- descriptors --------------------------------------------------------------------------

# Inside: the host's / at fd 8, or at fd 1000 (not one the runtime could know about). The
# fds of an `ls` the container starts: 0, 1, 2 and the directory it lists (3).
LEAK = "ls /proc/self/fd/8/ /proc/self/fd/1000/; echo fds: $(ls /proc/self/fd)"
LEAK_ERRORS = ["ls: /proc/self/fd/8/: No such file or directory",
               "ls: /proc/self/fd/1000/: No such file or directory"]


def _leaky(mc_cmd, *args):
    root = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return subprocess.run([*mc_cmd, *args], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL, **_with_fds({8: root, 1000: root}))
    finally:
        os.close(root)


def test_inherited_fds_do_not_reach_run(mc_cmd, rootfs):
    for flags in ([], ["--init"], ["-t"]):
        r = _leaky(mc_cmd, "run", *flags, rootfs, "sh", "-c", "{ " + LEAK + "; } 2>&1")
        out = r.stdout.replace("\r", "")
        assert all(e in out for e in LEAK_ERRORS), (flags, out)
        assert "fds: 0 1 2 3\n" in out, (flags, out)


def test_inherited_fds_do_not_reach_run_detached_or_exec(mc, mc_cmd, rootfs):
    r = _leaky(mc_cmd, "run", "-d", "--name", "leak", rootfs, "sh", "-c",
               LEAK + "; sleep 1000")
    assert r.returncode == 0, r.stderr
    try:
        assert wait_for(lambda: "fds:" in mc("logs", "leak").stdout)
        logs = mc("logs", "leak").stdout  # the container's stdout and stderr, one log
        assert all(e in logs for e in LEAK_ERRORS), logs
        assert "fds: 0 1 2 3\n" in logs
        r = _leaky(mc_cmd, "exec", "leak", "sh", "-c", LEAK)
        assert all(e in r.stderr for e in LEAK_ERRORS), r.stderr
        assert "fds: 0 1 2 3\n" in r.stdout
    finally:
        mc("rm", "-f", "leak")


def test_oci_preserve_fds_and_listen_fds(mc, mc_cmd, rootfs, tmp_path):
    """create --preserve-fds 1 keeps fd 3 (a pipe here) through to `start`, and nothing
    past it; LISTEN_FDS fds come first, with LISTEN_FDS=N and LISTEN_PID=1, as runc."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    read_end, write_end = os.pipe()
    script = ("echo LISTEN_FDS=$LISTEN_FDS LISTEN_PID=$LISTEN_PID; stat -L -c 'fd3 %i' "
              "/proc/self/fd/3; echo through-fd4 >&4; ls /proc/self/fd/5/; "
              "echo fds: $(ls /proc/self/fd)")
    bundle = make_bundle(tmp_path, rootfs, ["sh", "-c", script])
    out = tmp_path / "out"
    root = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with open(out, "w") as o:
            # LISTEN_PID must be the runtime's own pid: the shell's exec keeps it. fd 5, the
            # host's /, is not asked for: it must not reach the container.
            r = subprocess.run(
                ["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"', "-", *mc_cmd, "create",
                 "--bundle", bundle, "--preserve-fds", "1", "fdc"],
                stdin=subprocess.DEVNULL, stdout=o, stderr=o, timeout=30,
                **_with_fds({3: listener.fileno(), 4: write_end, 5: root}))
    finally:
        os.close(root)
        os.close(write_end)
    try:
        assert r.returncode == 0, out.read_text()
        assert mc("start", "fdc").returncode == 0
        assert os.read(read_end, 100) == b"through-fd4\n"  # the pipe, held since create
        assert wait_for(lambda: "fds:" in out.read_text())
        text = out.read_text()
        assert "LISTEN_FDS=1 LISTEN_PID=1\n" in text, text
        assert f"fd3 {os.fstat(listener.fileno()).st_ino}\n" in text, text
        assert "ls: /proc/self/fd/5/: No such file or directory" in text, text
        assert "fds: 0 1 2 3 4 5\n" in text, text
    finally:
        os.close(read_end)
        listener.close()
        mc("delete", "--force", "fdc")


def test_preserve_fds_must_be_open(mc, mc_cmd, rootfs, tmp_path):
    bundle = make_bundle(tmp_path, rootfs, ["true"])
    r = mc("create", "--bundle", bundle, "--preserve-fds", "2", "nofd")
    assert r.returncode == 125, r.stderr
    assert r.stderr == "minicontainer: --preserve-fds 2: fd 3 is not open\n"


def test_exec_preserve_fds(mc, mc_cmd, rootfs):
    assert mc("run", "-d", "--name", "pfd", rootfs, "sleep", "1000").returncode == 0
    try:
        read_end, write_end = os.pipe()
        try:
            r = subprocess.run([*mc_cmd, "exec", "--preserve-fds", "1", "pfd", "sh", "-c",
                                "echo kept >&3; echo fds: $(ls /proc/self/fd)"],
                               capture_output=True, text=True, timeout=30,
                               stdin=subprocess.DEVNULL, **_with_fds({3: write_end}))
        finally:
            os.close(write_end)
        assert r.returncode == 0, r.stderr
        assert r.stdout == "fds: 0 1 2 3 4\n"
        assert os.read(read_end, 100) == b"kept\n"
        os.close(read_end)
    finally:
        mc("rm", "-f", "pfd")


# --- exec hardening -----------------------------------------------------------------------

EXECS = 200


@pytest.mark.parametrize("caps", [[], ["--cap-add", "SYS_PTRACE"]], ids=["default", "ptrace"])
def test_exec_never_shows_the_host(mc, mc_cmd, rootfs, probes, host_dir, caps):
    """A watcher inside races EXECS `exec`s, each started from a host directory with a host
    directory fd left open, and tries /proc/PID/root, cwd, exe and fd/* of every new pid."""
    interpreter = os.path.realpath(sys.executable)
    host = [f"{st.st_dev}:{st.st_ino}" for st in
            (os.stat(p) for p in ("/", host_dir, host_dir / "secret", interpreter))]
    r = mc("run", "-d", "--name", "watched", *caps, "-v", f"{probes}:/probes:ro", rootfs,
           "/probes/procwatch", "/tmp/stop", str(host_dir).lstrip("/"), "secret", *host)
    assert r.returncode == 0, r.stderr
    try:
        assert wait_for(lambda: "watching" in mc("logs", "watched").stdout)
        fd = os.open(host_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

        def one(_):
            return subprocess.run([*mc_cmd, "exec", "watched", "true"], cwd=host_dir,
                                  capture_output=True, timeout=120,
                                  **_with_fds({7: fd})).returncode

        try:
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                assert set(pool.map(one, range(EXECS))) == {0}
        finally:
            os.close(fd)
        # (the watcher, PID 1, may see the file and exit before `touch` does: the pid
        # namespace's end then kills `touch`, and that is no failure)
        assert mc("exec", "watched", "touch", "/tmp/stop").returncode in (0, 137)
        assert wait_for(lambda: "pids " in mc("logs", "watched").stdout, 30)
        out = mc("logs", "watched").stdout
    finally:
        mc("rm", "-f", "watched")
    summary = dict(zip(*[iter(out.splitlines()[-1].split())] * 2))
    print(f"\n{caps or 'default'}: {summary}")
    assert "HIT" not in out, out  # no root, cwd or fd of the host, ever
    # it saw most of them, and caught some before their execve: the race was really run
    assert int(summary["pids"]) >= EXECS // 2 and int(summary["caught"]) > 0, out
    if not caps:
        # non-dumpable until execve: not even the interpreter's image can be opened
        assert summary["exe_host"] == "0", out
    else:
        # CAP_SYS_PTRACE overrides non-dumpable: before its execve the process's exe is the
        # runtime's interpreter (docs/security.md says so); never its root, cwd or fds
        assert summary["exe_link"] in ("-", interpreter), out


def test_exec_into_a_chroot_container_stays_in_its_root(mc, rootfs, host_dir):
    """After setns(mnt) the root is the mount namespace's, which under --chroot is still the
    host's tree: exec takes the root of the container's first process instead."""
    r = mc("run", "-d", "--chroot", "--name", "chrooted", rootfs, "sleep", "1000")
    assert r.returncode == 0, r.stderr
    try:
        r = mc("exec", "chrooted", "ls", str(host_dir / "secret"))
        assert r.returncode == 1
        assert r.stderr == f"ls: {host_dir / 'secret'}: No such file or directory\n"
    finally:
        mc("rm", "-f", "chrooted")


# --- input hygiene ------------------------------------------------------------------------

def _run_bytes(mc_cmd, *args: bytes):
    return subprocess.run([os.fsencode(a) for a in (*mc_cmd, *args)], capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=60)


def test_non_utf8_arguments_and_env_pass_through(mc_cmd, mc, rootfs):
    r = _run_bytes(mc_cmd, b"run", b"-e", b"X=\xff\xfe-env", rootfs.encode(), b"sh", b"-c",
                   b'printf "%s|%s" "$X" "$1"', b"-", b"\xe9t\xe9-arg")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"\xff\xfe-env|\xe9t\xe9-arg"
    # kept in the record as given, so `exec` hands the same bytes on
    r = _run_bytes(mc_cmd, b"run", b"-d", b"--name", b"bytes", b"-e", b"X=\xff", rootfs.encode(),
                   b"sleep", b"1000")
    assert r.returncode == 0, r.stderr
    try:
        r = _run_bytes(mc_cmd, b"exec", b"bytes", b"sh", b"-c", b'printf %s "$X"; printf %s "$1"',
                       b"-", b"\xfe")
        assert (r.returncode, r.stdout) == (0, b"\xff\xfe"), r.stderr
        assert json.loads(mc("inspect", "bytes").stdout)[0]["exec"]["env"]["X"] == "\udcff"
        assert "sleep 1000" in mc("ps").stdout
    finally:
        mc("rm", "-f", "bytes")
    r = _run_bytes(mc_cmd, b"run", rootfs.encode(), b"/bin/\xff")
    assert r.returncode == 127 and r.stderr.count(b"\n") == 1, r.stderr


@pytest.mark.parametrize("args, words", [
    (["--name", "caf\u00e9"], "invalid container name"),
    (["--name", "\u0661\u0662"], "invalid container name"),   # arabic-indic digits: isalnum()
    (["--name", "a" * 256], "invalid container name"),
    (["--name", "-a"], "invalid container name"),
    (["--name", "a\nb"], "invalid container name"),
    (["--hostname", "a b"], "invalid hostname"),
    (["--hostname", "a\nb"], "invalid hostname"),
    (["--hostname", "h" * 65], "invalid hostname"),
    (["--hostname", "-lead"], "invalid hostname"),
    (["--hostname", "a..b"], "invalid hostname"),
    (["--hostname", "caf\u00e9"], "invalid hostname"),
    (["--hostname", "under_score"], "invalid hostname"),
    (["-e", "A\nB=1"], "invalid environment variable"),
    (["-e", "=1"], "invalid environment variable"),
])
def test_bad_names_hostnames_and_env_are_one_line_and_125(mc, rootfs, args, words):
    for detach in ([], ["-d"]):
        r = mc("run", *detach, *args, rootfs, "/bin/true")
        assert r.returncode == 125, r.stderr
        assert r.stderr.count("\n") == 1 and words in r.stderr, r.stderr


def test_longest_name_and_hostname_work(mc, rootfs):
    r = mc("run", "--name", "n" * 255, "--hostname", "a-1." + "h" * 60, rootfs, "hostname")
    assert (r.returncode, r.stdout) == (0, "a-1." + "h" * 60 + "\n"), r.stderr


def test_oci_ids(mc, mc_cmd, rootfs, tmp_path):
    bundle = make_bundle(tmp_path, rootfs, ["true"])
    for bad in ("caf\u00e9", "a" * 256, "..", "a/b"):
        r = mc("create", "--bundle", bundle, bad)
        assert r.returncode == 125 and r.stderr.count("\n") == 1, r.stderr
        assert "invalid container id" in r.stderr


# --- the classics -------------------------------------------------------------------------

def test_chroot_breakout_under_pivot_root(mc, rootfs, probes, host_dir):
    """chroot into a subdirectory, chdir("..") past it, chroot("."): under pivot_root the top
    is the container's own root, the old one unmounted; under --chroot (teaching mode) the
    mount namespace's root is still the host's tree, and the breakout reaches it."""
    secret = str(host_dir / "secret")
    r = mc("run", "-v", f"{probes}:/probes:ro", rootfs, "/probes/chroot_escape", secret)
    assert r.stdout == "contained: ENOENT\n", r.stdout + r.stderr
    r = mc("run", "--chroot", "-v", f"{probes}:/probes:ro", rootfs, "/probes/chroot_escape",
           secret)
    assert r.stdout == "escaped\n", r.stdout + r.stderr


def test_host_pids_are_invisible(mc, rootfs):
    me = os.getpid()
    r = mc("run", rootfs, "sh", "-c", f"ls /proc/{me}/; kill -0 {me}; ls -d /proc/[0-9]*")
    assert f"ls: /proc/{me}/: No such file or directory" in r.stderr
    assert "No such process" in r.stderr
    assert {int(p[6:]) for p in r.stdout.split()} <= {1, 2, 3}, r.stdout  # sh and its two ls


def test_raw_cgroupfs_writes_are_refused(mc, rootfs):
    r = mc("run", rootfs, "sh", "-c",
           "mkdir /sys/fs/cgroup/escape; echo $$ > /sys/fs/cgroup/cgroup.procs; "
           "grep ' /sys/fs/cgroup ' /proc/self/mountinfo")
    assert "mkdir: can't create directory '/sys/fs/cgroup/escape': Read-only file system" \
        in r.stderr, r.stderr
    assert "can't create /sys/fs/cgroup/cgroup.procs: Read-only file system" in r.stderr, r.stderr
    assert r.stdout.split()[5].split(",")[0] == "ro", r.stdout  # the mount's own options
