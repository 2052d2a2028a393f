"""Bad input and failure: one clear line on stderr, docker's exit codes, nothing left behind
(the autouse fixture in conftest.py checks the last part after every test)."""
from __future__ import annotations

import os
import subprocess

import pytest

from conftest import PYTHON


def one_line(r) -> str:
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("minicontainer: ")
    return lines[0]


@pytest.mark.parametrize("args, code, words", [
    (["run", "/nonexistent/rootfs", "/bin/true"], 125, "does not exist"),
    (["run", "{rootfs}/etc/passwd", "/bin/true"], 125, "is not a directory"),
    (["run", "{rootfs}", "no-such-command"], 127, "executable file not found"),
    (["run", "{rootfs}", "/no/such/path"], 127, "no such file"),
    (["run", "{rootfs}", "/etc/passwd"], 126, "permission denied"),
    (["run", "{rootfs}", "/etc"], 126, "permission denied"),
    (["run", "-u", "nosuchuser", "{rootfs}", "/bin/true"], 125, "unable to find user nosuchuser"),
    (["run", "-u", "0:nosuchgroup", "{rootfs}", "/bin/true"], 125, "unable to find group"),
    (["run", "-v", "/tmp", "{rootfs}", "/bin/true"], 125, "invalid volume specification"),
    (["run", "-v", "relative:/x", "{rootfs}", "/bin/true"], 125, "must be absolute"),
    (["run", "-v", "/tmp:/x:rx", "{rootfs}", "/bin/true"], 125, "invalid volume mode"),
    (["run", "-v", "/nonexistent:/x", "{rootfs}", "/bin/true"], 125, "does not exist on the host"),
    (["run", "--bogus", "{rootfs}", "/bin/true"], 125, "unknown flag: --bogus"),
    (["run", "-e", "=x", "{rootfs}", "/bin/true"], 125, "invalid environment variable"),
    (["run", "--cap-add", "NOT_A_CAP", "{rootfs}", "/bin/true"], 125, "unknown capability"),
    (["run", "--name", "bad name", "{rootfs}", "/bin/true"], 125, "invalid container name"),
    (["run", "-w", "relative", "{rootfs}", "/bin/true"], 125, "absolute path"),
    (["run", "{rootfs}"], 125, "needs a rootfs and a command"),
    (["run", "--read-only", "-v", "/tmp:/nonexistent-dir", "{rootfs}", "/bin/true"], 125,
     "does not exist in the read-only rootfs"),
    (["nosuchverb"], 125, "unknown command"),
])
def test_bad_input(mc, rootfs, args, code, words):
    r = mc(*[a.format(rootfs=rootfs) for a in args])
    assert r.returncode == code, r.stderr
    assert words in one_line(r)


def test_non_executable_in_path_is_126(mc, rootfs, tmp_path):
    script = tmp_path / "tool"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    r = mc("run", "-v", f"{tmp_path}:/opt/bin", "-e", "PATH=/opt/bin:/bin", rootfs, "tool")
    assert r.returncode == 126 and "permission denied" in one_line(r)


def test_not_root(rootfs):
    # uid 65534 may not be able to enter the checkout (a clone in /root, mode 700): it runs
    # a copy of the package, with the interpreter the venv links to.
    import shutil
    import tempfile

    from conftest import REPO

    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)  # the copy must be reachable: pytest's tmp_path is not
        shutil.copytree(os.path.join(REPO, "minicontainer"), os.path.join(tmp, "minicontainer"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        code = f"import sys; sys.path.insert(0, {tmp!r}); from minicontainer.cli import entry; entry()"
        r = subprocess.run([os.path.realpath(PYTHON), "-S", "-c", code, "run", rootfs, "/bin/true"],
                           capture_output=True, text=True, cwd="/",
                           preexec_fn=lambda: (os.setgroups([]), os.setgid(65534), os.setuid(65534)))
    assert r.returncode == 125, r.stderr
    assert one_line(r) == "minicontainer: run needs root: try 'sudo minicontainer run ...'"


def test_help_and_version(mc):
    assert mc("--version").stdout.startswith("minicontainer version ")
    assert "Usage: minicontainer run" in mc("run", "--help").stdout


def test_failure_late_in_the_child_leaves_nothing(mc, rootfs):
    # The user lookup fails after every mount is made and pivot_root is done.
    r = mc("run", "-v", "/tmp:/data", "--tmpfs", "/scratch", "-u", "ghost", rootfs, "/bin/true")
    assert r.returncode == 125
    # conftest's nothing_left_behind checks mounts, state and processes after this test


def test_the_runtime_does_not_import_heavy_modules(rootfs, state_root):
    """The start-up path stays lean: none of the modules CONTRIBUTING.md's start-up rules name.
    A first start in a state root compiles the seccomp profile (json and all, once: then it is
    cached); the start measured is an ordinary one after it."""
    first = subprocess.run([PYTHON, "-m", "minicontainer", "--root", state_root, "run", rootfs,
                            "/bin/true"], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    code = ("import sys; from minicontainer.cli import main; rc = main(['--root', %r, 'run', %r, "
            "'/bin/true']); heavy = {'pyroute2', 'argparse', 'json', 'dataclasses', 'typing', "
            "'enum', 'shutil', 're', 'signal', 'importlib', 'subprocess'} & set(sys.modules); "
            "print(rc, sorted(heavy))") % (state_root, rootfs)
    r = subprocess.run([PYTHON, "-S", "-c", code], capture_output=True, text=True,
                       env={"PYTHONPATH": os.pathsep.join(sys_path_for_minicontainer())})
    assert r.stdout.strip() == "0 []", r.stdout + r.stderr


def sys_path_for_minicontainer() -> list[str]:
    import sys
    return [p for p in sys.path if p]
