"""What the container's process uses after switch_root must be imported before it: a run
through the runtime alone (no CLI, no oci.py) with rlimits and a terminal still works."""
from __future__ import annotations

import subprocess

from conftest import PYTHON

RUN = """
import sys
from minicontainer.runtime.launch import run
from minicontainer.runtime.state import StateStore
from minicontainer.kernel import caps
from minicontainer.spec import ContainerSpec, Process, Root, Security
assert "resource" not in sys.modules and "minicontainer.oci" not in sys.modules
spec = ContainerSpec(root=Root(path=sys.argv[2]),
                     process=Process(args=["/bin/sh", "-c", "ulimit -n"], rlimits=[(7, 77, 77)]),
                     security=Security(capabilities=frozenset(caps.DEFAULT)))
sys.exit(run(spec, StateStore(sys.argv[1])))
"""


def test_rlimits_without_the_oci_module(rootfs, state_root):
    r = subprocess.run([PYTHON, "-c", RUN, state_root, rootfs], capture_output=True, text=True,
                       timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "77\n", "")
