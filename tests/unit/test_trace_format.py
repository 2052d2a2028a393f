"""--trace's output, through the syscall recorder: names for flags and constants, short ids,
the width limit, phase markers, and the json form (kernel/trace.py, kernel/syscalls.py)."""
import json
import os
import subprocess
import sys

import pytest

from minicontainer.kernel import syscalls, trace
from minicontainer.kernel.syscalls import (
    CLONE_NEWNET, CLONE_NEWPID, CLOSE_RANGE_CLOEXEC, MS_NODEV, MS_NOSUID, MS_REC, MS_SLAVE,
)

CID = "0123456789abcdef" * 4  # a container id: 64 hex digits


@pytest.fixture
def traced(capsys):
    """Trace on (text) for the test, inside the recorder; yields a function that returns the
    lines written since, without their `[trace PID] ` prefix."""
    saved = (trace.enabled, trace.form, trace.phase_name, trace._state_root)
    trace.set_enabled(True)
    prefix = f"[trace {os.getpid()}] "

    def lines():
        err = capsys.readouterr().err.splitlines()
        assert all(line.startswith(prefix) for line in err), err
        return [line[len(prefix):] for line in err]

    try:
        with syscalls.recording():
            yield lines
    finally:
        trace.enabled, trace.form, trace.phase_name, trace._state_root = saved


def test_flags_and_constants_are_spelled_by_name(traced, tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        syscalls.fork(CLONE_NEWPID, fd)
    finally:
        os.close(fd)
    syscalls.prctl(syscalls.PR_SET_PDEATHSIG, 9)
    syscalls.prctl(syscalls.PR_SET_PDEATHSIG, 0)
    syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL)
    syscalls.setns(5, CLONE_NEWNET)
    syscalls.openat2(3, "proc", os.O_PATH | os.O_CLOEXEC,
                     syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_MAGICLINKS)
    syscalls.openat2(3, "proc/sys/x", os.O_WRONLY | os.O_CLOEXEC, syscalls.RESOLVE_NO_SYMLINKS)
    syscalls.open_tree_clone("/proc/self/fd/6", True)
    syscalls.mount_setattr(7, syscalls.MOUNT_ATTR_RDONLY | syscalls.MOUNT_ATTR_NOSUID)
    syscalls.mount_setattr(7, syscalls.MOUNT_ATTR_NOATIME, syscalls.MOUNT_ATTR__ATIME,
                           MS_SLAVE | MS_REC, recursive=False)
    syscalls.close_range(3, flags=CLOSE_RANGE_CLOEXEC)
    syscalls.mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | 0x4000000)
    assert traced() == [
        f"clone3(CLONE_NEWPID|CLONE_INTO_CGROUP, cgroup={tmp_path}) = 0",
        "prctl(PR_SET_PDEATHSIG, SIGKILL) = 0",
        "prctl(PR_SET_PDEATHSIG, 0) = 0",
        "prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL) = 0",
        "setns(5, CLONE_NEWNET) = 0",
        "openat2(3, 'proc', O_CLOEXEC|O_PATH, RESOLVE_NO_MAGICLINKS|RESOLVE_IN_ROOT) = 0",
        "openat2(3, 'proc/sys/x', O_WRONLY|O_CLOEXEC, RESOLVE_NO_SYMLINKS) = 0",
        "open_tree('/proc/self/fd/6', AT_RECURSIVE|OPEN_TREE_CLONE) = 0",
        "mount_setattr(7, AT_EMPTY_PATH|AT_RECURSIVE, MOUNT_ATTR_RDONLY|MOUNT_ATTR_NOSUID, 0, 0) = 0",
        # a mask of several bits is named whole, and only then
        "mount_setattr(7, AT_EMPTY_PATH, MOUNT_ATTR_NOATIME, MOUNT_ATTR__ATIME, MS_REC|MS_SLAVE) = 0",
        "close_range(3, 0xffffffff, CLOSE_RANGE_CLOEXEC) = 0",
        # a bit without a name stays visible as a number
        "mount('proc', '/proc', 'proc', MS_NOSUID|MS_NODEV|0x4000000, NULL) = 0",
    ]


def test_a_failed_call_shows_its_errno_by_name(capsys):
    saved = trace.enabled
    trace.set_enabled(True)
    try:
        with syscalls.recording(syscalls.Recorder(errors={"umount2": 22})):
            with pytest.raises(OSError):
                syscalls.umount2(".", syscalls.MNT_DETACH)
    finally:
        trace.set_enabled(saved)
    assert capsys.readouterr().err.endswith("] umount2('.', MNT_DETACH) = -1 EINVAL\n")


def test_ids_are_short_and_the_state_root_is_said_once(traced):
    trace.set_state_root("/run/minicontainer-test-x/")
    syscalls.mount("overlay", f"/run/minicontainer-test-x/containers/{CID}/rootfs", "overlay")
    syscalls.sethostname(CID[:12])
    trace.note(f"rmdir /sys/fs/cgroup/unified/minicontainer/{CID}")
    assert traced() == [
        "state root /run/minicontainer-test-x/ (shown as …); container ids shown by their "
        "first 12 characters",
        "mount('overlay', '…/containers/0123456789ab/rootfs', 'overlay', 0, NULL) = 0",
        "sethostname('0123456789ab') = 0",
        "rmdir /sys/fs/cgroup/unified/minicontainer/0123456789ab",
    ]


def test_hex_runs_of_other_lengths_are_left_alone():
    assert trace.short_ids("a/" + CID + "0/b") == "a/" + CID + "0/b"  # 65 digits: not an id
    assert trace.short_ids("x" + CID) == "x0123456789ab"
    assert trace.short_ids("deadbeef " + CID) == "deadbeef 0123456789ab"


def test_no_line_is_longer_than_the_width_and_both_ends_stay(traced):
    lower = "/very/long/image/" + "layer/" * 20 + "rootfs"
    options = f"lowerdir={lower},upperdir=/s/upper,workdir=/s/work,volatile"
    syscalls.mount("overlay", "/s/rootfs", "overlay", 0, options)
    trace.note("x" * 300 + "END")
    mount, note = traced()
    assert len(f"[trace {os.getpid()}] {mount}") == trace.WIDTH
    assert mount.startswith("mount('overlay', '/s/rootfs', 'overlay', 0, 'lowerdir=/very/long")
    assert mount.endswith("workdir=/s/work,volatile') = 0") and "…" in mount
    assert len(f"[trace {os.getpid()}] {note}") == trace.WIDTH
    assert note.startswith("xxx") and note.endswith("xEND")


def test_phase_markers(traced):
    for name in trace.PHASES:
        trace.phase(name)
    assert traced() == [f"---- {name} ----" for name in trace.PHASES]


def test_json_one_object_per_line_nothing_shortened(capsys):
    saved = (trace.enabled, trace.form, trace.phase_name, trace._state_root)
    trace.set_enabled(True, "json")
    trace.phase_name = None  # what another test's launch left
    try:
        with syscalls.recording(syscalls.Recorder(errors={"pivot_root": 22})):
            trace.set_state_root("/run/mc")
            trace.phase("rootfs")
            syscalls.mount("overlay", f"/run/mc/containers/{CID}/rootfs", "overlay", MS_NOSUID,
                           "x" * 400)
            with pytest.raises(OSError):
                syscalls.pivot_root(".", ".")
            syscalls.narrate("execve", ("/bin/true", ["/bin/true"]))
    finally:
        trace.enabled, trace.form, trace.phase_name, trace._state_root = saved
    objects = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    pid = os.getpid()
    assert objects == [
        {"pid": pid, "phase": None, "note": "state root /run/mc"},
        {"pid": pid, "phase": "rootfs"},
        {"pid": pid, "phase": "rootfs", "call": "mount",
         "args": ["overlay", f"/run/mc/containers/{CID}/rootfs", "overlay", "MS_NOSUID", "x" * 400],
         "result": 0, "errno": None},
        {"pid": pid, "phase": "rootfs", "call": "pivot_root", "args": [".", "."],
         "result": -1, "errno": "EINVAL"},
        {"pid": pid, "phase": "rootfs", "call": "execve",
         "args": ["/bin/true", ["/bin/true"]], "result": None, "errno": None},
    ]


def test_unknown_form_is_refused():
    with pytest.raises(ValueError, match="unknown trace form 'xml'"):
        trace.set_enabled(True, "xml")
    assert not trace.enabled


def test_text_tracing_imports_nothing():
    """json stays off the run path even with --trace: only --trace=json loads it."""
    code = ("import sys\n"
            "from minicontainer.kernel import syscalls, trace\n"
            "before = set(sys.modules)\n"
            "trace.set_enabled(True)\n"
            "with syscalls.recording(syscalls.Recorder(errors={'unshare': 1})):\n"
            "    trace.set_state_root('/run/x'); trace.phase('rootfs')\n"
            "    try: syscalls.unshare(0)\n"
            "    except OSError: pass\n"
            "print(sorted(set(sys.modules) - before), 'json' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "[] False\n"
