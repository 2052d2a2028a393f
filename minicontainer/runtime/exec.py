"""exec: run one more process inside a running container.

A process born in the container's pid namespace can be seen from inside at once, and
/proc/PID/root, cwd, exe and fd/ of it lead wherever it stands: if it still had the host's
root, a working directory or a descriptor on the host, a container process could walk
through them (runc's CVE-2019-5736 started so). So the process is made in two steps, as runc
does, and is born with nothing of the host but the interpreter's image (docs/security.md):

    runtime (host)                 intermediate (host pid namespace:  the process (container's
                                   not visible from the container)    pid namespace: visible)
    open the container's namespaces and its root; check it is still the same container
    clone3 into its cgroup   ──>   non-dumpable (inherited by the child until its execve)
                                   setns cgroup, ipc, uts, net, mnt; chroot to the root of
                                   the container's first process; close every host fd
                                   -t: a pty from the container's devpts
                                   user, env, rlimits, umask
                                   setns(pid), for its children only
                                   a session keyring of its own
                                   drop privileges, chdir, find the command
                                   clone3(CLONE_PARENT) ───────────>  born a child of the
                                   write the child's pid, exit        runtime, in the container
    read the pid, reap the intermediate                               -t: session leader
                                                                      the seccomp filter
    read the error pipe  <──── one line / EOF (execve) ─────────────  close_range, execve
    wait and relay (or, detached, leave it to whoever reaps orphans: conmon for podman)

Everything the two children need is imported before: after setns(mnt) the host's files
(Python's own modules too) are out of reach.
"""
from __future__ import annotations

import os

import prctl  # python-prctl: set_proctitle for the intermediate (see _intermediate)

from minicontainer.errors import ContainerError
from minicontainer.kernel import caps, syscalls  # noqa: F401  caps: prctl, before setns(mnt)
from minicontainer.runtime import process, protocol, seccomp, terminal
from minicontainer.runtime.launch import check_env
from minicontainer.runtime.protocol import kill_and_reap

# The order of setns: mnt last of those joined at once (after it the host's files are out of
# reach); pid alone, later: it applies to the intermediate's children only.
JOIN_ORDER = ("cgroup", "ipc", "uts", "net", "mnt")


def exec_in(container, proc, security, detach: bool = False, pid_file: str | None = None,
            console_socket: str | None = None, stdio=None, supervise=None) -> int:
    """Run `proc` (a spec.Process) in `container` with `security`; returns its exit status,
    or 0 once it runs when detached. stdio and supervise: as for launch.run (the Python
    API's pipes, and its pump instead of our signal forwarding)."""
    status = container.status()
    if status not in ("created", "running"):
        raise ContainerError(f'cannot exec in container "{container.id}": it is {status}')
    check_env(proc.env)
    # The container's seccomp profile and keyring choice, whoever asks (as runc), from its record
    defaults = container.record.get("exec") or {}
    security.seccomp = defaults.get("seccomp")
    security.new_keyring = defaults.get("new_keyring", True)
    seccomp_filter = seccomp.filter_for(security, container.store.root)  # BPF, cached
    pid = container.record["pid"]
    namespaces = _namespace_fds(pid)
    cgroup = next((v for k, v in container.owned() if k == "cgroup"), None)
    fds = list(namespaces.values())
    try:
        # The root of the container's first process: after setns(mnt) ours is the mount
        # namespace's, which for a --chroot container is still the whole host tree.
        root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        fds.append(root)
        if not container.alive():  # its pid may have gone to another process meanwhile
            raise ContainerError(f"the container's process {pid} is gone")
        cgroup_fd = -1
        if cgroup and os.path.isdir(cgroup):
            cgroup_fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            fds.append(cgroup_fd)
        hostname = (container.record.get("exec") or {}).get("hostname") or container.id[:12]
        winsize = terminal.terminal_size() if proc.terminal and not console_socket else None
        if proc.terminal and proc.console_size:  # OCI process.consoleSize
            winsize = terminal.pack_winsize(*proc.console_size)
        # both children -> runtime: why it failed, EOF at execve (runtime/protocol.py); no
        # stops on the way, nothing to tell them: no alive pipe
        channel = protocol.Channel(alive=False,
                                   console=terminal.MasterChannel() if proc.terminal else None)
        pid_r, pid_w = os.pipe()  # intermediate -> runtime: the pid of the process
        try:
            process.preload(proc)  # the children's setns(mnt) leaves the host's library behind
            intermediate = syscalls.fork(0, cgroup_fd)
        except BaseException:  # no child: the pipes are all ours to close
            channel.discard()
            os.close(pid_r)
            os.close(pid_w)
            raise
        if intermediate == 0:
            channel.child_side()
            os.close(pid_r)
            _intermediate(proc, security, namespaces, root, hostname, winsize, channel, pid_w,
                          stdio, seccomp_filter)
    finally:
        for fd in fds:
            os.close(fd)
    channel.parent_side()
    os.close(pid_w)
    child = None
    waiting = [intermediate]  # what to kill and reap if we are interrupted
    try:
        master = channel.receive_console()
        child = int(protocol.read_all(pid_r) or 0) or None  # read_all closes it at EOF
        pid_r = None
        if child:
            waiting.append(child)
        _, how = os.waitpid(intermediate, 0)
        waiting.remove(intermediate)
        failure = channel.read_failure()
    except BaseException:
        kill_and_reap(*waiting)
        channel.close()  # a long-lived caller (the Python API) must not collect them
        if pid_r is not None:
            os.close(pid_r)
        raise
    if failure or child is None:
        if child:
            os.waitpid(child, 0)
        protocol.raise_failure(failure, f"exec failed: status {os.waitstatus_to_exitcode(how)}")
    if pid_file:
        from minicontainer.runtime.state import write_atomic

        write_atomic(pid_file, str(child))
    if master is not None and console_socket:
        terminal.send_console(console_socket, master)
        master = None
    if detach:
        return 0
    if master is not None:
        terminal.relay(master, child, interactive=proc.interactive)
    elif supervise is not None:
        try:
            supervise(child)
        except BaseException:
            kill_and_reap(child)
            raise
    else:
        protocol.forward_signals(child)
    return protocol.wait(child)


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


def _intermediate(proc, security, namespaces, root, hostname, winsize, channel, pid_w,
                  stdio=None, seccomp_filter=None) -> None:
    """Never returns: enters the container but its pid namespace, then forks the process
    that runs the command there (see the module's docstring), or reports why not."""
    try:
        syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)
        # /proc/PID/cmdline is readable by anyone, dumpable or not: the runtime's command line
        # (the host's paths to its interpreter, state root, bundle) is not the container's.
        prctl.set_proctitle("minicontainer exec")
        if proc.oom_score_adj is not None:  # while /proc/self is ours (the fork inherits it)
            process.set_oom_score_adj(proc.oom_score_adj)
        for ns in JOIN_ORDER:
            if ns in namespaces:
                syscalls.setns(namespaces[ns], syscalls.NAMESPACE_FLAGS[ns])
        syscalls.note("fchdir(root of the container's first process), chroot(\".\")")
        os.fchdir(root)
        os.chroot(".")
        os.chdir("/")
        # Only these survive: no host directory, file or namespace reaches the container.
        keep = [channel.err_w, pid_w, *range(3, 3 + proc.preserve_fds)]
        if "pid" in namespaces:
            keep.append(namespaces["pid"])
        if channel.console:
            keep.append(channel.console.child.fileno())
        for target, fd in enumerate(stdio or ()):  # the caller's pipes (None: the default)
            if fd is not None:
                os.dup2(fd, target)
        _close_all_but(keep)
        if not proc.interactive and not proc.terminal and not (stdio and stdio[0] is not None):
            null = os.open("/dev/null", os.O_RDONLY)  # the container's
            os.dup2(null, 0)
            os.close(null)
        slave = None
        if channel.console:
            master, slave = terminal.open_pty("/dev/pts/ptmx", winsize)
            channel.console.send(master)
        user = process.resolve_user(proc.user, proc.groups)
        env = process.build_env(proc.env, hostname, user, proc.terminal)
        if proc.rlimits:
            process.set_rlimits(proc.rlimits)
        if proc.umask is not None:
            os.umask(proc.umask)
        if "pid" in namespaces:
            syscalls.setns(namespaces["pid"], syscalls.CLONE_NEWPID)
            os.close(namespaces["pid"])
        process.isolate_keyring(security)
        # without no_new_privs now, while CAP_SYS_ADMIN is held; else in _visible, last
        process.load_seccomp(seccomp_filter, security, late=False)
        process.drop_privileges(user, security)
        try:
            os.chdir(proc.cwd or "/")
        except OSError as e:
            raise ContainerError(f"cannot change to the working directory {proc.cwd}: "
                                 f"{e.strerror}") from None
        path = process.find_executable(proc.args[0], env.get("PATH", ""))
        child = syscalls.fork(syscalls.CLONE_PARENT)
        if child == 0:
            os.close(pid_w)
            _visible(path, proc, env, slave, channel, security, seccomp_filter)
        os.write(pid_w, str(child).encode())
        os._exit(0)
    except BaseException as e:
        channel.fail(e)


def _visible(path, proc, env, slave, channel, security, seccomp_filter) -> None:
    """The process in the container, from its birth to execve. Never returns."""
    try:
        if slave is not None:
            terminal.become_session_leader(slave)
        process.load_seccomp(seccomp_filter, security, late=True)
        process.exec_command(path, proc.args, env, proc.preserve_fds)
    except BaseException as e:
        channel.fail(e)


def _close_all_but(keep: list[int]) -> None:
    """Close every fd above 2 but those in `keep`: a close_range per gap between them."""
    low = 3
    for fd in sorted(set(keep)):
        if fd >= low:
            if fd > low:
                syscalls.close_range(low, fd - 1)
            low = fd + 1
    syscalls.close_range(low)
