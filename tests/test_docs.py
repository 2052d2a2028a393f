"""The docs run: every command README.md and docs/*.md show a reader typing is run as typed.

The convention (CONTRIBUTING.md says it in one line):

- A command a reader types is a line starting with `$ ` inside a fenced block; a line ending
  in `\\` continues on the next one. What follows it, up to the next `$ ` line or the end of the
  block, is what it prints (stdout and stderr together, as on a terminal).
- ```` ```console ```` blocks: the output shown is exact; the test compares it literally.
- ```` ```sh ```` blocks: the output varies (ids, pids, times); only the exit status is checked.
- Every command must exit 0. A command meant to fail shows its status itself
  (`...; echo $?`), so the reader sees it too.
- A command that needs what not every host has says so at the end of its line: `# needs a
  terminal`, `# needs a cgroup v2 host`, ... Two such needs are decided by looking at the host:
  `# needs a cgroup v2 host` (its cgroup2 has the memory, cpu and pids controllers) and
  `# needs a hybrid cgroup host` (it has not); a command whose need this host meets runs with
  the others. Any other need is never run here. What is not run, `test_what_this_host_cannot_run`
  reports as skipped, naming the command: never silently.

Each page runs in order, from the repository's top (so `./rootfs` works), each command in its
own `sh -c` (a command stands alone: no shell variables or jobs carried between lines), with
`minicontainer` on PATH meaning this checkout with a state root of the page's own
(also in MINICONTAINER_ROOT, which pages use to name the state root as
`${MINICONTAINER_ROOT:-/run/minicontainer}`). Whatever the page leaves (detached or OCI
containers) is removed afterwards, then the root itself, and nothing may remain of it.

workshop/*/README.md are held to the same parser and runner by tests/test_workshop.py.
"""
from __future__ import annotations

import difflib
import glob
import os
import re
import subprocess
import sys
import time

import pytest

from conftest import PYTHON, REPO, leftovers
from minicontainer.kernel import cgroupfs
from minicontainer.testing import guest_lane

sys.path.insert(0, os.path.join(REPO, "workshop"))
import check  # noqa: E402

PAGES = ["README.md"] + sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md")))
NEEDS = re.compile(r"#\s*(needs\b[^#]*)$")
TIMEOUT = 180  # a VM boot under TCG on a busy 2-core host takes several seconds


# Pages that landed before this convention and are not in it yet: reported as skipped, by name.
NOT_YET: dict[str, str] = {}


def page_commands(page: str) -> list[tuple[str, str, str]]:
    with open(os.path.join(REPO, page)) as f:
        return check.commands(f.read())


_V2 = cgroupfs.mounts()[0]
V2_CONTROLLERS = _V2 is not None and {"memory", "cpu", "pids"} <= cgroupfs.controllers(_V2)
MET = {"needs a cgroup v2 host": V2_CONTROLLERS, "needs a hybrid cgroup host": not V2_CONTROLLERS}


def needs(command: str) -> str | None:
    """What the command needs that this host does not give (None: run it)."""
    match = NEEDS.search(command)
    need = match.group(1).strip() if match else None
    return None if MET.get(need) else need


@pytest.fixture
def page_root(state_root, tmp_path):
    """A state root for one page, and `minicontainer` on PATH running this checkout with it.
    Afterwards: remove what the page left, check nothing of the root remains, remove it."""
    root = os.path.join(state_root, "docs-" + tmp_path.name)
    os.makedirs(root)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "minicontainer").write_text(
        f'#!/bin/sh\nexec {PYTHON} -m minicontainer --root {root} "$@"\n')
    (bindir / "minicontainer").chmod(0o755)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", MINICONTAINER_ROOT=root)
    yield root, env
    mc = [PYTHON, "-m", "minicontainer", "--root", root]
    containers = os.path.join(root, "containers")
    for cid in os.listdir(containers) if os.path.isdir(containers) else []:
        if subprocess.run([*mc, "rm", "-f", cid], capture_output=True).returncode:
            subprocess.run([*mc, "delete", "--force", cid], capture_output=True)
    subprocess.run([*mc, "gc"], capture_output=True)
    network = os.path.join(root, "network")

    def remains() -> list[str]:  # network/config lives as long as the bridge and nft table
        return leftovers(root) + (["network"] if os.path.exists(f"{network}/config") else [])

    # the last bridge container's network is torn down by a detached process: wait for it
    deadline = time.monotonic() + 15
    while remains() and time.monotonic() < deadline:
        time.sleep(0.1)
    problems = remains()
    subprocess.run(["rm", "-rf", root], check=False)
    assert not problems, f"the page's state root kept: {problems}"


@pytest.mark.parametrize("page", [p for p in PAGES if p in NOT_YET or any(not needs(c) for _, c, _ in page_commands(p))])
def test_page_commands_run_as_typed(page, page_root):
    if page in NOT_YET:
        pytest.skip(f"{page}: {NOT_YET[page]}")
    root, env = page_root
    failures = []
    for info, command, shown in page_commands(page):
        if needs(command):
            continue
        status, printed = check.execute(command, TIMEOUT, env)
        if status != 0:
            failures.append(f"$ {command}\nexit status {status}, printed:\n{printed}")
        elif info == "console" and printed != shown:
            diff = "".join(difflib.unified_diff(shown.splitlines(True), printed.splitlines(True),
                                                page, "printed"))
            failures.append(f"$ {command}\n{diff}")
    assert not failures, f"{page}: {len(failures)} command(s) failed:\n\n" + "\n\n".join(failures)


SKIPPED = [(page, command) for page in PAGES for _, command, _ in page_commands(page) if needs(command)]


@pytest.mark.parametrize("page,command", SKIPPED, ids=[f"{p}:{i}" for i, (p, _) in enumerate(SKIPPED)])
def test_what_this_host_cannot_run(page, command):
    pytest.skip(f"{page}: not run here ({needs(command)}): $ {command}")


def test_every_page_is_held_to_the_convention():
    """Command blocks are ```console or ```sh; a ```sh or ```console block without a `$ ` line
    would be a command nobody runs."""
    for page in PAGES:
        if page in NOT_YET:
            continue  # test_page_commands_run_as_typed reports it skipped
        with open(os.path.join(REPO, page)) as f:
            text = f.read()
        for info, block in re.findall(r"^ *```(\w*)[^\n]*\n(.*?)^ *```", text, re.M | re.S):
            if info in ("sh", "console"):
                assert re.search(r"^\$ ", block, re.M), f"{page}: a ```{info} block without a `$ ` line:\n{block}"


# docs/cgroups.md's limits need cgroup v2 controllers this hybrid host has not: the guest lane
# runs the page there (tests/guest/docs_cgroups.py), in the session's one boot.
# (named, not collected: collecting that file imports this one)
GUEST_TESTS = [] if V2_CONTROLLERS else ["tests/guest/docs_cgroups.py::test_cgroups_page_with_its_limits"]


@pytest.fixture(scope="session")
def guest():
    return guest_lane.session_run()


@pytest.mark.parametrize("nodeid", GUEST_TESTS, ids=lambda n: n.split("::", 1)[1])
def test_cgroup_v2_commands_in_the_guest_lane(guest, nodeid):
    guest.check(nodeid)
