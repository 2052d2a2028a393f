"""The pytest plugin (registered through the `pytest11` entry point: installing minicontainer
is enough). docs/harness.md shows it in use.

Fixtures:
    containers           function scope: a factory, containers.run(rootfs, argv, **options)
                         -> Result and containers.start(rootfs, argv, **options) -> Container;
                         everything it started is killed and removed at the test's teardown
    session_containers   the same factory, for the whole session (one worker's, under xdist)
    minicontainer_root   the session's state root (session scope)

Each session (each xdist worker) has its own state root, /run/minicontainer-pytest-*, and so
its own names, bridge, subnet and nft table: workers never see each other's containers. The
roots are chosen so that no two live ones get the same bridge subnet. Every container is
started with a lifeline to this process (harness.Container): if pytest is SIGKILLed, the
containers' shims kill and remove them at once; the next session removes the dead session's
empty root (and collects anything a dead shim left).

When a test fails, the output of the containers it used is added to its report.

This module is imported by every pytest run on a machine where minicontainer is installed:
it imports nothing of the runtime until a fixture is used.
"""
from __future__ import annotations

import os

import pytest

ROOT_PREFIX = "minicontainer-pytest-"
ROOTS_DIR = "/run"
_LOCK = "/run/minicontainer-pytest.lock"


class Containers:
    """The factory behind the `containers` and `session_containers` fixtures."""

    def __init__(self, root: str):
        self.root = root
        self.started: list = []  # Container, in start order
        self.runs: list = []     # (argv, Result) of one-shot runs

    def run(self, rootfs: str, argv, **options):
        """minicontainer.run in this session's state root; kept for the failure report."""
        from minicontainer.harness import run

        result = run(rootfs, argv, root=self.root, **options)
        self.runs.append((result.args, result))
        return result

    def start(self, rootfs: str, argv, **options):
        """A started minicontainer.Container (a service), removed at teardown."""
        from minicontainer.harness import Container

        container = Container(rootfs, argv, root=self.root, lifeline=True, **options)
        container.start()
        self.started.append(container)
        return container

    def report_sections(self) -> list[tuple[str, str]]:
        sections = []
        for c in self.started:
            try:
                text = c.logs().decode(errors="replace")
            except Exception as e:  # gone already: say so rather than hide it
                text = f"(no logs: {e})"
            sections.append((f"minicontainer {c.name} {c.argv!r}", text or "(no output)"))
        for argv, r in self.runs:
            out = r.stdout if isinstance(r.stdout, str) else r.stdout.decode(errors="replace")
            err = r.stderr if isinstance(r.stderr, str) else r.stderr.decode(errors="replace")
            sections.append((f"minicontainer run {argv!r} -> {r.returncode}",
                             f"stdout:\n{out}\nstderr:\n{err}"))
        return sections

    def close(self) -> None:
        errors = []
        for c in reversed(self.started):
            try:
                c.remove()
            except Exception as e:
                errors.append(f"{c.name}: {e}")
        self.started.clear()
        if errors:
            raise RuntimeError("could not remove containers: " + "; ".join(errors))


@pytest.fixture(scope="session")
def minicontainer_root(request):
    """This session's (this worker's) own state root; removed at the end."""
    if os.geteuid() != 0:
        pytest.skip("minicontainer's fixtures start real containers: they need root")
    worker = getattr(request.config, "workerinput", {}).get("workerid", "main")
    root = make_root(worker)
    yield root
    remove_root(root)


@pytest.fixture(scope="session")
def session_containers(minicontainer_root):
    factory = Containers(minicontainer_root)
    yield factory
    factory.close()


@pytest.fixture
def containers(minicontainer_root):
    factory = Containers(minicontainer_root)
    yield factory
    factory.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "teardown" or not report.failed:
        return
    for fixture in ("containers", "session_containers"):
        factory = getattr(item, "funcargs", {}).get(fixture)
        if isinstance(factory, Containers):
            report.sections.extend(factory.report_sections())


# State roots: one per session, with a subnet of its own, reclaimed when their session died.

def make_root(worker: str) -> str:
    """A new state root whose bridge subnet no other live root of this machine has (the
    subnet is derived from the root's path: runtime/network/ipam.py), and whose `owner` file
    names this process. Dead sessions' roots are removed first."""
    import fcntl
    import tempfile

    from minicontainer.runtime.network.ipam import Network
    from minicontainer.runtime.state import process_start_time

    fd = os.open(_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # so two workers starting together never pick alike
        reclaim_dead_roots()
        taken = {Network(path).subnet for path in _roots(any_runtime=True)}
        for _ in range(100):
            root = tempfile.mkdtemp(prefix=f"{ROOT_PREFIX}{worker}-", dir=ROOTS_DIR)
            if Network(root).subnet not in taken:
                with open(os.path.join(root, "owner"), "w") as f:
                    f.write(f"{os.getpid()} {process_start_time(os.getpid())}\n")
                return root
            os.rmdir(root)
        raise RuntimeError("no state root with a free bridge subnet after 100 tries")
    finally:
        os.close(fd)


def remove_root(root: str) -> None:
    """Collect what is left in the root, wait for a network teardown in progress (it holds
    the network lock), and remove the root."""
    from minicontainer.runtime.state import StateStore, remove_tree

    store = StateStore(root)
    store.collect_garbage()
    if store.ids():
        return  # still in use (a dead shim's container, say): a later session collects it
    lock = os.path.join(root, "network", "lock")
    if os.path.exists(lock):
        import fcntl

        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.close(fd)
    remove_tree(root)


def reclaim_dead_roots() -> list[str]:
    """Remove the roots of sessions that died (SIGKILL, OOM): their containers were killed
    by their shims (or are collected here); returns the roots removed."""
    from minicontainer.runtime.state import process_start_time

    removed = []
    for root in _roots():
        try:
            with open(os.path.join(root, "owner")) as f:
                pid, start = f.read().split()
        except (OSError, ValueError):
            continue
        if process_start_time(int(pid)) != start:
            remove_root(root)
            if not os.path.exists(root):
                removed.append(root)
    return removed


def _roots(any_runtime: bool = False) -> list[str]:
    """This plugin's state roots (any_runtime: every minicontainer state root in /run)."""
    prefix = "minicontainer" if any_runtime else ROOT_PREFIX
    return [e.path for e in os.scandir(ROOTS_DIR)
            if e.name.startswith(prefix) and e.is_dir(follow_symlinks=False)]
