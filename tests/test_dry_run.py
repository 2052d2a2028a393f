"""`run --dry-run`: the plan of the container's process (runtime/plan.py) printed, nothing
started, nothing made (docs/run.md, "Seeing the plan first")."""
from __future__ import annotations

import json
import os
import subprocess

from conftest import PYTHON, session_cgroups
from minicontainer.cli import run
from minicontainer.runtime import launch, plan
from minicontainer.runtime.state import StateStore


def test_dry_run_prints_the_plan_and_creates_nothing(rootfs, tmp_path):
    root = str(tmp_path / "state")  # a state root of its own, which must not come to exist
    args = ["--name", "planned", "-v", "/tmp:/data:ro", "--tmpfs", "/scratch", "-t", "--init",
            rootfs, "/bin/sh", "-c", "true"]
    r = subprocess.run([PYTHON, "-m", "minicontainer", "--root", root, "run", "--dry-run", *args],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert (r.returncode, r.stderr) == (0, "")
    spec = run.build_spec(*run.parse(args))
    assert r.stdout.splitlines() == plan.describe(launch.dry_run(spec, StateStore(root)))
    assert "bind /tmp on /data (ro,recursive)" in r.stdout
    assert not os.path.exists(root)  # no record, no name, no overlay directory
    assert session_cgroups(root) == []  # no cgroup


def test_dry_run_refuses_what_run_refuses(mc, rootfs, tmp_path):
    for args, words in ((["-v", "data:/x", rootfs, "true"], "the host path must be absolute"),
                        ([str(tmp_path / "nosuch"), "true"], "does not exist"),
                        (["--name", "bad/name", rootfs, "true"], "bad/name")):
        dry, real = mc("run", "--dry-run", *args), mc("run", *args)
        assert (dry.returncode, dry.stderr) == (real.returncode, real.stderr), args
        assert dry.returncode == 125 and words in dry.stderr and dry.stdout == ""


def test_dry_run_refuses_what_a_start_would_find(mc, rootfs, tmp_path):
    """What is only known at start (a missing volume source, a name in use, a network to
    join, a seccomp profile the translator refuses) is checked too, with run's own line,
    and still nothing is made: a profile not cached yet is compiled, not written."""
    profile = tmp_path / "notify.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": '
                       '[{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}')
    r = mc("run", "-d", "--name", "holder", rootfs, "sleep", "60")
    assert r.returncode == 0, r.stderr
    try:
        for args, words in (
                (["-v", f"{tmp_path}/nosuch:/x", rootfs, "true"], "does not exist on the host"),
                (["--name", "holder", rootfs, "true"], '"holder" is already in use'),
                (["--network", "container:nosuch", rootfs, "true"], "no such container"),
                (["--security-opt", f"seccomp={profile}", rootfs, "true"], "SCMP_ACT_NOTIFY")):
            dry, real = mc("run", "--dry-run", *args), mc("run", *args)
            assert (dry.returncode, dry.stderr) == (real.returncode, real.stderr), args
            assert dry.returncode == 125 and words in dry.stderr and dry.stdout == ""
        # and the same flags, given what they need, plan without complaint
        ok = mc("run", "--dry-run", "--network", "container:holder", "--name", "other",
                rootfs, "true")
        assert ok.returncode == 0 and ok.stdout.splitlines()[-1].endswith("execve true")
        # joined as a start joins it: holder's namespace, no new one, no lo of its own
        pid = json.loads(mc("inspect", "holder").stdout)[0]["pid"]
        steps = [line.split(None, 1)[1] for line in ok.stdout.splitlines()]
        assert steps[:2] == [f"join namespaces net=/proc/{pid}/ns/net",
                             "unshare mnt uts ipc cgroup"]
        assert not any("lo up" in step for step in steps)
    finally:
        mc("rm", "-f", "holder")


def test_dry_run_compiles_an_uncached_profile_without_writing_it(rootfs, tmp_path):
    root = str(tmp_path / "state")
    profile = tmp_path / "p.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": '
                       '[{"names": ["mknod"], "action": "SCMP_ACT_ERRNO"}]}')
    r = subprocess.run([PYTHON, "-m", "minicontainer", "--root", root, "run", "--dry-run",
                        "--security-opt", f"seccomp={profile}", rootfs, "true"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert (r.returncode, r.stderr) == (0, "")
    assert "load the seccomp filter" in r.stdout
    assert not os.path.exists(root)
