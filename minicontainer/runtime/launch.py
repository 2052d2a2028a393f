"""The launch sequence: one container, from spec to exit status, readable top to bottom.

    parent (the runtime)                      child (becomes the container)
    --------------------                      -----------------------------
    check the spec, gc dead containers
    record the container (state store)
    clone3: new pid namespace, own cgroup ──> PID 1 of a new pid namespace
                                              die if the runtime dies (PDEATHSIG)
                                              unshare mnt, uts, ipc, net, cgroup
                                              hostname, lo up
                                              overlay root, /proc, /dev, /sys, volumes
                                              pivot_root, masked paths
                                              session keyring, user, capabilities,
                                              no_new_privs, seccomp filter
    read the error pipe  <──  one line  ──    on failure: kind + message, exit
                         <──   EOF     ──     on success: execve closes the pipe
    forward signals / relay the terminal
    wait, remove everything the container owned, return its status

The child's column is a plan (runtime/plan.py): its steps computed from the spec before the
fork (`run --dry-run` prints them), then applied in order; the arrows are the launch protocol
(runtime/protocol.py), also used by exec.

Three ways in, one sequence (`_spawn`):
    run          the above, in the foreground
    run_detached run -d: a small supervising process (the shim) does the above with the
                 container's output going to its log file, records the exit status, cleans up
    create       OCI create: the child does everything up to execve, then blocks opening its
                 exec fifo for writing; `start` (runtime/lifecycle.py) opens it for reading
                 and the child goes on to execve. It closes the error pipe when blocking,
                 which tells `create` that the container exists, and `create` exits 0.
In the last two the container must outlive the process that made it: no PDEATHSIG at execve.
An OCI config's hooks run at the points runtime/hooks.py names: prestart and createRuntime
here in the runtime (the child stops for them once its mounts are made), createContainer
and startContainer in the child.

The parent imports little on purpose (see docs/run.md, "Why it is fast"): every module
loaded here costs start-up time for every container.
"""
from __future__ import annotations

import os
import select

import _signal  # the C module under `signal`, which would import enum (~3 ms) on every run

from minicontainer.errors import ContainerError, UsageError
from minicontainer.kernel import syscalls, trace
from minicontainer.runtime import cgroups, native, plan, process, protocol, rootfs, seccomp
from minicontainer.runtime.protocol import kill_and_reap
from minicontainer.runtime.state import StateStore, write_atomic


class _How:
    """What differs between the ways in. foreground: the container dies with its runtime;
    exec_fifo: block before execve until `start`; log_fd: the container's stdout and stderr;
    stdio: (stdin, stdout, stderr) fds for the container instead of ours (the Python API's
    pipes; None for one: as without stdio); supervise: called with the container's pid while
    it runs, instead of forwarding our signals to it (the Python API pumps its pipes there: a
    library must not take over the caller's signal handlers)."""

    __slots__ = ("foreground", "exec_fifo", "log_fd", "stdio", "supervise")

    def __init__(self, foreground=True, exec_fifo=None, log_fd=None, stdio=None,
                 supervise=None):
        self.foreground, self.exec_fifo, self.log_fd = foreground, exec_fifo, log_fd
        self.stdio, self.supervise = stdio, supervise


FOREGROUND = _How()


def run(spec, store: StateStore, stdio=None, supervise=None) -> int:
    """Run one container to completion; return its exit status (docker's convention).
    stdio and supervise: see _How (the CLI gives neither)."""
    _check_spec(spec)
    store.collect_garbage()
    how = FOREGROUND if stdio is None and supervise is None else \
        _How(stdio=stdio, supervise=supervise)
    # From here on a SIGINT/SIGTERM for the container must not kill us half-way (leaving the
    # record for gc): it waits, blocked, and goes to the container once it exists (_spawn).
    unblocked = protocol.hold_signals()
    try:
        container = store.create(spec.name, spec.root.path, spec.process.args,
                                 exec=exec_defaults(spec))
        try:
            return _launch(spec, container, how, unblocked)
        finally:
            _teardown_phase()
            container.remove()
    finally:
        protocol.restore_signals(unblocked)


def dry_run(spec, store: StateStore, detached: bool = False) -> list:
    """run --dry-run: the plan the container's first process would apply (runtime/plan.py),
    after the checks run makes first. Nothing is started, recorded or made (no record, no
    cgroup, no overlay directory): the paths are those a container gets, its id "<id>"."""
    _check_spec(spec)
    if spec.name is not None:
        from minicontainer.runtime.state import check_name

        check_name(spec.name)
        store.check_name_free(spec.name)
    for m in spec.mounts:
        if m.kind == "bind":
            rootfs.check_bind_source(m)
    if spec.network not in ("none", "host"):
        from minicontainer.runtime import network

        # the network's /etc/hosts and resolv.conf binds, container:NAME's namespace joined
        spec = network.planned(spec, store).applied_to(spec)
    seccomp.filter_for(spec.security, store.root, cache=False)  # a refused profile: refused
    from minicontainer.runtime.state import Container

    container = Container(store, "<id>", spec.name)
    # network.prepare gives a step from outside (the veth) for a bridge, and only for one
    return plan.plan(spec, container, spec.hostname or container.id[:12],
                     outside=spec.network == "bridge", foreground=not detached)


def _check_spec(spec) -> None:
    path = spec.root.path
    if not os.path.isdir(path):
        what = "is not a directory" if os.path.exists(path) else "does not exist"
        raise ContainerError(f"rootfs {path} {what}")
    if not spec.process.args:
        raise ContainerError("no command given")
    if spec.hostname is not None:
        check_hostname(spec.hostname)
    check_env(spec.process.env)
    cgroups.check(spec)  # limits this host cannot enforce are refused here, before anything


_HOSTNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


def check_hostname(name: str) -> None:
    """RFC 1123: dot-separated labels of letters, digits and inner hyphens, 64 bytes in all
    (the kernel's limit). The kernel would take any bytes; /etc/hosts and the network's
    lease files, which hold it on one line, would not."""
    labels = name.split(".")
    if not (0 < len(name) <= 64 and all(
            0 < len(label) <= 63 and label[0] != "-" and label[-1] != "-" and
            all(c in _HOSTNAME_CHARS for c in label) for label in labels)):
        raise UsageError(f"invalid hostname {name!r}: want at most 64 characters, letters, "
                         "digits, inner '-' and '.' between labels (RFC 1123)")


def check_env(env: dict) -> None:
    """What execve can carry and `env` reads back as one variable: a key that is not empty,
    has no '=' and no control character (a newline in one would read as two variables), a
    value without NUL. Any other bytes pass through, as with docker."""
    for key, value in env.items():
        if not key or "=" in key or any(c < " " or c == "\x7f" for c in key) or \
                "\0" in value:
            raise UsageError(f"invalid environment variable {key!r}: a name must be "
                             "non-empty, without '=' or control characters; a value without NUL")


def _launch(spec, container, how: _How, unblocked) -> int:
    pid, master, alive_w = _spawn(spec, container, how, unblocked)
    try:
        if master is not None:
            from minicontainer.runtime.terminal import relay

            relay(master, pid, interactive=spec.process.interactive)
        elif how.supervise is not None:
            how.supervise(pid)
        status = protocol.wait(pid)
    except BaseException:  # a KeyboardInterrupt in the caller, a supervisor's timeout
        kill_and_reap(pid)
        os.close(alive_w)
        raise
    cgroups.report(spec, container.cgroup, status)
    os.close(alive_w)
    return status


def _spawn(spec, container, how: _How, unblocked=None):
    """Fork the container's first process and see it through its set-up; returns its pid,
    the pty master (-t) and the pipe end whose closing tells the child its runtime is gone.
    On failure the child is reaped and the error it reported is raised."""
    trace.set_state_root(container.store.root)
    seccomp_filter = seccomp.filter_for(spec.security, container.store.root)  # BPF, cached
    trace.phase("cgroups")
    container.cgroup = cgroups.create(spec, container)  # limits in place before the child joins
    hostname = spec.hostname or container.id[:12]
    if spec.process.terminal:
        from minicontainer.runtime import terminal

        size = spec.process.console_size  # OCI process.consoleSize, else the user's terminal's
        winsize = terminal.terminal_size() if size is None else terminal.pack_winsize(*size)
        console = terminal.MasterChannel()
    else:
        winsize = console = None
    spec, steps = _outside_steps(spec, container)  # before any fd of ours is open: it may fail
    # what the child will do (runtime/plan.py); it stops at points only for our steps or hooks
    ops = plan.plan(spec, container, hostname, outside=bool(steps), foreground=how.foreground,
                    create=how.exec_fifo is not None)
    channel = protocol.Channel(points=plan.has_points(ops), console=console)
    restore_on_failure = unblocked is None
    try:
        # the plan applied in C, where it can be (runtime/native.py): no Python in the child
        in_c = native.prepare(spec, ops, how, seccomp_filter, channel)
        # the child's switch_root leaves the host's library behind
        process.preload(spec.process, with_hooks=bool(spec.hooks))
        # A signal meant for the container waits, blocked, until something can take it: the
        # child is born with the block and keeps it until execve (or until --init's loop
        # picks it up), and we keep it until our forwarding handlers are in place. Otherwise
        # a SIGTERM landing while the child sets up would be dropped: a namespace's PID 1
        # ignores signals it has no handler for.
        # `unblocked`: the signal mask from before run() blocked them, if it did; then run()
        # also unblocks them on failure, after cleaning up.
        mask = protocol.hold_signals()
        channel.unblocked = mask if unblocked is None else unblocked
        trace.phase("namespaces")
        pid = None if in_c is None else native.spawn(in_c, channel.unblocked, container.cgroup)
        if pid is None:  # the Python child, which applies any plan
            in_c = None
            pid = _fork(spec, container.cgroup)
    except BaseException:  # no child (clone3 refused, say): the pipes are all ours to close
        channel.discard()
        if restore_on_failure and channel.unblocked is not None:
            protocol.restore_signals(channel.unblocked)
        raise
    if pid == 0:
        channel.child_side()
        _child(plan.Context(spec, container, channel, seccomp_filter, winsize), how, ops)

    channel.parent_side()
    try:
        if not how.foreground:
            container.started(pid)  # so that gc can kill a child whose `create` died
        if channel.ready_r is not None:
            while True:  # until EOF: the child has passed its points, or failed
                point = channel.wait_point()
                if point == b"r":  # it has its namespaces: what must be done from outside
                    if steps:
                        trace.phase("network")
                    for step in steps:
                        step(pid)
                elif point == b"h":  # its mounts are made, pivot_root is next
                    _run_parent_hooks(spec, container, pid)
                else:
                    break
                channel.go_on()
        master = channel.receive_console()
        if how.foreground and how.supervise is None:
            protocol.forward_signals(pid)
        protocol.restore_signals(channel.unblocked)
        failure = channel.read_failure()
    except BaseException:
        kill_and_reap(pid)
        channel.close()
        raise
    finally:
        if restore_on_failure:
            protocol.restore_signals(channel.unblocked)
    if failure:
        os.waitpid(pid, 0)
        channel.close()
        if in_c is not None and failure.startswith(b"Native\n"):
            raise native.failure(failure, spec.process.args[0])
        protocol.raise_failure(failure)
    if how.foreground:
        container.started(pid, status="running")  # for exec, ps and stop from elsewhere
    return pid, master, channel.alive_w


def run_detached(spec, store: StateStore, auto_remove: bool = False,
                 lifeline: bool = False) -> str:
    """run -d: start the container under a shim and return its id once it runs (or raise
    why it could not start). The shim outlives us, records the exit status and cleans up.
    lifeline: the container dies with the calling process instead, and is removed (a test
    session's containers: the shim watches a pidfd of ours; gc covers a dead shim)."""
    _check_spec(spec)
    store.collect_garbage()
    from minicontainer.runtime.state import process_start_time

    me = os.getpid()
    watch = {"lifeline_pid": me, "lifeline_start": process_start_time(me)} if lifeline else {}
    container = store.create(spec.name, spec.root.path, spec.process.args, mode="detached",
                             auto_remove=auto_remove, log=None, exec=exec_defaults(spec),
                             **watch)
    # Our pidfd, opened by us: it names this process, never a later one with our pid.
    pidfd = os.pidfd_open(me) if lifeline else None
    report_r, report_w = os.pipe()
    if os.fork() == 0:
        os.close(report_r)
        _shim(spec, container, report_w, pidfd)
    os.close(report_w)
    if pidfd is not None:
        os.close(pidfd)
    failure = protocol.read_all(report_r)
    if failure:
        protocol.raise_failure(failure)
    return container.id


def _shim(spec, container, report_w: int, lifeline: int | None = None) -> None:
    """The supervising process of a detached container (conmon's job for podman). Never
    returns. Its own stdio are the container's: /dev/null in, the log file out.
    lifeline: a pidfd; when that process dies, the container is killed and removed."""
    code = 0
    try:
        os.setsid()  # no terminal: ^C or a closing terminal must not reach it
        for sig in (_signal.SIGINT, _signal.SIGHUP, _signal.SIGPIPE):
            _signal.signal(sig, _signal.SIG_IGN)
        log = os.path.join(container.dir, "container.log")
        log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        if not spec.process.terminal:
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
        from minicontainer.runtime.state import process_start_time

        container.update(runtime_pid=os.getpid(), runtime_start=process_start_time(os.getpid()),
                         log=log)
        try:
            pid, master, alive_w = _spawn(spec, container, _How(foreground=False, log_fd=log_fd))
        except BaseException as e:
            try:
                _teardown_phase()
                container.remove()  # first: `run -d` returns knowing nothing is left
            finally:
                protocol.report(report_w, type(e).__name__ if isinstance(e, ContainerError) else
                        "ContainerError", str(e))
                os.close(report_w)
            os._exit(125)
        container.update(status="running")
        os.close(report_w)  # EOF: `run -d` prints the id and returns
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        if master is not None:
            from minicontainer.runtime.terminal import copy_until_closed

            copy_until_closed(master, log_fd)
        if lifeline is not None and _outlived(pid, lifeline):
            kill_and_reap(pid)  # PID 1 of its namespace: the kernel kills the rest
            container.remove()
            os._exit(0)
        status = protocol.wait(pid)
        cgroups.report(spec, container.cgroup, status)  # OOM kill and such, into the log
        from minicontainer.runtime.state import now

        _teardown_phase()
        if container.record.get("auto_remove"):
            container.update(status="stopped", exit_code=status, finished=now())
            container.remove()
        else:
            # released first: whoever sees "stopped" (rm, wait) may remove the rest at once
            container.release()
            container.update(status="stopped", exit_code=status, finished=now())
    except BaseException:
        code = 125  # the record stays; gc reconciles it
    os._exit(code)


def _outlived(pid: int, lifeline: int) -> bool:
    """Wait until our child `pid` exits (False) or the lifeline's process does (True)."""
    child = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(child, select.POLLIN)
    poller.register(lifeline, select.POLLIN)
    while True:
        ready = {fd for fd, _ in poller.poll()}
        if child in ready:
            return False
        if lifeline in ready:
            return True


def create(spec, store: StateStore, cid: str, bundle: str, annotations: dict,
           pid_file: str | None = None, console_socket: str | None = None) -> None:
    """OCI create: everything but the execve, which waits for `start`. The container's first
    process stays a child of ours until we exit, then belongs to whoever reaps orphans here
    (conmon is a child subreaper for exactly this)."""
    _check_spec(spec)
    store.collect_garbage()
    later = {stage: spec.hooks[stage] for stage in ("poststart", "poststop")
             if spec.hooks.get(stage)}  # run by `start` and `delete` (runtime/lifecycle.py)
    container = store.create(None, spec.root.path, spec.process.args, cid=cid, mode="oci",
                             bundle=bundle, annotations=annotations, exec=exec_defaults(spec),
                             **({"hooks": later} if later else {}))
    pid = None
    try:
        fifo = os.path.join(container.dir, "exec.fifo")
        os.mkfifo(fifo)
        # the container's user, whoever it is, opens it for writing (after dropping its
        # privileges, as runc); our umask must not take that away
        os.chmod(fifo, 0o622)
        pid, master, alive_w = _spawn(spec, container, _How(foreground=False, exec_fifo=fifo))
        if master is not None:
            from minicontainer.runtime.terminal import send_console

            send_console(console_socket, master)
        container.update(status="created", runtime_pid=None, runtime_start=None)
        if pid_file:
            write_atomic(pid_file, str(pid))  # as runc: a reader never sees an empty one
    except BaseException:
        if pid is not None:
            kill_and_reap(pid)
        container.remove()
        if later.get("poststop"):  # runtime.md: a failed create goes on to delete's step
            from minicontainer.runtime import hooks

            hooks.run_warning_only("poststop", later["poststop"],
                                   hooks.state(container, "stopped", 0))
        raise


def exec_defaults(spec) -> dict:
    """What `exec` takes from the container by default (kept in its record)."""
    sec = spec.security
    out = {"env": spec.process.env, "user": spec.process.user, "cwd": spec.process.cwd,
           "hostname": spec.hostname, "capabilities": sorted(sec.capabilities),
           "no_new_privs": sec.no_new_privs, "privileged": sec.privileged,
           "seccomp": sec.seccomp, "new_keyring": sec.new_keyring}
    if sec.sets is not None:
        out["capability_sets"] = {kind: sorted(names) for kind, names in sec.sets.items()}
    if spec.process.groups is not None:
        out["groups"] = spec.process.groups
    return out


def _run_parent_hooks(spec, container, pid: int) -> None:
    """prestart, then createRuntime: in the runtime's namespaces, the pid as we see it."""
    from minicontainer.runtime import hooks

    state = hooks.state(container, "creating", pid)
    for stage in ("prestart", "createRuntime"):
        hooks.run(stage, spec.hooks.get(stage) or [], state)


def _outside_steps(spec, container) -> tuple:
    """The spec the child gets (with the network's mounts and namespaces: a new one, the
    caller's is left alone), and what the runtime must do from outside, with the child's
    pid, after the child has unshared its namespaces and before it goes on (a veth into its
    network namespace, say). Each step is a callable taking that pid; none are needed for
    the default run, which then costs no extra round trip."""
    if spec.network in ("none", "host"):
        return spec, []
    from minicontainer.runtime import network  # bridge, container:NAME (imports pyroute2)

    trace.phase("network")  # resumed once the child has its namespaces (_spawn)
    attachment = network.prepare(spec, container)
    return attachment.applied_to(spec), attachment.steps


def _fork(spec, cgroup: str | None) -> int:
    """fork(), through clone3: with a new pid namespace the child is its PID 1, and with a
    cgroup the child is born in it (joining one afterwards costs 10-20 ms: syscalls.fork)."""
    flags = syscalls.CLONE_NEWPID if "pid" in spec.namespaces else 0
    fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) if cgroup else -1
    ours = None
    try:
        if "pid" in spec.namespace_paths:
            # A pid namespace is joined for the children to come only (setns(2)): join it
            # just for this one, and come back, so that hooks run in ours.
            ours = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
            joined = os.open(spec.namespace_paths["pid"], os.O_RDONLY | os.O_CLOEXEC)
            try:
                syscalls.setns(joined, syscalls.CLONE_NEWPID)
            finally:
                os.close(joined)
        pid = syscalls.fork(flags, fd)
        if pid and ours is not None:
            syscalls.setns(ours, syscalls.CLONE_NEWPID)
        return pid
    finally:
        if ours is not None:
            os.close(ours)
        if fd >= 0:
            os.close(fd)


def _child(c: plan.Context, how: _How, ops: list) -> None:
    """Everything between fork and execve (docs/run.md): the protocol's first steps, the
    stdio, then the plan (runtime/plan.py) applied. Never returns.

    After switch_root the host's Python library is out of reach: every module the plan's
    steps need must already be imported by then (process.preload)."""
    try:
        # Python's SIGINT handler would turn a ^C pending since set-up into a KeyboardInterrupt
        # inside the --init's command child, before its execve: the default instead.
        _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
        trace.phase("namespaces")
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, _signal.SIGKILL)
        # Until execve (which makes it dumpable again) no process of the container may open
        # our /proc/PID/exe (the host's Python), fd/ or environ: an `exec` while `create`
        # waits for `start`, or --init's PID 1, which never execs, would otherwise allow it.
        syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)
        if c.channel.parent_gone():
            os._exit(125)
        proc = c.spec.process
        if not proc.interactive and not proc.terminal:
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
        if how.log_fd is not None and not proc.terminal:
            os.dup2(how.log_fd, 1)
            os.dup2(how.log_fd, 2)
        for target, fd in enumerate(how.stdio or ()):  # the caller's pipes (None: default)
            if fd is not None:
                os.dup2(fd, target)
        # O_PATH: after pivot_root the fifo is out of reach by name, but not through this fd
        c.fifo = os.open(how.exec_fifo, os.O_PATH | os.O_CLOEXEC) if how.exec_fifo else None
        plan.apply(ops, c)
    except BaseException as e:
        c.channel.fail(e)


def _teardown_phase() -> None:
    """Narrate what goes without a call of ours: the container's mounts (the overlay root,
    /proc, /dev, /sys) live only in its mount namespace, which the kernel takes apart with
    its last process. What follows in the trace (cgroup, network, state) is removed by us."""
    trace.phase("teardown")
    trace.note("the container's mounts (overlay root, /proc, /dev, /sys) lived only in its mount "
               "namespace: the kernel removes them with its last process")
