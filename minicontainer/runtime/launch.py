"""The launch sequence: one container, from spec to exit status, readable top to bottom.

    parent (the runtime)                      child (becomes the container)
    --------------------                      -----------------------------
    check the spec, gc dead containers
    record the container (state store)
    unshare(NEWPID), fork, setns back  ──>    PID 1 of a new pid namespace
                                              die if the runtime dies (PDEATHSIG)
                                              unshare mnt, uts, ipc, net, cgroup
                                              overlay root, /proc, /dev, /sys, volumes
                                              hostname, lo up, pivot_root, masked paths
                                              user, capabilities, no_new_privs
    read the error pipe  <──  one line  ──    on failure: kind + message, exit
                         <──   EOF     ──     on success: execve closes the pipe
    forward signals / relay the terminal
    wait, remove everything the container owned, return its status

The parent imports little on purpose (see docs/run.md, "Why it is fast"): every module
loaded here costs start-up time for every container.
"""
from __future__ import annotations

import os
import select

import _signal  # the C module under `signal`, which would import enum (~3 ms) on every run

from minicontainer.errors import BY_KIND, ContainerError
from minicontainer.kernel import syscalls
from minicontainer.runtime import cgroups, process, rootfs
from minicontainer.runtime.state import StateStore

# Signals the runtime passes on to the container, as docker does.
FORWARDED_SIGNALS = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT)


def run(spec, store: StateStore) -> int:
    """Run one container to completion; return its exit status (docker's convention)."""
    _check_spec(spec)
    store.collect_garbage()
    container = store.create(spec.name, spec.root.path, spec.process.args)
    try:
        return _launch(spec, container)
    finally:
        container.remove()


def _check_spec(spec) -> None:
    path = spec.root.path
    if not os.path.isdir(path):
        what = "is not a directory" if os.path.exists(path) else "does not exist"
        raise ContainerError(f"rootfs {path} {what}")
    if not spec.process.args:
        raise ContainerError("no command given")
    cgroups.check(spec)  # limits this host cannot enforce are refused here, before anything


def _launch(spec, container) -> int:
    container.cgroup = cgroups.create(spec, container)  # limits in place before the child joins
    hostname = spec.hostname or container.id[:12]
    winsize = _terminal_size() if spec.process.terminal else None
    err_r, err_w = os.pipe()      # child -> parent: why it failed; EOF at execve means success
    alive_r, alive_w = os.pipe()  # parent -> child: "go on" bytes; EOF tells the child we died
    steps = _outside_steps(spec, container)
    ready_r, ready_w = os.pipe() if steps else (None, None)  # child -> parent: "unshared"
    console = _ConsoleChannel() if spec.process.terminal else None

    pid = _fork(spec, container.cgroup)
    if pid == 0:
        os.close(err_r)
        os.close(alive_w)
        if ready_r is not None:
            os.close(ready_r)
        _child(spec, container, hostname, winsize, err_w, alive_r, ready_w, console)

    os.close(err_w)
    os.close(alive_r)
    try:
        if steps:
            os.close(ready_w)
            # The child has its namespaces now: do what must be done from outside them.
            if os.read(ready_r, 1) == b"r":
                for step in steps:
                    step(pid)
                os.write(alive_w, b"g")
            os.close(ready_r)
        master = console.receive_master() if console else None
        for sig in FORWARDED_SIGNALS:
            _signal.signal(sig, lambda signum, frame: _kill(pid, signum))
        failure = _read_all(err_r)
    except BaseException:
        _kill(pid, _signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    if failure:
        os.waitpid(pid, 0)
        kind, _, message = failure.decode(errors="replace").partition("\n")
        raise BY_KIND.get(kind, ContainerError)(message)

    if master is not None:
        from minicontainer.runtime.terminal import relay

        relay(master, pid, interactive=spec.process.interactive)
    status = _wait(pid)
    cgroups.report(spec, container.cgroup, status)
    os.close(alive_w)
    return status


def _outside_steps(spec, container) -> list:
    """What the runtime must do from outside, with the child's pid, after the child has
    unshared its namespaces and before it goes on (a veth into its network namespace, say).
    Each step is a callable taking that pid; none are needed for the default run, which
    then costs no extra round trip."""
    return []



def _fork(spec, cgroup: str | None) -> int:
    """fork(), through clone3: with a new pid namespace the child is its PID 1, and with a
    cgroup the child is born in it (joining one afterwards costs 10-20 ms: syscalls.fork)."""
    flags = syscalls.CLONE_NEWPID if "pid" in spec.namespaces else 0
    fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) if cgroup else -1
    try:
        return syscalls.fork(flags, fd)
    finally:
        if fd >= 0:
            os.close(fd)


def _child(spec, container, hostname, winsize, err_w, alive_r, ready_w, console) -> None:
    """Everything between fork and execve, in the order of docs/run.md. Never returns.

    After switch_root the host's Python library is out of reach: every module this function
    needs must already be imported by then."""
    try:
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, _signal.SIGKILL)
        if _parent_gone(alive_r):
            os._exit(125)
        if not spec.process.interactive and not spec.process.terminal:
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)

        flags = 0
        for ns in spec.namespaces:
            if ns != "pid":
                flags |= syscalls.NAMESPACE_FLAGS[ns]
        # Born in its cgroup (_fork), the child's cgroup namespace is rooted there.
        syscalls.unshare(flags)
        if ready_w is not None:
            os.write(ready_w, b"r")
            if os.read(alive_r, 1) != b"g":  # EOF: the runtime is gone or gave up
                os._exit(125)

        readonly = spec.root.readonly
        rootfs.make_mounts_private()
        root = rootfs.mount_root(spec, container)
        rootfs.mount_system(root, readonly)
        if console:
            from minicontainer.runtime import terminal  # before switch_root: see below
        slave = console.open_in(root, winsize) if console else None
        rootfs.mount_user_mounts(root, spec.mounts, readonly)
        if readonly:
            rootfs.make_root_readonly(root)
        if "uts" in spec.namespaces:
            syscalls.sethostname(hostname)
        if "net" in spec.namespaces:
            syscalls.loopback_up()
        rootfs.switch_root(root, spec.root.pivot_root)
        rootfs.mask_paths()

        user = process.resolve_user(spec.process.user)
        env = process.build_env(spec.process.env, hostname, user, spec.process.terminal)
        cwd = spec.process.cwd or "/"
        if not os.path.isdir(cwd):
            os.makedirs(cwd, 0o755)  # docker creates a missing working directory
        if slave is not None:
            terminal.become_session_leader(slave)
        process.drop_privileges(user, spec.security)
        os.chdir(cwd)
        path = process.find_executable(spec.process.args[0], env.get("PATH", ""))
        if spec.process.init:
            _run_as_init(path, spec.process.args, env, err_w, slave is not None)
        process.exec_command(path, spec.process.args, env)
    except ContainerError as e:
        _report(err_w, type(e).__name__, str(e))
    except OSError as e:
        _report(err_w, "ContainerError", str(e))
    except BaseException as e:  # a bug: still one line, and no traceback from the child
        _report(err_w, "ContainerError", f"{type(e).__name__}: {e}")
    os._exit(125)


def _run_as_init(path, args, env, err_w, has_terminal: bool) -> None:
    """--init: stay as PID 1, run the command as our child, forward signals and reap zombies
    (the loop is C, in kernel/_build.py). Never returns."""
    everything = _signal.valid_signals() - {_signal.SIGKILL, _signal.SIGSTOP}
    previous = _signal.pthread_sigmask(_signal.SIG_BLOCK, everything)
    child = os.fork()
    if child == 0:
        try:
            if has_terminal:  # the command's own process group owns the terminal
                os.setpgid(0, 0)
                os.tcsetpgrp(0, os.getpid())
            _signal.pthread_sigmask(_signal.SIG_SETMASK, previous)
            process.exec_command(path, args, env)
        except ContainerError as e:
            _report(err_w, type(e).__name__, str(e))
        os._exit(125)
    os.close(err_w)
    import prctl  # already loaded by kernel.caps: no import from the container's root

    prctl.set_name("init")
    prctl.set_proctitle("init")  # `ps` inside shows "init", not the runtime's command line
    os._exit(syscalls.init_supervise(child))


def _report(err_w: int, kind: str, message: str) -> None:
    try:
        os.write(err_w, f"{kind}\n{message}".encode())
    except OSError:
        pass


def _parent_gone(alive_r: int) -> bool:
    poller = select.poll()
    poller.register(alive_r, select.POLLIN)
    return bool(poller.poll(0))


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            os.close(fd)
            return b"".join(chunks)
        chunks.append(chunk)


def _wait(pid: int) -> int:
    _, status = os.waitpid(pid, 0)  # retried by Python on EINTR (PEP 475)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _terminal_size():
    import fcntl
    import termios

    for fd in (0, 1, 2):
        try:
            return fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
        except OSError:
            continue
    return None


class _ConsoleChannel:
    """-t: the child opens a pty in the container's own devpts and hands us the master end
    over a unix socket (SCM_RIGHTS), so `tty` inside names a device the container can see."""

    def __init__(self):
        import socket

        self.parent, self.child = socket.socketpair()

    def open_in(self, root: str, winsize) -> int:
        import socket

        from minicontainer.runtime.terminal import open_console

        master, slave = open_console(root, winsize)
        socket.send_fds(self.child, [b"m"], [master])
        os.close(master)
        self.child.close()
        return slave

    def receive_master(self) -> int:
        import socket

        self.child.close()
        _, fds, _, _ = socket.recv_fds(self.parent, 1, 1)
        self.parent.close()
        if not fds:
            return None  # the child failed before opening the console; the error pipe says why
        return fds[0]
