"""exec: run one more process inside a running container.

    parent (the runtime)                        child (joins the container)
    setns(pid namespace of the container)
    clone3 into the container's cgroup   ──>    born in its pid namespace and cgroup
                                                setns: cgroup, ipc, uts, net, then mnt,
                                                chroot to the container's root (its first
                                                process's /proc/PID/root)
                                                -t: a pty from the container's devpts
                                                user, env, rlimits, caps, no_new_privs
    read the error pipe  <── one line / EOF ──  execve
    wait and relay (or, detached, leave it to whoever reaps orphans: conmon for podman)

The mount namespace is joined last: after it the host's files (Python's own modules too)
are out of reach, so everything the child needs is imported before.
"""
from __future__ import annotations

import os

import _signal

from minicontainer.errors import BY_KIND, ContainerError
from minicontainer.kernel import caps, syscalls  # noqa: F401  caps: prctl, before setns(mnt)
from minicontainer.runtime import process, terminal
from minicontainer.runtime.launch import FORWARDED_SIGNALS, _read_all, _report, _wait
from minicontainer.runtime.state import signal_process as _kill

# The order of setns: mnt last (see above); pid is joined by the parent, before fork.
JOIN_ORDER = ("cgroup", "ipc", "uts", "net", "mnt")


def exec_in(container, proc, security, detach: bool = False, pid_file: str | None = None,
            console_socket: str | None = None) -> int:
    """Run `proc` (a spec.Process) in `container` with `security`; returns its exit status,
    or 0 once it runs when detached."""
    status = container.status()
    if status not in ("created", "running"):
        raise ContainerError(f'cannot exec in container "{container.id}": it is {status}')
    pid = container.record["pid"]
    namespaces = _namespace_fds(pid)
    # The container's root as its first process has it: after chroot (create --no-pivot, run
    # --chroot) the mount namespace's own root is still the host's tree, and setns(mnt)
    # alone would land the new process there.
    root_fd = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    cgroup = next((v for k, v in container.owned() if k == "cgroup"), None)
    cgroup_fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) \
        if cgroup and os.path.isdir(cgroup) else -1
    hostname = (container.record.get("exec") or {}).get("hostname") or container.id[:12]
    winsize = terminal.terminal_size() if proc.terminal and not console_socket else None
    channel = terminal.MasterChannel() if proc.terminal else None
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    if "pid" in namespaces:
        syscalls.setns(namespaces.pop("pid"), syscalls.CLONE_NEWPID)  # for our children
    child = syscalls.fork(0, cgroup_fd)
    if child == 0:
        os.close(err_r)
        _child(proc, security, namespaces, root_fd, hostname, winsize, err_w, channel)
    os.close(err_w)
    for fd in [*namespaces.values(), root_fd] + ([cgroup_fd] if cgroup_fd >= 0 else []):
        os.close(fd)
    try:
        master = channel.receive() if channel else None
        failure = _read_all(err_r)
    except BaseException:
        _kill(child, _signal.SIGKILL)
        os.waitpid(child, 0)
        raise
    if failure:
        os.waitpid(child, 0)
        kind, _, message = failure.decode(errors="replace").partition("\n")
        raise BY_KIND.get(kind, ContainerError)(message)
    if pid_file:
        from minicontainer.runtime.launch import _write_file

        _write_file(pid_file, str(child))
    if master is not None and console_socket:
        terminal.send_console(console_socket, master)
        master = None
    if detach:
        return 0
    if master is not None:
        terminal.relay(master, child, interactive=proc.interactive)
    else:
        for sig in FORWARDED_SIGNALS:
            _signal.signal(sig, lambda signum, frame: _kill(child, signum))
    return _wait(child)


def _namespace_fds(pid: int) -> dict[str, int]:
    """fds of the container's namespaces that differ from ours (a container sharing the
    host's network, say, has nothing to join there)."""
    fds = {}
    for ns in ("pid", *JOIN_ORDER):
        try:
            if os.stat(f"/proc/{pid}/ns/{ns}").st_ino == os.stat(f"/proc/self/ns/{ns}").st_ino:
                continue
            fds[ns] = os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            for fd in fds.values():
                os.close(fd)
            raise ContainerError(f"the container's process {pid} is gone") from None
    return fds


def _child(proc, security, namespaces, root_fd, hostname, winsize, err_w, channel) -> None:
    """Never returns: joins, drops privileges, execs (or reports why not and exits)."""
    try:
        for ns in JOIN_ORDER:
            if ns in namespaces:
                syscalls.setns(namespaces[ns], syscalls.NAMESPACE_FLAGS[ns])
                os.close(namespaces[ns])
        os.fchdir(root_fd)  # into the container's root (a no-op change after pivot_root)
        os.chroot(".")
        os.close(root_fd)
        if not proc.interactive and not proc.terminal:
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
        slave = None
        if channel:
            master, slave = terminal.open_pty("/dev/pts/ptmx", winsize)
            channel.send(master)
        user = process.resolve_user(proc.user)
        env = process.build_env(proc.env, hostname, user, proc.terminal)
        if slave is not None:
            terminal.become_session_leader(slave)
        if proc.rlimits:
            process.set_rlimits(proc.rlimits)
        if proc.umask is not None:
            os.umask(proc.umask)
        process.drop_privileges(user, security)
        try:
            os.chdir(proc.cwd or "/")
        except OSError as e:
            raise ContainerError(f"cannot change to the working directory {proc.cwd}: "
                                 f"{e.strerror}") from None
        path = process.find_executable(proc.args[0], env.get("PATH", ""))
        process.exec_command(path, proc.args, env)
    except ContainerError as e:
        _report(err_w, type(e).__name__, str(e))
        os._exit(e.exit_code)
    except BaseException as e:
        _report(err_w, "ContainerError", f"{type(e).__name__}: {e}" if not
                isinstance(e, OSError) else str(e))
    os._exit(125)
