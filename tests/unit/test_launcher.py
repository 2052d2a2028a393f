"""The launcher every front door shares (minicontainer/launcher.py): install.sh, the benchmarks
and the client tests all start minicontainer through this one text."""
from __future__ import annotations

import os
import subprocess
import sys

from minicontainer import launcher


def test_the_checkout_comes_first_then_the_venv():
    code = launcher.code("/src/tree", site="/venv/site")
    assert "sys.path[:0] = ['/src/tree', '/venv/site']" in code
    assert code.endswith("from minicontainer.cli import entry\nentry()\n")
    assert "os.environ" not in code


def test_env_is_set_before_the_import():
    code = launcher.code("/t", site="/s", env={"MINICONTAINER_ROOT": "/run/x"})
    assert code.index("os.environ['MINICONTAINER_ROOT'] = '/run/x'") < code.index("entry")


def test_written_launcher_runs_this_checkout_with_no_site_module(tmp_path):
    path = launcher.write(str(tmp_path / "minicontainer"))
    with open(path) as f:
        assert f.readline() == f"#!{sys.executable} -S\n"
    assert os.access(path, os.X_OK)
    r = subprocess.run([path, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip(), r.stderr


def test_bad_usage_exits_2(capsys):
    assert launcher.main([]) == 2
    assert "usage" in capsys.readouterr().err
