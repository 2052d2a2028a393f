"""`run --dry-run`: the plan of the container's process (runtime/plan.py) printed, nothing
started, nothing made (docs/run.md, "Seeing the plan first")."""
from __future__ import annotations

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
