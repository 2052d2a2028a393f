"""The pytest plugin, run as a user runs it: pytest inside pytest (pytester), under xdist, and
a session SIGKILLed in the middle of a test, after which nothing of it may remain."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from conftest import REPO, container_processes, session_cgroups

from minicontainer import pytest_plugin
from minicontainer.runtime.network.ipam import Network

pytest_plugins = ["pytester"]

SERVICE_TESTS = '''
import urllib.request

ROOTFS = {rootfs!r}
HTTPD = ["httpd", "-f", "-v", "-p", "80", "-h", "/etc"]


def fetch(container):
    url = f"http://127.0.0.1:{{container.host_port(80)}}/hostname"
    return urllib.request.urlopen(url, timeout=5).read()


def test_one(containers):
    web = containers.start(ROOTFS, HTTPD, ports={{80: None}}, name="web")
    web.wait_for_port(80)
    assert fetch(web)


def test_two(containers, session_containers):
    web = containers.start(ROOTFS, HTTPD, ports={{80: None}}, name="web")  # same name
    shared = session_containers.start(ROOTFS, HTTPD, ports={{80: None}})
    web.wait_for_port(80)
    shared.wait_for_port(80)
    assert fetch(web) == fetch(shared)
    assert containers.run(ROOTFS, ["echo", "hi"]).stdout == b"hi\\n"


def test_three(containers):
    assert containers.run(ROOTFS, ["hostname"], hostname="three", text=True).stdout == "three\\n"


def test_fails_with_logs(containers):
    c = containers.start(ROOTFS, ["sh", "-c", "echo visible-in-the-report; sleep 30"])
    c.wait_for_log("visible")
    assert False
'''


def plugin_roots() -> set[str]:
    return set(pytest_plugin._roots())


def test_plugin_under_xdist(pytester, rootfs):
    before = plugin_roots()
    pytester.makepyfile(test_services=SERVICE_TESTS.format(rootfs=rootfs))
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=3, failed=1)
    # the failing test's report carries its container's output, in a section of its own
    result.stdout.re_match_lines([r".*minicontainer \w{12} \['sh', '-c', 'echo visible.*",
                                  r"visible-in-the-report"], consecutive=True)
    result.stdout.fnmatch_lines(["*[gw0]*", "*[gw1]*"], consecutive=False)
    assert plugin_roots() - before == set()  # each worker removed its root


HANGING_TEST = '''
import time

def test_hangs(containers):
    web = containers.start({rootfs!r}, ["httpd", "-f", "-p", "80", "-h", "/etc"],
                           ports={{80: None}})
    web.wait_for_port(80)
    with open({ready!r}, "w") as f:
        f.write(web.root)
    time.sleep(60)
'''


def test_sigkilled_session_leaves_nothing(pytester, rootfs, tmp_path):
    ready = str(tmp_path / "ready")
    pytester.makepyfile(test_hang=HANGING_TEST.format(rootfs=rootfs, ready=ready))
    session = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                "test_hang.py"], cwd=pytester.path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(ready) or not open(ready).read():
            assert session.poll() is None and time.monotonic() < deadline, "never ready"
            time.sleep(0.05)
        root = open(ready).read()
        net = Network(root)
        assert net.bridge in links() and container_processes(root)
    finally:
        session.send_signal(signal.SIGKILL)
        session.wait()

    deadline = time.monotonic() + 5  # "within a few seconds"
    while time.monotonic() < deadline and leftovers(root, net):
        time.sleep(0.05)
    assert leftovers(root, net) == []
    # The dead session's (now empty) root goes with the next session's start, or here:
    assert root in pytest_plugin.reclaim_dead_roots()
    assert not os.path.exists(root)


def links() -> str:
    return subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout


def leftovers(root: str, net: Network) -> list[str]:
    found = []
    if os.listdir(os.path.join(root, "containers")):
        found.append(f"containers: {os.listdir(os.path.join(root, 'containers'))}")
    if container_processes(root):
        found.append(f"processes: {container_processes(root)}")
    if net.bridge in links() or net.veth_prefix in links():
        found.append("links")
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    if net.table in tables:
        found.append(f"nft table {net.table}")
    if session_cgroups(root):
        found.append(f"cgroups: {session_cgroups(root)}")
    with open("/proc/self/mountinfo") as f:
        if root in f.read():
            found.append("mounts")
    return found


def doc_blocks() -> list[str]:
    """The ```python blocks of docs/harness.md, in order."""
    with open(os.path.join(REPO, "docs", "harness.md")) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


def test_the_quick_start_runs(pytester, rootfs):
    """docs/harness.md's quick start, as written, with ./rootfs pointing at the repo's."""
    quick_start = doc_blocks()[0]
    pytester.makepyfile(test_web=quick_start.replace('"./rootfs"', repr(rootfs)))
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=2)


def test_the_api_example_runs(state_root):
    example = doc_blocks()[1]
    r = subprocess.run([sys.executable, "-c", example], cwd=REPO, capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, MINICONTAINER_ROOT=state_root))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["box", ""]  # print() of "box\n"
    cid, ip, port = r.stdout.split("\n")[2].split()
    assert len(cid) == 12 and ip.startswith("10.") and int(port) > 0
