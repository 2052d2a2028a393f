"""Resource limits: docker's flags parsed and checked (cli/resources.py), translated to
cgroup v2 files and written (runtime/cgroups.py) into a temp directory standing in for the
cgroup2 mount, and what is reported after exit. No root, no real cgroup."""
from __future__ import annotations

import os

import pytest

from minicontainer.cli import resources
from minicontainer.errors import ContainerError, UsageError
from minicontainer.kernel import cgroupfs
from minicontainer.runtime import cgroups
from minicontainer.spec import ContainerSpec, Process, Resources, Root

CPUS = len(resources.online_cpus())


def build(**opts):
    opts.setdefault("device_read_bps", [])
    opts.setdefault("device_write_bps", [])
    return resources.build(opts)


# --- flags -> Resources --------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("1048576", 1 << 20), ("64k", 64 << 10), ("512m", 512 << 20), ("1.5g", 3 << 29),
    ("2G", 2 << 30), ("10mb", 10 << 20), ("10MiB", 10 << 20), ("7b", 7), (" 1t ", 1 << 40)])
def test_sizes(text, value):
    assert resources.parse_size("--memory", text) == value


@pytest.mark.parametrize("text", ["", "m", "-1", "1x", "1.2.3m", "0", "0.0001k"])
def test_bad_sizes(text):
    with pytest.raises(UsageError, match="--memory"):
        resources.parse_size("--memory", text)


def test_no_resource_flag_no_resources():
    assert build() is None


def test_every_limit_applied():
    r = build(memory="64m", memory_swap="128m", memory_reservation="32m", cpus="0.5",
              cpu_shares="512", cpuset_cpus="0", pids_limit="100", io_weight="200", stats=True)
    assert (r.memory, r.memory_swap, r.memory_reservation) == (64 << 20, 128 << 20, 32 << 20)
    assert (r.cpus, r.cpu_shares, r.cpuset_cpus, r.pids_limit, r.io_weight, r.stats) == \
        (0.5, 512, "0", 100, 200, True)


def test_unlimited_swap_and_pids():
    r = build(memory="64m", memory_swap="-1", pids_limit="0")
    assert r.memory_swap == -1 and r.pids_limit is None
    assert build(pids_limit="-1").pids_limit is None


@pytest.mark.parametrize("opts, words", [
    ({"memory": "5m"}, "--memory 5m is too small"),
    ({"memory_swap": "1g"}, "--memory-swap needs --memory"),
    ({"memory": "64m", "memory_swap": "32m"}, "is less than --memory"),
    ({"memory": "64m", "memory_reservation": "128m"}, "must not be more than --memory"),
    ({"cpus": "x"}, "invalid --cpus 'x'"),
    ({"cpus": "0.001"}, "the range is 0.01 to"),
    ({"cpus": str(CPUS + 1)}, "the range is 0.01 to"),
    ({"cpu_shares": "1"}, "must be from 2 to 262144"),
    ({"cpu_shares": "lots"}, "want a whole number"),
    ({"cpuset_cpus": "0-"}, "invalid --cpuset-cpus '0-'"),
    ({"cpuset_cpus": "3-1"}, "invalid --cpuset-cpus"),
    ({"cpuset_cpus": "4096"}, "do not exist here"),
    ({"pids_limit": "-2"}, "--pids-limit"),
    ({"io_weight": "0"}, "must be from 1 to 10000"),
    ({"io_weight": "10001"}, "must be from 1 to 10000"),
    ({"device_read_bps": ["/dev/null:1m"]}, "/dev/null is not a block device"),
    ({"device_write_bps": ["/nonexistent:1m"]}, "/nonexistent: No such file"),
    ({"device_read_bps": ["sda:1m"]}, "want DEVICE-PATH:RATE"),
])
def test_refusals(opts, words):
    with pytest.raises(UsageError, match=words.replace("(", r"\(")):
        build(**opts)


def test_cpu_lists():
    assert resources.parse_cpu_list("0-2,4") == {0, 1, 2, 4}
    assert resources.parse_cpu_list("3") == {3}
    for bad in ("", "a", "1,,2", "2-1"):
        with pytest.raises(ValueError):
            resources.parse_cpu_list(bad)


# --- Resources -> cgroup v2 files ----------------------------------------------------------

def test_settings_docker_translation():
    r = Resources(memory=64 << 20, memory_reservation=1 << 20, cpus=1.5, cpu_shares=1024,
                  cpuset_cpus="0-1", pids_limit=50, io_weight=300,
                  device_read_bps=[("/dev/vda", "254:0", 1 << 20)],
                  device_write_bps=[("/dev/vda", "254:0", 2 << 20), ("/dev/vdb", "254:16", 5)])
    assert cgroups.settings(r) == [
        ("memory.max", str(64 << 20)), ("memory.oom.group", "1"),
        ("memory.swap.max", str(64 << 20)),  # unset swap: as much swap as memory
        ("memory.low", str(1 << 20)), ("cpu.max", "150000 100000"), ("cpu.weight", "100"),
        ("cpuset.cpus", "0-1"), ("pids.max", "50"), ("io.weight", "default 300"),
        ("io.max", f"254:0 rbps={1 << 20} wbps={2 << 20}"), ("io.max", "254:16 wbps=5")]


def test_swap_settings():
    m = 64 << 20
    assert ("memory.swap.max", "max") in cgroups.settings(Resources(memory=m, memory_swap=-1))
    assert ("memory.swap.max", str(m)) in cgroups.settings(Resources(memory=m, memory_swap=2 * m))
    # no swap accounting: the implicit limit is skipped, an explicit one still written
    names = [n for n, _ in cgroups.settings(Resources(memory=m), swap_accounting=False)]
    assert "memory.swap.max" not in names
    assert ("memory.swap.max", "0") in cgroups.settings(
        Resources(memory=m, memory_swap=m), swap_accounting=False)


def test_tiny_cpu_quota_has_a_floor():
    assert cgroups.settings(Resources(cpus=0.001)) == [("cpu.max", "1000 100000")]


def test_no_resources_no_settings():
    assert cgroups.settings(None) == [] and cgroups.settings(Resources()) == []


@pytest.mark.parametrize("shares, weight", [
    (2, 1), (1, 1), (1024, 100), (262144, 10000), (300000, 10000)])
def test_shares_to_weight_keeps_the_anchors(shares, weight):
    assert cgroups.shares_to_weight(shares) == weight


def test_shares_to_weight_is_monotonic():
    weights = [cgroups.shares_to_weight(s) for s in range(2, 262145, 97)]
    assert weights == sorted(weights) and 1 <= weights[0] and weights[-1] <= 10000


def test_parent_name_per_state_root():
    assert cgroups.parent_name("/run/minicontainer") == "minicontainer"
    assert cgroups.parent_name("/run/minicontainer/") == "minicontainer"
    other = cgroups.parent_name("/run/other")
    assert other.startswith("minicontainer-") and len(other) == len("minicontainer-") + 16
    assert other != cgroups.parent_name("/run/other2")


# --- create, check, report and release on a stand-in cgroup2 mount -------------------------

FILES = {"memory": ("memory.max", "memory.swap.max", "memory.oom.group", "memory.low",
                    "memory.events", "memory.peak"),
         "cpu": ("cpu.max", "cpu.weight", "cpu.stat"), "pids": ("pids.max", "pids.events",
                                                                 "pids.peak"),
         "cpuset": ("cpuset.cpus",), "io": ("io.weight", "io.max")}


@pytest.fixture
def v2(tmp_path, monkeypatch):
    """A directory standing in for the cgroup2 mount: mkdir makes the interface files the
    kernel would (for every controller the parent hands down); controllers: all five."""
    root = tmp_path / "cgroup2"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    real_mkdir = cgroupfs.mkdir

    def mkdir(path):
        real_mkdir(path)
        parent = os.path.dirname(path)
        with open(f"{parent}/cgroup.subtree_control") as f:
            enabled = " ".join(f.read().replace("+", " ").split())
        with open(f"{path}/cgroup.controllers", "w") as f:
            f.write(enabled + "\n")
        for name in ("cgroup.subtree_control", "cgroup.procs", "cgroup.kill", "cgroup.events"):
            open(f"{path}/{name}", "w").close()
        for controller in enabled.split():
            for name in FILES[controller]:
                open(f"{path}/{name}", "w").close()

    monkeypatch.setattr(cgroupfs, "mkdir", mkdir)
    monkeypatch.setattr(cgroups, "_mounts", (str(root), {"memory": "/sys/fs/cgroup/memory"}))
    return root


class FakeContainer:
    """What cgroups.create uses of a state.Container: its store's root, its id, own()."""

    def __init__(self, state_root):
        self.store = type("Store", (), {"root": state_root})()
        self.id = "c0ffee"
        self.owned = []

    def own(self, kind, value):
        self.owned.append((kind, value))


def spec_with(resources) -> ContainerSpec:
    return ContainerSpec(root=Root(path="/r"), process=Process(args=["x"]), resources=resources)


def test_create_writes_the_limits_and_enables_only_what_is_needed(v2, tmp_path):
    c = FakeContainer(str(tmp_path / "state"))
    path = cgroups.create(spec_with(Resources(memory=64 << 20, pids_limit=7)), c)
    parent = v2 / cgroups.parent_name(c.store.root)
    assert path == f"{parent}/c0ffee" and c.owned == [("cgroup", path)]
    assert (v2 / "cgroup.subtree_control").read_text() == "+memory +pids"
    assert (parent / "cgroup.subtree_control").read_text() == "+memory +pids"
    assert (parent / "c0ffee" / "memory.max").read_text() == str(64 << 20)
    assert (parent / "c0ffee" / "memory.oom.group").read_text() == "1"
    assert (parent / "c0ffee" / "memory.swap.max").read_text() == str(64 << 20)
    assert (parent / "c0ffee" / "pids.max").read_text() == "7"


def test_create_without_limits_is_two_mkdirs(v2, tmp_path):
    c = FakeContainer(str(tmp_path / "state"))
    path = cgroups.create(spec_with(None), c)
    assert os.path.isdir(path)
    assert (v2 / "cgroup.subtree_control").read_text() == ""


def test_create_without_cgroup2_makes_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(cgroups, "_mounts", (None, {}))
    c = FakeContainer(str(tmp_path))
    assert cgroups.create(spec_with(None), c) is None and c.owned == []


def test_check_refuses_a_missing_controller_and_says_where_it_went(v2):
    (v2 / "cgroup.controllers").write_text("cpu pids\n")
    with pytest.raises(ContainerError) as e:
        cgroups.check(spec_with(Resources(memory=64 << 20, cpus=1.0)))
    msg = str(e.value)
    assert msg.startswith("cannot apply --memory:") and "no memory controller" in msg
    assert "memory is held by cgroup v1 at /sys/fs/cgroup/memory" in msg
    cgroups.check(spec_with(Resources(cpus=1.0)))  # cpu is there: accepted


def test_check_refuses_every_limit_without_cgroup2(monkeypatch):
    monkeypatch.setattr(cgroups, "_mounts", (None, {}))
    with pytest.raises(ContainerError, match="cgroup v2 is not mounted"):
        cgroups.check(spec_with(Resources(pids_limit=5)))
    cgroups.check(spec_with(None))  # no limit: nothing to refuse


def test_report_oom_kill_refused_forks_and_stats(tmp_path, capsys):
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    (tmp_path / "pids.events").write_text("max 4\n")
    (tmp_path / "memory.peak").write_text(str(5 << 20) + "\n")
    (tmp_path / "pids.peak").write_text("9\n")
    (tmp_path / "cpu.stat").write_text("usage_usec 3000\nuser_usec 2000000\nsystem_usec 500000\n")
    cgroups.report(spec_with(Resources(memory=64 << 20, pids_limit=5, stats=True)),
                   str(tmp_path), 137)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("minicontainer: container killed for memory") and \
        "memory.max=64 MiB" in err[0] and "exit status 137" in err[0]
    assert err[1] == "minicontainer: pids.max=5 refused 4 fork(s) (pids.events max)"
    assert "minicontainer:   memory peak     5 MiB" in err
    assert "minicontainer:   cpu time        user 2.000 s, system 0.500 s" in err
    assert "minicontainer:   cpu throttled   n/a (no cpu controller in cgroup v2 here)" in err
    assert "minicontainer:   pids peak       9" in err


def test_release_removes_the_cgroup_and_its_empty_parent(tmp_path, monkeypatch):
    monkeypatch.setattr(cgroups, "_mounts", (str(tmp_path), {}))  # tmp_path plays cgroup2
    parent = tmp_path / "minicontainer-x"
    (parent / "c1").mkdir(parents=True)
    (parent / "c2").mkdir()
    cgroups.release(str(parent / "c1"))
    assert not (parent / "c1").exists() and parent.exists()  # c2 still there
    cgroups.release(str(parent / "c2"))
    assert not parent.exists()
    cgroups.release(str(parent / "c2"))  # already gone: fine


def test_release_refuses_a_foreign_cgroup():
    with pytest.raises(ContainerError, match="not a cgroup under"):
        cgroups.release("/etc/system.slice")
    with pytest.raises(ContainerError, match="not a cgroup under"):
        cgroups.release_parent("/etc/system.slice")


def test_cgroupfs_errors_name_file_value_and_errno(tmp_path):
    with pytest.raises(cgroupfs.CgroupError) as e:
        cgroupfs.write(str(tmp_path / "nope" / "pids.max"), "5")
    assert str(e.value) == (f"cgroup: write '5' to {tmp_path}/nope/pids.max failed: "
                            "No such file or directory [ENOENT]")


def test_cgroupfs_keyed_and_single(tmp_path):
    (tmp_path / "k").write_text("a 1\nb x\nc 3\n")
    (tmp_path / "s").write_text("max\n")
    (tmp_path / "n").write_text("42\n")
    assert cgroupfs.keyed(str(tmp_path / "k")) == {"a": 1, "c": 3}
    assert cgroupfs.single(str(tmp_path / "s")) is None
    assert cgroupfs.single(str(tmp_path / "n")) == 42
