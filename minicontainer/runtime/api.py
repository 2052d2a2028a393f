"""The runtime's API: one function per thing a front end can do to a container.

    front ends (cli/, the OCI verbs, minicontainer.run / Container)
        │   parse and print; build a spec.ContainerSpec
        ▼
    runtime/api.py       create start run run_detached exec kill stop delete state list logs,
        │                pause resume update stats events processes inspect collect_garbage,
        │                and the names a front end checks flags against (signals,
        │                capabilities, mount flags) and the --trace switch
        ▼
    launch.py (the launch sequence), lifecycle.py (verbs on a recorded container),
    exec.py (join a running one), state.py (the records)

Each function is a thin call into those modules: there is one launch path, whoever calls.
`root` is the state root (None: state.state_root's default); `ref` a container's name, id or
unique id prefix (exact=True: the full id only, as the OCI verbs want). Errors are the
exceptions of errors.py, with the one-line messages the CLI prints.

Imports stay lazy: `minicontainer run` goes through here, and start-up time is a feature.
"""
from __future__ import annotations

from minicontainer.errors import ContainerError
from minicontainer.runtime.state import StateStore, state_root


def store(root: str | None = None) -> StateStore:
    return StateStore(state_root(root))


def exists(cid: str, root: str | None = None) -> bool:
    """Whether a container with exactly this id is recorded."""
    return cid in store(root).ids()


def lookup(ref: str, root: str | None = None, exact: bool = False):
    """The recorded container (a state.Container); ContainerError if there is none."""
    return store(root).lookup(ref, exact)


# Starting containers.

def run(spec, root: str | None = None, stdio=None, supervise=None) -> int:
    """Run the container to completion in the foreground; its exit status (docker's codes).
    stdio: (stdin, stdout, stderr) fds for it (default: ours); supervise(pid): called while
    it runs, instead of forwarding our signals to it (launch._How)."""
    from minicontainer.runtime import launch

    return launch.run(spec, store(root), stdio, supervise)


def run_detached(spec, root: str | None = None, auto_remove: bool = False,
                 lifeline: bool = False) -> str:
    """run -d: start it under a shim, return its id once it runs. lifeline: it dies with
    (and is removed after) the calling process, SIGKILLed or not."""
    from minicontainer.runtime import launch

    return launch.run_detached(spec, store(root), auto_remove, lifeline)


def dry_run(spec, root: str | None = None, detached: bool = False) -> list[str]:
    """run --dry-run: what the container's process would do, one numbered line per step
    (runtime/plan.py), after run's checks; nothing is started or made."""
    from minicontainer.runtime import launch, plan

    return plan.describe(launch.dry_run(spec, store(root), detached))


def create(spec, cid: str, bundle: str, annotations: dict, root: str | None = None,
           pid_file: str | None = None, console_socket: str | None = None) -> None:
    """OCI create: everything up to the execve, which waits for start()."""
    from minicontainer.runtime import launch

    launch.create(spec, store(root), cid, bundle, annotations, pid_file, console_socket)


def start(ref: str, root: str | None = None, exact: bool = True) -> None:
    """OCI start: let a created container go on to execve."""
    from minicontainer.runtime import lifecycle

    lifecycle.start(lookup(ref, root, exact))


# A running container.

def exec_process(container, args: list[str], env: dict | None = None, user: str | None = None,
                 cwd: str | None = None, privileged: bool = False, terminal: bool = False,
                 interactive: bool = False, add_capabilities=(), no_new_privs: bool = False):
    """The (spec.Process, spec.Security) to exec `args` in `container` with: the container's
    own environment, user, working directory and privileges (its record), changed by these
    (add_capabilities: more, by lower-case name; no_new_privs: set it even if it was not)."""
    from minicontainer.spec import Process, Security

    defaults = container.record.get("exec") or {}
    merged = dict(defaults.get("env") or {})
    merged.update(env or {})
    proc = Process(args=args, env=merged, cwd=cwd or defaults.get("cwd") or "/",
                   user=user if user is not None else defaults.get("user"),
                   terminal=terminal, interactive=interactive,
                   groups=defaults.get("groups") if user is None else None)
    if privileged:
        from minicontainer.kernel.caps import all_names

        return proc, Security(capabilities=frozenset(all_names()), no_new_privs=False,
                              privileged=True)
    added = frozenset(add_capabilities)
    sets = defaults.get("capability_sets")  # an OCI config's five sets (launch.exec_defaults)
    if sets is not None:  # added as runc exec --cap adds: bounding, effective, permitted
        sets = {kind: frozenset(names) | (added if kind in ("bounding", "effective",
                                                              "permitted") else frozenset())
                for kind, names in sets.items()}
    return proc, Security(
        capabilities=frozenset(defaults.get("capabilities", ())) | added,
        no_new_privs=defaults.get("no_new_privs", True) or no_new_privs,
        privileged=defaults.get("privileged", False), sets=sets)


def exec(ref: str, proc, security, root: str | None = None, exact: bool = False,
         **how) -> int:
    """Run `proc` in the running container; its exit status (0 once it runs, detached).
    how: detach, pid_file, console_socket, stdio, supervise (runtime/exec.exec_in)."""
    from minicontainer.runtime.exec import exec_in  # which preloads what its children need

    return exec_in(lookup(ref, root, exact), proc, security, **how)


def pause(ref: str, root: str | None = None, exact: bool = True) -> None:
    """Freeze every process of the container (its cgroup v2's cgroup.freeze)."""
    from minicontainer.runtime import lifecycle

    lifecycle.pause(lookup(ref, root, exact))


def resume(ref: str, root: str | None = None, exact: bool = True) -> None:
    from minicontainer.runtime import lifecycle

    lifecycle.resume(lookup(ref, root, exact))


def update(ref: str, resources, root: str | None = None, exact: bool = True) -> None:
    """New resource limits (a spec.Resources; None: nothing to change) for a live container."""
    from minicontainer.runtime import lifecycle

    lifecycle.update(lookup(ref, root, exact), resources)


def kill(ref: str, sig: int = 15, all_processes: bool = False, root: str | None = None,
         exact: bool = False) -> None:
    from minicontainer.runtime import lifecycle

    lifecycle.kill(lookup(ref, root, exact), sig, all_processes)


def stop(ref: str, timeout: float = 10.0, root: str | None = None) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds; a stopped container is no error."""
    from minicontainer.runtime import lifecycle

    lifecycle.stop(lookup(ref, root), timeout)


def wait(ref: str, timeout: float | None = None, root: str | None = None) -> int | None:
    """Wait until the container has stopped; its exit code (None: it died unwatched, or
    `timeout` seconds passed first)."""
    from minicontainer.runtime import lifecycle

    container = lookup(ref, root)
    if not lifecycle.wait_stopped(container, 1e9 if timeout is None else timeout):
        return None
    return container.record.get("exit_code")


def delete(ref: str, force: bool = False, root: str | None = None, exact: bool = False) -> None:
    """Remove a stopped container and all it owns (force: kill it first)."""
    from minicontainer.runtime import lifecycle

    lifecycle.delete(lookup(ref, root, exact), force)


remove = delete


# What is recorded.

def state(ref: str, root: str | None = None, exact: bool = False) -> dict:
    """The container's record, its status reconciled with the kernel."""
    container = lookup(ref, root, exact)
    return dict(container.record, status=container.status())


def list(root: str | None = None) -> list:  # noqa: A001  (the verb's name: runc's `list`)
    """Every recorded container (state.Container), oldest first, after a gc pass."""
    return store(root).containers()


def inspect(ref: str, root: str | None = None) -> dict:
    """Everything recorded about the container, for people: its record with the status
    reconciled, `running`, what it owns and where its state is; no start times."""
    c = lookup(ref, root)
    r = dict(c.record)
    status = c.status()
    r["status"] = status
    r["running"] = status == "running"
    if status not in ("created", "running"):
        r["pid"] = 0
    for private in ("pid_start", "runtime_start"):
        r.pop(private, None)
    r["owned"] = [f"{kind} {value}" for kind, value in c.owned()]
    r["state_dir"] = c.dir
    return r


def processes(ref: str, root: str | None = None, exact: bool = True) -> list[int]:
    """Every process of a live container, as host pids (its cgroup's)."""
    from minicontainer.runtime import lifecycle

    container = lookup(ref, root, exact)
    status = container.status()
    if status not in ("created", "running", "paused"):
        raise ContainerError(f'cannot list the processes of container "{container.id}": '
                             f"it is {status}")
    return lifecycle.pids(container)


def stats(ref: str, root: str | None = None, exact: bool = True) -> dict:
    """A live container's resource usage as runc's types.Stats (lifecycle.stats)."""
    from minicontainer.runtime import lifecycle

    return lifecycle.stats(lookup(ref, root, exact))


def events(ref: str, interval: float, root: str | None = None, exact: bool = True):
    """runc's events, as (kind, data) pairs until the container stops: ("stats", the
    stats) every `interval` seconds, and ("oom", None) for each OOM kill in it."""
    from minicontainer.runtime import lifecycle

    return lifecycle.events(lookup(ref, root, exact), interval)


def collect_garbage(root: str | None = None) -> list[str]:
    """Remove every container whose runtime is gone (state.py); their ids."""
    return store(root).collect_garbage()


def upper_dirs(root: str | None = None) -> list:
    """The overlay upper layers (what each container has written) of every recorded
    container: `compare` measures a container's disk footprint there while it runs."""
    return [c.upper for c in store(root).containers()]


def log_path(ref: str, root: str | None = None) -> str:
    """The file a detached container's output goes to; ContainerError for any other."""
    path = lookup(ref, root).record.get("log")
    if not path:
        raise ContainerError(f'container "{ref}" keeps no log: only containers started with '
                             "run -d do (the others write to their caller)")
    return path


def logs(ref: str, root: str | None = None) -> bytes:
    """What a detached container has written to its stdout and stderr so far."""
    try:
        with open(log_path(ref, root), "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


# The names a front end checks its flags against.

def signal_number(text: str) -> int:
    """'9', 'KILL', 'SIGKILL', 'RTMIN+3' -> the signal's number; ContainerError if unknown."""
    from minicontainer.runtime import lifecycle

    return lifecycle.parse_signal(text)


def capability_name(text: str) -> str:
    """'CAP_NET_ADMIN', 'net_admin', 'ALL' -> 'net_admin', 'all' (names as spec.Security
    holds them); ValueError, with a message naming it, for one this kernel does not know."""
    from minicontainer.kernel import caps

    return caps.normalize(text)


def capability_names(default: bool = False) -> tuple[str, ...]:
    """Every capability this kernel has, or (default) the set a container keeps unless told
    otherwise (docker's)."""
    from minicontainer.kernel import caps

    return tuple(caps.DEFAULT) if default else caps.all_names()


def mount_flags(*options: str) -> int:
    """The MS_* flags of mount(8) options ("nosuid", "nodev", "noexec"...), for
    spec.Mount.flags."""
    from minicontainer.kernel import syscalls

    flags = 0
    for option in options:
        flags |= getattr(syscalls, "MS_" + option.upper())
    return flags


def set_trace(how: str | None) -> None:
    """--trace: every syscall and step of the runtime on stderr, as text or "json" lines
    (None: off). Forked processes inherit it."""
    from minicontainer.kernel import trace

    trace.set_enabled(how is not None, how or "text")
