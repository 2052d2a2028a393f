"""The state store (runtime/state.py): records, names, lookups, owned resources, and what
garbage collection decides for each mode, with pids that are alive or dead on purpose.
A temp state root, no root, no container."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from minicontainer.errors import ContainerError
from minicontainer.runtime import state
from minicontainer.runtime.state import StateStore, process_start_time


@pytest.fixture
def store(tmp_path):
    return StateStore(str(tmp_path / "state"))


def dead_pid() -> tuple[int, str]:
    """A pid and start time of a process that has exited and been reaped."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    start = process_start_time(p.pid)
    p.kill()
    p.wait()
    return p.pid, start


@pytest.fixture
def sleeper():
    """A live process standing in for a container's first process."""
    p = subprocess.Popen(["sleep", "60"])
    yield p.pid
    p.kill()
    p.wait()


def unwatched(container, **fields):
    """As if its runtime had died: a runtime pid that is gone."""
    pid, start = dead_pid()
    container.update(runtime_pid=pid, runtime_start=start, **fields)


def record_of(container) -> dict:
    with open(os.path.join(container.dir, "state.json")) as f:
        return json.load(f)


# --- records and names ---------------------------------------------------------------------

def test_create_records_first_then_makes_the_directories(store):
    c = store.create("web", "/r", ["sh", "-c", "x"], mode="detached", auto_remove=True)
    r = record_of(c)
    assert r["id"] == c.id and len(c.id) == 64 and r["name"] == "web"
    assert (r["mode"], r["status"], r["rootfs"], r["command"]) == \
        ("detached", "creating", "/r", ["sh", "-c", "x"])
    assert r["runtime_pid"] == os.getpid() and r["runtime_start"] == process_start_time(os.getpid())
    assert r["auto_remove"] is True and r["created"].endswith("Z")
    assert all(os.path.isdir(d) for d in (c.upper, c.work, c.rootfs))
    assert os.readlink(os.path.join(store.root, "names", "web")) == c.id
    assert oct(os.stat(c.dir).st_mode & 0o777) == "0o700"


def test_the_record_encoder_matches_json(store):
    value = {"s": 'quote " back \\ nl \n tab \t \x01 é', "n": None, "t": True, "f": False,
             "i": -5, "l": [1, "a", [None]], "d": {"k": {"x": 1}}}
    assert json.loads(state.to_json(value)) == value
    with pytest.raises(TypeError):
        state.to_json(1.5)


def test_update_is_atomic_and_keeps_other_fields(store):
    c = store.create(None, "/r", ["x"])
    c.update(status="running", pid=123)
    r = record_of(c)
    assert (r["status"], r["pid"], r["rootfs"]) == ("running", 123, "/r")
    assert not os.path.exists(os.path.join(c.dir, "state.json.new"))


def test_a_name_in_use_is_refused_and_nothing_is_left(store):
    store.create("web", "/r", ["x"])
    with pytest.raises(ContainerError, match='the container name "web" is already in use'):
        store.create("web", "/r", ["x"])
    assert len(store.ids()) == 1


def test_a_name_held_by_a_dead_runtime_is_free_again(store):
    old = store.create("web", "/r", ["x"])
    unwatched(old)
    new = store.create("web", "/r", ["x"])
    assert store.ids() == [new.id] and store.lookup("web").id == new.id


def test_check_name_free_answers_as_a_start_would_and_changes_nothing(store):
    store.check_name_free("web")  # never used
    held = store.create("web", "/r", ["x"])
    with pytest.raises(ContainerError, match='the container name "web" is already in use'):
        store.check_name_free("web")
    unwatched(held)  # a foreground run whose runtime died: a start reclaims its name
    store.check_name_free("web")
    assert store.ids() == [held.id]  # not reclaimed by the check itself
    kept = store.create("db", "/r", ["x"], mode="detached")
    pid, start = dead_pid()
    kept.update(pid=pid, pid_start=start, status="stopped")
    unwatched(kept)  # stopped and kept until rm: its name stays taken
    with pytest.raises(ContainerError, match='"db" is already in use'):
        store.check_name_free("db")


@pytest.mark.parametrize("name", ["bad name", "-x", "é", "a/b", "x" * 256])
def test_invalid_names_are_refused_before_anything_is_recorded(store, name):
    with pytest.raises(ContainerError, match="invalid container name"):
        store.create(name, "/r", ["x"])
    assert store.ids() == []


def test_an_id_in_use_is_refused(store):
    store.create(None, "/r", ["x"], cid="abc")
    with pytest.raises(ContainerError, match='a container with id "abc" already exists'):
        store.create(None, "/r", ["x"], cid="abc")


def test_lookup_by_name_id_and_unique_prefix(store):
    a = store.create("alpha", "/r", ["x"], cid="aaa111")
    store.create(None, "/r", ["x"], cid="aab222")
    assert store.lookup("alpha").id == a.id
    assert store.lookup("aaa111").id == a.id
    assert store.lookup("aaa").id == a.id
    with pytest.raises(ContainerError, match='"aa" matches 2 containers'):
        store.lookup("aa")
    with pytest.raises(ContainerError, match='no such container: "zzz"'):
        store.lookup("zzz")
    with pytest.raises(ContainerError, match='container "aaa" does not exist'):
        store.lookup("aaa", exact=True)  # the OCI verbs: ids only


@pytest.mark.parametrize("ref", ["", "../x", "a/b", ".", ".."])
def test_lookup_refuses_paths(store, ref):
    with pytest.raises(ContainerError, match="invalid container id or name"):
        store.lookup(ref)


def test_remove_takes_the_directory_and_the_name(store):
    c = store.create("web", "/r", ["x"])
    c.remove()
    c.remove()  # twice is fine
    assert store.ids() == [] and os.listdir(os.path.join(store.root, "names")) == []


# --- owned resources -----------------------------------------------------------------------

RELEASED = []


def release_probe(value: str) -> None:
    if value == "stuck":
        raise OSError("busy")
    RELEASED.append(value)


@pytest.fixture
def probe(monkeypatch):
    RELEASED.clear()
    monkeypatch.setitem(state.RELEASERS, "probe", f"{__name__}:release_probe")


def test_owned_resources_are_released_newest_first(store, probe):
    c = store.create(None, "/r", ["x"])
    for v in ("first", "second", "third"):
        c.own("probe", v)
    assert c.owned() == [("probe", "first"), ("probe", "second"), ("probe", "third")]
    c.release()
    assert RELEASED == ["third", "second", "first"] and c.owned() == []
    assert os.path.isdir(c.dir)  # release keeps the record; remove does not


def test_a_failing_releaser_keeps_going_and_reports(store, probe):
    c = store.create(None, "/r", ["x"])
    c.own("probe", "a")
    c.own("probe", "stuck")
    with pytest.raises(ContainerError, match="cleanup failed, will retry at next gc: probe stuck: busy"):
        c.remove()
    assert RELEASED == ["a"]


def test_owning_an_unknown_kind_is_a_bug(store):
    with pytest.raises(ValueError):
        store.create(None, "/r", ["x"]).own("mystery", "x")


# --- status and garbage collection ---------------------------------------------------------

def test_watched_and_alive_follow_pid_and_start_time(store, sleeper):
    c = store.create(None, "/r", ["x"])
    assert c.watched()  # we are its runtime
    c.started(sleeper, status="running")
    assert c.alive() and c.status() == "running"
    c.update(pid_start="1")  # the same pid, another process: a reused pid
    assert not c.alive() and c.status() == "stopped"


def test_a_zombie_is_not_alive(store):
    p = subprocess.Popen(["true"])
    deadline = time.monotonic() + 5
    while state._proc_stat(p.pid)[0] != b"Z" and time.monotonic() < deadline:
        time.sleep(0.01)
    c = store.create(None, "/r", ["x"])
    c.update(pid=p.pid, pid_start=process_start_time(p.pid), status="running")
    assert not c.alive()
    p.wait()


def test_gc_keeps_what_a_live_runtime_watches(store, sleeper):
    c = store.create(None, "/r", ["x"])
    c.started(sleeper, status="running")
    assert store.collect_garbage() == [] and store.ids() == [c.id]


def test_gc_removes_a_foreground_run_whose_runtime_died(store, probe):
    c = store.create("fg", "/r", ["x"])
    c.own("probe", "cgroup-of-fg")
    unwatched(c, status="running")
    assert store.collect_garbage() == [c.id]
    assert store.ids() == [] and RELEASED == ["cgroup-of-fg"]
    assert os.listdir(os.path.join(store.root, "names")) == []


def test_gc_kills_and_removes_a_create_whose_runtime_died(store):
    p = subprocess.Popen(["sleep", "60"])
    c = store.create(None, "/r", ["x"], mode="oci")
    c.started(p.pid)  # status still "creating"
    unwatched(c)
    assert store.collect_garbage() == [c.id]
    assert p.wait(timeout=5) == -9  # SIGKILLed


def test_gc_leaves_an_unwatched_detached_container_that_still_runs(store, sleeper):
    c = store.create(None, "/r", ["x"], mode="detached")
    c.started(sleeper, status="running")
    unwatched(c)
    assert store.collect_garbage() == [] and store.load(c.id).status() == "running"


def test_gc_marks_a_detached_container_that_died_unwatched_as_stopped(store, probe):
    c = store.create(None, "/r", ["x"], mode="detached")
    c.own("probe", "its-cgroup")
    pid, start = dead_pid()
    c.update(pid=pid, pid_start=start, status="running")
    unwatched(c)
    assert store.collect_garbage() == []
    r = record_of(c)
    assert r["status"] == "stopped" and "exit_code" not in r and r["finished"]
    assert RELEASED == ["its-cgroup"]  # resources go, the record stays until rm
    assert store.collect_garbage() == [] and RELEASED == ["its-cgroup"]  # once


def test_gc_removes_a_dead_auto_remove_container(store):
    c = store.create(None, "/r", ["x"], mode="detached", auto_remove=True)
    pid, start = dead_pid()
    c.update(pid=pid, pid_start=start, status="running")
    unwatched(c)
    assert store.collect_garbage() == [c.id] and store.ids() == []


def test_gc_keeps_an_oci_container_nobody_watches(store, sleeper):
    c = store.create(None, "/r", ["x"], cid="oci1", mode="oci")
    c.started(sleeper)
    c.update(status="created", runtime_pid=None, runtime_start=None)
    assert store.collect_garbage() == [] and store.load("oci1").status() == "created"


def test_gc_of_a_directory_without_a_record(store):
    fresh = os.path.join(store.root, "containers", "fresh")
    stale = os.path.join(store.root, "containers", "stale")
    os.makedirs(fresh)
    os.makedirs(stale)
    os.utime(stale, (time.time() - 60, time.time() - 60))
    os.makedirs(os.path.join(store.root, "names"))
    os.symlink("stale", os.path.join(store.root, "names", "old"))
    assert store.collect_garbage() == ["stale"]  # fresh: its runtime is still writing
    assert store.ids() == ["fresh"] and os.listdir(os.path.join(store.root, "names")) == []


def test_gc_with_nothing_recorded(store):
    assert store.collect_garbage() == [] and store.containers() == []


def test_containers_are_listed_oldest_first(store):
    a = store.create(None, "/r", ["x"], cid="a")
    b = store.create(None, "/r", ["x"], cid="b")
    a.update(created="2026-01-02T00:00:00Z")
    b.update(created="2026-01-01T00:00:00Z")
    assert [c.id for c in store.containers()] == ["b", "a"]


# --- the liveness line: gc without json ----------------------------------------------------

def test_the_liveness_line_follows_the_record(store):
    c = store.create(None, "/r", ["x"], mode="detached", auto_remove=True)
    gone, _ = dead_pid()
    c.started(gone, status="running")
    with open(os.path.join(c.dir, "liveness")) as f:
        line = f.read()
    assert line == (f"detached running {os.getpid()} {process_start_time(os.getpid())} "
                    f"{gone} - 1 - -\n")  # no such pid: no start time; no lifeline
    assert state._read_liveness(c.dir) == {
        "mode": "detached", "status": "running", "runtime_pid": os.getpid(),
        "runtime_start": process_start_time(os.getpid()), "pid": gone, "pid_start": None,
        "auto_remove": True, "lifeline_pid": None, "lifeline_start": None}


def test_a_stale_liveness_line_only_delays_gc(store):
    """If the line says "watched" while the record says otherwise (a runtime that died
    between two writes), this pass leaves the container and a later one acts on it."""
    c = store.create(None, "/r", ["x"])
    with open(os.path.join(c.dir, "liveness")) as f:
        line = f.read()
    unwatched(c)
    with open(os.path.join(c.dir, "liveness"), "w") as f:
        f.write(line)  # as if the runtime died between the two writes
    assert store.collect_garbage() == []
    os.unlink(os.path.join(c.dir, "liveness"))  # no line (an older record): the full path
    assert store.collect_garbage() == [c.id]


def test_a_malformed_liveness_line_falls_back_to_the_record(store):
    c = store.create(None, "/r", ["x"])
    unwatched(c)
    with open(os.path.join(c.dir, "liveness"), "w") as f:
        f.write("garbage\n")
    assert store.collect_garbage() == [c.id]


GC_IMPORTS = """
import sys
from minicontainer.runtime.state import StateStore
removed = StateStore(sys.argv[1]).collect_garbage()
print(len(removed), "json" in sys.modules)
"""


def test_gc_of_healthy_containers_imports_no_json(store, sleeper):
    for i in range(3):  # watched by a live runtime (us), and a detached one still running
        store.create(f"c{i}", "/r", ["x"])
    d = store.create(None, "/r", ["x"], mode="detached")
    d.started(sleeper, status="running")
    unwatched(d)
    out = subprocess.run([sys.executable, "-S", "-c", GC_IMPORTS, store.root],
                         capture_output=True, text=True, env={"PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.split() == ["0", "False"], out.stderr
    dead = store.create(None, "/r", ["x"])
    unwatched(dead)  # now one needs removing: its record is read, still without json
    out = subprocess.run([sys.executable, "-S", "-c", GC_IMPORTS, store.root],
                         capture_output=True, text=True, env={"PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.split() == ["1", "False"], out.stderr


def test_a_dead_lifeline_takes_its_detached_container_with_it(store):
    """The Python API's containers (lifeline_pid/start: the process that started them): once
    that process and the shim are both gone, gc removes the container instead of keeping a
    stopped record (the shim, while it lives, does it itself)."""
    session, start = dead_pid()
    kept = store.create(None, "/r", ["x"], mode="detached")
    tied = store.create(None, "/r", ["x"], mode="detached", lifeline_pid=session,
                        lifeline_start=start)
    for c in (kept, tied):
        unwatched(c, status="running")
    assert store.collect_garbage() == [tied.id]
    assert record_of(kept)["status"] == "stopped"
