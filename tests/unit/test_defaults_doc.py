"""docs/defaults.md against the code: every table on the page is parsed and compared with
the constants the runtime uses, so the page cannot drift from what a container gets."""
import importlib.util
import os

import pytest

from minicontainer import spec
from minicontainer.kernel import caps, syscalls
from minicontainer.runtime import process, rootfs

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "defaults.md")
OPTIONS = {"ro": syscalls.MS_RDONLY, "nosuid": syscalls.MS_NOSUID, "nodev": syscalls.MS_NODEV,
           "noexec": syscalls.MS_NOEXEC, "strictatime": syscalls.MS_STRICTATIME}


def table(heading: str) -> list[list[str]]:
    """The rows (cells stripped, header and rule left out) of the first table under `## heading`."""
    text = open(DOC).read()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert rows[1].startswith("|---"), f"no table under {heading}"
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows[2:]]


def test_namespaces():
    rows = table("Namespaces")
    assert {ns for ns, _, new in rows if new == "yes"} == set(spec.DEFAULT_NAMESPACES)
    assert {ns for ns, _, _ in rows} == set(syscalls.NAMESPACE_FLAGS)
    for ns, flag, _ in rows:
        assert getattr(syscalls, flag) == syscalls.NAMESPACE_FLAGS[ns]


def test_mounts_in_order_with_flags_and_data():
    shown = []
    for dest, fstype, source, flags, data in table("Mounts"):
        bits = 0 if flags == "-" else sum(OPTIONS[f.strip()] for f in flags.split(","))
        shown.append((dest, source, fstype, bits, None if data == "-" else data))
    assert shown == list(rootfs.SYSTEM_MOUNTS)


def test_devices():
    rows = table("Devices")
    assert [(p, int(ma), int(mi)) for p, _, ma, mi, _, _ in rows] == \
        [(f"/dev/{n}", ma, mi) for n, ma, mi in rootfs.DEVICES]
    # what rootfs._fill_dev makes: character devices, 0666 (S_IFCHR | 0o666), root's
    assert {(kind, mode, owner) for _, kind, _, _, mode, owner in rows} == {("c", "0666", "0:0")}


def test_dev_links():
    assert [tuple(r) for r in table("/dev links")] == \
        [(f"/dev/{n}", target) for n, target in rootfs.DEV_LINKS]


def test_masked_and_readonly_paths():
    assert tuple(r[0] for r in table("Masked paths")) == rootfs.MASKED_PATHS
    assert tuple(r[0] for r in table("Read-only paths")) == rootfs.READONLY_PATHS


def test_capabilities():
    rows = table("Capabilities")
    assert {c[4:].lower() for c, _, mine, _ in rows if mine == "yes"} == set(caps.DEFAULT)
    docker = {c[4:].lower() for c, in_docker, _, _ in rows if in_docker == "yes"}
    assert len(docker) == 14  # moby's oci/caps/defaults.go
    # what minicontainer withholds of docker's set is said, each with its reason
    withheld = [(c, why) for c, in_docker, mine, why in rows if in_docker == "yes" and mine == "no"]
    assert {c[4:].lower() for c, _ in withheld} == docker - set(caps.DEFAULT)
    assert all(why != "-" for _, why in withheld)
    assert all(c[4:].lower() in caps.all_names() for c, *_ in rows)


def test_seccomp_says_what_the_code_has():
    rows = table("Seccomp")
    if importlib.util.find_spec("minicontainer.runtime.seccomp") is None:
        assert rows == [["none yet", "-"]]
        return
    import errno
    import json

    from minicontainer.runtime import seccomp

    assert spec.Security().seccomp == "default"
    [(name, path, action, allowed)] = rows
    top = os.path.join(os.path.dirname(DOC), "..")
    assert name == "default"
    assert os.path.samefile(os.path.join(top, path), seccomp.DEFAULT_PROFILE)
    profile = json.load(open(seccomp.DEFAULT_PROFILE))
    assert action == f"{profile['defaultAction']} ({errno.errorcode[profile['defaultErrnoRet']]})"
    assert int(allowed.split(",")[0]) == len({n for rule in profile["syscalls"]
                                               if rule["action"] == "SCMP_ACT_ALLOW"
                                               for n in rule["names"]})


def test_rlimits():
    assert spec.Process(args=["x"]).rlimits == []
    assert table("Rlimits") == [["(none set)", "inherited", "inherited"]]


def test_environment(monkeypatch):
    rows = dict(table("Environment"))
    assert set(rows) == {"PATH", "HOSTNAME", "HOME", "TERM"}
    user = process.User(1000, 1000, [1000], "/home/u")
    env = process.build_env({}, "box", user, terminal=True)
    assert set(env) == set(rows)
    assert rows["PATH"] == env["PATH"] == spec.DEFAULT_PATH
    assert rows["TERM"].split(",")[0] == env["TERM"]
    assert env["HOSTNAME"] == "box" and env["HOME"] == "/home/u"
    assert "TERM" not in process.build_env({}, "box", user, terminal=False)


@pytest.mark.parametrize("page", ["README.md", "docs/run.md"])
def test_linked(page):
    assert "defaults.md" in open(os.path.join(os.path.dirname(DOC), "..", page)).read()
