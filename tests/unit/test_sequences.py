"""Launch and exec sequences through the syscall recorder (kernel/syscalls.py `recording`):
no call reaches the kernel, each is recorded as (name, args), so these tests assert exactly
which mounts, namespaces and prctls a step issues, with which flags, in which order.
File-system work that is not a syscall wrapper of ours (mkdir, symlink) happens for real in
a temp directory; os.mknod, which needs root, is recorded by the `calls` fixture too."""
from __future__ import annotations

import os

import _signal
import pytest

from minicontainer.errors import ContainerError
from minicontainer.kernel import syscalls, trace
from minicontainer.kernel.syscalls import (
    CLONE_NEWCGROUP, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUTS,
    MNT_DETACH, MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC,
    MS_SLAVE, MS_STRICTATIME, PR_SET_PDEATHSIG, SyscallError)
from minicontainer.runtime import exec as exec_, launch, plan, process, protocol, rootfs
from minicontainer.spec import ContainerSpec, Mount, Process, Root, Security

NNE = MS_NOSUID | MS_NODEV | MS_NOEXEC


class PathRecorder(syscalls.Recorder):
    """Mounts are made through descriptors (/proc/self/fd/N, rootfs.resolve): record them by
    the path the descriptor names, so that a test reads "/tmp/.../root/proc". openat2 (O_PATH,
    it only looks) is made for real; open_tree gets a stand-in descriptor, recorded as
    ("tree", SOURCE) wherever it is passed on."""

    def __init__(self, **kw):
        super().__init__(passthrough={"openat2"}, **kw)
        self.trees: dict[int, str] = {}

    def call(self, name, args):
        if name == "open_tree":
            fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
            self.trees[fd] = _named(args[0])
            self.calls.append((name, (_named(args[0]),) + args[1:]))
            return fd, 0
        if name == "mount":
            args = tuple(_named(a) if isinstance(a, str) else a for a in args)
        elif name in ("move_mount", "mount_setattr"):
            args = (self._fd(args[0]),) + tuple(
                self._fd(a) if name == "move_mount" else a for a in args[1:])
        return super().call(name, args)

    def _fd(self, fd):
        return ("tree", self.trees[fd]) if fd in self.trees else os.readlink(f"/proc/self/fd/{fd}")


def _named(path: str) -> str:
    return os.readlink(path) if path.startswith("/proc/self/fd/") else path


@pytest.fixture
def calls(monkeypatch):
    """Record every syscall, and os.mknod (devices need root) into the same list."""
    with syscalls.recording(PathRecorder(results={"clone3": 4242})) as recorded:
        def mknod(path, mode, dev, *, dir_fd=None):
            where = os.readlink(f"/proc/self/fd/{dir_fd}") + "/" if dir_fd is not None else ""
            recorded.append(("mknod", (where + path, mode, os.major(dev), os.minor(dev))))

        monkeypatch.setattr(os, "mknod", mknod)
        yield recorded


def mounts(calls):
    """The calls that change mounts, without the lookups (openat2) between them."""
    return [(name, args) if name != "mount" else args for name, args in calls
            if name not in ("openat2", "mknod")]


def test_nothing_reaches_the_kernel_while_recording(calls):
    syscalls.unshare(CLONE_NEWNS)  # would need CAP_SYS_ADMIN
    syscalls.mount("tmpfs", "/", "tmpfs", MS_RDONLY)
    assert calls == [("unshare", (CLONE_NEWNS,)), ("mount", ("tmpfs", "/", "tmpfs", MS_RDONLY, None))]
    assert syscalls.fork(CLONE_NEWPID) == 4242


def test_a_scripted_failure_raises_as_the_kernel_would():
    with syscalls.recording(syscalls.Recorder(errors={"pivot_root": 22})):
        with pytest.raises(SyscallError) as e:
            syscalls.pivot_root(".", ".")
    assert e.value.errno == 22 and e.value.call == "pivot_root"
    assert str(e.value) == "pivot_root('.', '.') failed: Invalid argument [EINVAL]"


def test_recording_does_not_nest_and_ends():
    with syscalls.recording():
        with pytest.raises(RuntimeError):
            syscalls.recording().__enter__()
    assert syscalls._recorder is None


def test_the_trace_spells_flags_out(calls, capsys):
    trace.set_enabled(True)
    try:
        syscalls.mount(None, "/", None, MS_REC | MS_SLAVE)
        syscalls.prctl(PR_SET_PDEATHSIG, 9)
        syscalls.unshare(CLONE_NEWNS | CLONE_NEWNET | 0x1)
    finally:
        trace.set_enabled(False)
    pid = os.getpid()
    assert capsys.readouterr().err.splitlines() == [
        f"[trace {pid}] mount(NULL, '/', NULL, MS_REC|MS_SLAVE, NULL) = 0",
        f"[trace {pid}] prctl(PR_SET_PDEATHSIG, SIGKILL) = 0",
        f"[trace {pid}] unshare(CLONE_NEWNS|CLONE_NEWNET|0x1) = 0"]


def test_no_trace_when_off(calls, capsys):
    syscalls.unshare(CLONE_NEWNS)
    syscalls.note("execve")
    assert capsys.readouterr().err == ""


# --- the root filesystem -------------------------------------------------------------------

def test_mounts_are_made_private_as_runc_does(calls):
    rootfs.make_mounts_private()
    assert calls == [("mount", (None, "/", None, MS_REC | MS_SLAVE, None))]


SYSTEM = [
    ("proc", "/proc", "proc", NNE, None),
    ("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k"),
    ("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"),
    ("shm", "/dev/shm", "tmpfs", NNE, "mode=1777,size=65536k"),
    ("mqueue", "/dev/mqueue", "mqueue", NNE, None),
    ("sysfs", "/sys", "sysfs", NNE | MS_RDONLY, None),
    ("cgroup2", "/sys/fs/cgroup", "cgroup2", NNE | MS_RDONLY, None),
]


def system_mounts(root):
    return [(source, root + target, fstype, flags, data)
            for source, target, fstype, flags, data in SYSTEM]


def test_mount_system_issues_these_mounts_in_this_order(calls, tmp_path):
    root = str(tmp_path)
    (tmp_path / "sys" / "fs" / "cgroup").mkdir(parents=True)  # sysfs would bring it
    fd = rootfs.open_root(root)
    try:
        rootfs.mount_system(fd)
    finally:
        os.close(fd)
    assert mounts(calls) == system_mounts(root)
    nodes = [args for name, args in calls if name == "mknod"]
    assert nodes == [(f"{root}/dev/{n}", 0o20666, major, minor)
                     for n, major, minor in rootfs.DEVICES]
    # the device nodes come after /dev's tmpfs and before devpts
    order = [a[2] if n == "mount" else n for n, a in calls if n != "openat2"]
    assert order.index("tmpfs") < order.index("mknod") < order.index("devpts")
    assert os.readlink(f"{root}/dev/ptmx") == "pts/ptmx"
    assert os.readlink(f"{root}/dev/fd") == "/proc/self/fd"


def test_mount_points_are_resolved_inside_the_root(calls, tmp_path):
    """An image whose /proc is a symlink to a host path gets its proc mounted inside."""
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(str(tmp_path / "host-dir"), root / "proc")
    fd = rootfs.open_root(str(root))
    try:
        rootfs._mount_at(fd, "/proc", "dir", "proc", "proc", NNE)
    finally:
        os.close(fd)
    assert mounts(calls) == [("proc", f"{root}{tmp_path}/host-dir", "proc", NNE, None)]
    assert not (tmp_path / "host-dir").exists()


class FakeContainer:
    def __init__(self, d):
        self.id = "c0ffee" * 4
        self.dir = str(d)
        self.rootfs, self.upper, self.work = f"{d}/rootfs", f"{d}/upper", f"{d}/work"
        self.cgroup = None


def test_the_root_is_an_overlay_with_our_upper_layer(calls, tmp_path):
    c = FakeContainer(tmp_path)
    spec = ContainerSpec(root=Root(path="/images/r"), process=Process(args=["x"]))
    assert rootfs.mount_root(spec, c) == c.rootfs
    assert mounts(calls) == [("overlay", c.rootfs, "overlay", 0,
                              f"lowerdir=/images/r,upperdir={c.upper},workdir={c.work},volatile")]


def test_a_read_only_run_root_is_a_bind_made_read_only_all_the_way_down(calls, tmp_path):
    c = FakeContainer(tmp_path)
    os.mkdir(c.rootfs)
    spec = ContainerSpec(root=Root(path="/images/r", readonly=True), process=Process(args=["x"]))
    rootfs.mount_root(spec, c)
    assert mounts(calls) == [("/images/r", c.rootfs, None, MS_BIND | MS_REC, None),
                             ("mount_setattr", (c.rootfs, 0x1000 | syscalls.AT_RECURSIVE,
                                                syscalls.MOUNT_ATTR_RDONLY, 0, 0))]


def test_user_mounts_binds_through_detached_trees_and_tmpfs_flags(calls, tmp_path):
    root, src = tmp_path / "root", tmp_path / "src"
    root.mkdir()
    src.mkdir()
    (src / "file").write_text("x")
    fd = rootfs.open_root(str(root))
    try:
        rootfs.mount_user_mounts(fd, [
            Mount(kind="bind", source=str(src), target="/data", readonly=True),
            Mount(kind="bind", source=str(src / "file"), target="/etc/one"),
            Mount(kind="tmpfs", source="tmpfs", target="/scratch", options="size=1m",
                  flags=MS_NOSUID | MS_NODEV),
        ])
    finally:
        os.close(fd)
    tree, one = ("tree", str(src)), ("tree", str(src / "file"))
    recursive = syscalls.OPEN_TREE_CLONE | syscalls.AT_RECURSIVE
    assert mounts(calls) == [
        ("open_tree", (str(src), recursive)),
        ("mount_setattr", (tree, 0x1000 | syscalls.AT_RECURSIVE, syscalls.MOUNT_ATTR_RDONLY, 0, 0)),
        ("move_mount", (tree, f"{root}/data")),
        ("open_tree", (str(src / "file"), recursive)),
        ("move_mount", (one, f"{root}/etc/one")),
        ("tmpfs", f"{root}/scratch", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m"),
    ]
    assert (root / "etc" / "one").is_file()  # a file mount point is made for a file


def test_a_missing_volume_source_mounts_nothing(calls, tmp_path):
    fd = rootfs.open_root(str(tmp_path))
    try:
        with pytest.raises(ContainerError, match="volume source /nonexistent does not exist"):
            rootfs.mount_user_mounts(fd, [Mount(kind="bind", source="/nonexistent", target="/x")])
    finally:
        os.close(fd)
    assert calls == []


def test_switch_root_pivots_onto_itself_and_detaches_the_old_root(calls, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # switch_root chdirs for real: restored after the test
    rootfs.switch_root(str(tmp_path), use_pivot_root=True)
    assert calls == [("pivot_root", (".", ".")), ("umount2", (".", MNT_DETACH))]


def test_masked_paths_files_get_dev_null_directories_an_empty_tmpfs(calls, tmp_path, monkeypatch):
    # mask_paths works on the container's / after switch_root: here, the host's, read only
    masked = [p for p in ("/proc/kcore", "/proc/scsi", "/proc/acpi") if os.path.exists(p)]
    rootfs.mask_paths(masked + ["/no/such/path"], ["/proc/sys"])
    expected = [("/dev/null", p, None, MS_BIND, None) if os.path.isfile(p) else
                ("tmpfs", p, "tmpfs", MS_RDONLY, "size=0") for p in masked]
    assert mounts(calls) == expected + [
        ("open_tree", ("/proc/sys", syscalls.OPEN_TREE_CLONE | syscalls.AT_RECURSIVE)),
        ("mount_setattr", (("tree", "/proc/sys"), 0x1000 | syscalls.AT_RECURSIVE,
                           syscalls.MOUNT_ATTR_RDONLY, 0, 0)),
        ("move_mount", (("tree", "/proc/sys"), "/proc/sys")),
    ]


# --- the launch: fork and the child up to dropping privileges ------------------------------

def test_fork_makes_a_new_pid_namespace_and_is_born_in_the_cgroup(calls, tmp_path):
    spec = ContainerSpec(root=Root(path="/r"), process=Process(args=["x"]))
    assert launch._fork(spec, str(tmp_path)) == 4242
    (name, (flags, fd)), = calls
    assert name == "clone3" and flags == CLONE_NEWPID and fd >= 0
    calls.clear()
    spec.namespaces = ("mnt",)
    launch._fork(spec, None)
    assert calls == [("clone3", (0, -1))]


class Stop(Exception):
    pass


@pytest.fixture
def child_harness(monkeypatch):
    """Run a child function in this process: the step that would drop privileges stops it
    (it is python-prctl, outside the recorder), and os._exit raises instead of exiting."""
    def stop(user, security):
        raise ContainerError(f"stopped before dropping privileges (uid {user.uid})")

    def exit_(code):
        raise Stop(code)

    monkeypatch.setattr(process, "drop_privileges", stop)
    monkeypatch.setattr(os, "_exit", exit_)
    handler = _signal.getsignal(_signal.SIGINT)
    yield
    _signal.signal(_signal.SIGINT, handler)


def test_the_child_sequence_from_fork_to_privileges(calls, child_harness, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = FakeContainer(tmp_path)
    os.makedirs(c.rootfs + "/sys/fs/cgroup")  # what sysfs would bring
    spec = ContainerSpec(root=Root(path="/images/r"),
                         process=Process(args=["/bin/true"], user="0", interactive=True),
                         mounts=[Mount(kind="tmpfs", source="tmpfs", target="/scratch", options="mode=1777")],
                         masked_paths=(), readonly_paths=(),
                         security=Security(capabilities=frozenset()))
    channel = protocol.Channel()
    with pytest.raises(Stop) as stopped:
        launch._child(plan.Context(spec, c, channel), launch.FOREGROUND,
                      plan.plan(spec, c, "box"))
    assert stopped.value.args == (125,)
    protocol._close(channel.alive_w, channel.alive_r, channel.err_w)  # what its exit would close
    assert protocol.read_all(channel.err_r) == \
        b"ContainerError\nstopped before dropping privileges (uid 0)"
    root = c.rootfs
    assert mounts(calls) == [
        ("prctl", (PR_SET_PDEATHSIG, 9, 0)),
        ("prctl", (syscalls.PR_SET_DUMPABLE, 0, 0)),
        ("unshare", (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWCGROUP,)),
        ("sethostname", ("box",)),
        ("ioctl", ("lo", "SIOCSIFFLAGS", "IFF_UP")),
        (None, "/", None, MS_REC | MS_SLAVE, None),
        ("overlay", root, "overlay", 0,
         f"lowerdir=/images/r,upperdir={c.upper},workdir={c.work},volatile"),
        *system_mounts(root),
        ("tmpfs", f"{root}/scratch", "tmpfs", 0, "mode=1777"),
        ("pivot_root", (".", ".")),
        ("umount2", (".", MNT_DETACH)),
        ("keyctl(JOIN_SESSION_KEYRING)", (None,)),  # a session keyring of its own
    ]


def test_a_child_without_its_runtime_stops_before_anything(calls, child_harness):
    spec = ContainerSpec(root=Root(path="/r"), process=Process(args=["x"], interactive=True))
    channel = protocol.Channel()
    channel.child_side()  # the runtime is gone: the alive pipe's other end with it
    with pytest.raises(Stop):
        launch._child(plan.Context(spec, None, channel), launch.FOREGROUND, [])
    assert calls[0] == ("prctl", (PR_SET_PDEATHSIG, 9, 0))
    assert "unshare" not in [name for name, _ in calls]
    protocol._close(channel.alive_r, channel.err_w)


@pytest.fixture
def exec_harness(child_harness, monkeypatch, tmp_path):
    """exec's intermediate chroots into the container's root after joining: stopped there
    (a chroot of the test process must never happen); it names itself through python-prctl,
    which is not ours to record: left out."""
    import prctl

    def chroot(path):
        raise ContainerError(f"stopped at chroot({path!r})")

    monkeypatch.setattr(os, "chroot", chroot)
    monkeypatch.setattr(prctl, "set_proctitle", lambda title: None)
    monkeypatch.chdir(tmp_path)  # it fchdir()s into the root it is given
    return os.open(str(tmp_path), os.O_PATH | os.O_DIRECTORY)


def run_intermediate(namespaces, root):
    channel = protocol.Channel(alive=False)
    pid_r, pid_w = os.pipe()
    with pytest.raises(Stop):
        exec_._intermediate(Process(args=["/bin/true"], user="0", interactive=True),
                            Security(capabilities=frozenset()), namespaces, root, "box", None,
                            channel, pid_w)
    for fd in (channel.err_w, pid_w, pid_r, root):
        os.close(fd)
    return protocol.read_all(channel.err_r)


def test_exec_joins_namespaces_mount_last_and_pid_later(calls, exec_harness):
    fds = {ns: os.open("/dev/null", os.O_RDONLY)
           for ns in ("pid", "mnt", "net", "ipc", "uts", "cgroup")}
    assert run_intermediate(fds, exec_harness) == b"ContainerError\nstopped at chroot('.')"
    assert calls == [("prctl", (syscalls.PR_SET_DUMPABLE, 0, 0)),
                     ("setns", (fds["cgroup"], CLONE_NEWCGROUP)),
                     ("setns", (fds["ipc"], CLONE_NEWIPC)), ("setns", (fds["uts"], CLONE_NEWUTS)),
                     ("setns", (fds["net"], CLONE_NEWNET)), ("setns", (fds["mnt"], CLONE_NEWNS))]
    for fd in fds.values():
        os.close(fd)


def test_exec_joins_only_what_differs(calls, exec_harness):
    fds = {"net": os.open("/dev/null", os.O_RDONLY)}
    run_intermediate(fds, exec_harness)
    assert calls == [("prctl", (syscalls.PR_SET_DUMPABLE, 0, 0)),
                     ("setns", (fds["net"], CLONE_NEWNET))]
    os.close(fds["net"])


PRELOAD = """
import sys
from minicontainer.runtime import process
from minicontainer.spec import Process
process.preload(Process(args=["x"], rlimits=eval(sys.argv[1]), terminal=sys.argv[2] == "1"))
print(sorted(m for m in ("prctl", "resource", "minicontainer.runtime.terminal") if m in sys.modules))
"""


def test_preload_loads_what_the_child_will_need_and_no_more():
    import subprocess
    import sys

    def loaded(rlimits, terminal):
        out = subprocess.run([sys.executable, "-S", "-c", PRELOAD, rlimits, terminal],
                             capture_output=True, text=True,
                             env={"PYTHONPATH": os.pathsep.join(sys.path)})
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert loaded("[]", "0") == "[]"  # python-prctl only for --init, which names itself
    assert loaded("[(7, 1, 1)]", "1") == "['minicontainer.runtime.terminal', 'resource']"
