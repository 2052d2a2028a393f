"""The container's process: who it runs as, with what environment and privileges, and what
exactly gets exec'd. Runs in the child after switch_root, so every file read here is the
container's (/etc/passwd, /etc/group, $PATH), never the host's.
"""
from __future__ import annotations

import errno
import os

import _signal  # not `signal`, which imports enum (~3 ms) on the start-up path

from minicontainer.errors import CannotExecute, CommandNotFound, ContainerError
from minicontainer.kernel import caps, syscalls
from minicontainer.kernel import seccomp as kseccomp
from minicontainer.runtime.protocol import report
from minicontainer.spec import DEFAULT_PATH


class User:
    __slots__ = ("uid", "gid", "groups", "home")

    def __init__(self, uid: int, gid: int, groups: list[int], home: str):
        self.uid, self.gid, self.groups, self.home = uid, gid, groups, home


def _read_table(path: str) -> list[list[str]]:
    try:
        with open(path) as f:
            return [line.rstrip("\n").split(":") for line in f if line.strip() and line[0] != "#"]
    except FileNotFoundError:
        return []


def resolve_user(spec_user: str | None, groups: list[int] | None = None,
                 read_table=_read_table) -> User:
    """'name', 'uid', 'uid:gid' or 'name:group', resolved in the container's own files as
    docker does; a numeric uid need not exist in /etc/passwd, a name must. groups: the
    supplementary groups exactly (OCI additionalGids), instead of /etc/group's. read_table:
    how to read those files (runtime/native.py reads them in the image, before the fork)."""
    if not spec_user:
        spec_user = "0"
    user_part, _, group_part = spec_user.partition(":")
    passwd = read_table("/etc/passwd")
    entry = next((e for e in passwd if len(e) >= 6 and
                  (e[0] == user_part or (user_part.isdigit() and e[2] == user_part))), None)
    if entry is None and not user_part.isdigit():
        raise ContainerError(f"unable to find user {user_part}: no matching entries in passwd file")
    uid = int(user_part) if user_part.isdigit() else int(entry[2])
    gid = int(entry[3]) if entry else 0
    home = entry[5] if entry else "/"
    groups_table = read_table("/etc/group")
    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            g = next((e for e in groups_table if len(e) >= 3 and e[0] == group_part), None)
            if g is None:
                raise ContainerError(
                    f"unable to find group {group_part}: no matching entries in group file")
            gid = int(g[2])
    name = entry[0] if entry else None
    extra = [int(e[2]) for e in groups_table
             if name and len(e) >= 4 and name in e[3].split(",") and e[2].isdigit()]
    return User(uid, gid, sorted({gid, *extra}) if groups is None else list(groups), home)


def build_env(spec_env: dict, hostname: str, user: User, terminal: bool) -> dict:
    """Docker's defaults first (PATH, HOSTNAME, HOME, TERM with -t), then the user's -e."""
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname, "HOME": user.home}
    if terminal:
        env["TERM"] = "xterm"
    env.update(spec_env)
    return env


def _may_execute(candidate: str, st) -> bool:
    return os.access(candidate, os.X_OK)


def candidates(command: str, path_var: str) -> list[str]:
    """Where find_executable looks, in order: the command itself if it has a /, else each
    $PATH directory's (an empty entry: the working directory, as a shell has it)."""
    if "/" in command:
        return [command]
    return [os.path.join(d or ".", command) for d in path_var.split(":")]


def find_executable(command: str, path_var: str, stat=os.stat, may_execute=_may_execute) -> str:
    """The path to exec, or the error docker gives (127 not found, 126 cannot execute).
    stat and may_execute: how to look (runtime/native.py looks in the image, for the user
    the command will run as, before the fork)."""
    found_but_not_executable = None
    for candidate in candidates(command, path_var):
        try:
            st = stat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if (st.st_mode & 0o170000) != 0o100000 or not may_execute(candidate, st):
            found_but_not_executable = found_but_not_executable or candidate
            continue
        return candidate
    if found_but_not_executable:
        raise CannotExecute(f'exec: "{command}": permission denied')
    if "/" in command:
        raise CommandNotFound(f'exec: "{command}": stat {command}: no such file or directory')
    raise CommandNotFound(f'exec: "{command}": executable file not found in $PATH')


def drop_privileges(user: User, security) -> None:
    """As runc: the bounding set first (dropping needs CAP_SETPCAP), then groups, gid and uid
    with PR_SET_KEEPCAPS (so the permitted set survives a switch to a non-zero uid), then the
    effective, permitted and inheritable sets exactly as asked, then the ambient set;
    no_new_privs last."""
    sets = caps.sets_of(security)
    if sets is not None:
        for kind in caps.KINDS:  # one line each: a set of 13 names fits in the trace's width
            syscalls.note(f"capabilities {kind}: {','.join(sorted(sets[kind])) or 'none'}")
        caps.limit_bounding(sets["bounding"])
        syscalls.prctl(syscalls.PR_SET_KEEPCAPS, 1)
    os.setgroups(user.groups)
    syscalls.narrate("setgroups", (user.groups,), 0)
    os.setgid(user.gid)
    syscalls.narrate("setgid", (user.gid,), 0)
    os.setuid(user.uid)
    syscalls.narrate("setuid", (user.uid,), 0)
    if sets is not None:
        syscalls.prctl(syscalls.PR_SET_KEEPCAPS, 0)
        caps.apply(sets)
    if security.no_new_privs:
        caps.no_new_privs()


def preload(proc, with_hooks: bool = False) -> None:
    """Import now every module the container's process needs after it has left the host's
    filesystem (launch: switch_root; exec: setns into the mount namespace). From then on an
    `import` would search the container's root: at best it fails, late and only there; at
    worst a hostile image supplies the module. Called in the parent before fork (the child
    inherits what is loaded). Modules launch.py and exec.py import at their top (this one,
    rootfs, syscalls, caps, _signal, select) are loaded with them; these are the rest,
    loaded only when the run uses them (start-up: see docs/run.md)."""
    if proc.init:
        import prctl  # noqa: F401  --init names itself (run_as_init)
    if with_hooks:
        from minicontainer.runtime import hooks  # noqa: F401  createContainer, startContainer
    if proc.rlimits:
        import resource  # noqa: F401  set_rlimits
    if proc.terminal:
        from minicontainer.runtime import terminal  # noqa: F401  the pty, session leader


def set_oom_score_adj(value: int) -> None:
    """process.oomScoreAdj (as runc, through /proc/self/oom_score_adj). Lowering it below
    what we inherited needs CAP_SYS_RESOURCE: the error says so."""
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError as e:
        raise ContainerError(f"cannot set oom_score_adj to {value}: {e.strerror}") from None


def isolate_keyring(security) -> None:
    """A new, empty session keyring (as runc): the one inherited from whoever started the
    runtime may hold its keys. A kernel without keyrings has nothing to isolate."""
    if security.new_keyring:
        try:
            kseccomp.join_session_keyring()
        except OSError as e:
            if e.errno != errno.ENOSYS:
                raise


def load_seccomp(seccomp_filter, security, late: bool) -> None:
    """Install the filter (runtime/seccomp.py: (BPF, flags), or None). As runc: with
    no_new_privs, as late as can be, just before execve (late=True); without it the kernel
    wants CAP_SYS_ADMIN for this, so before the capabilities are dropped (late=False)."""
    if seccomp_filter is not None and late == security.no_new_privs:
        kseccomp.load(*seccomp_filter)


def set_rlimits(rlimits) -> None:
    """[(resource, soft, hard)]: as runc, before dropping privileges (raising a hard limit
    needs CAP_SYS_RESOURCE, which root here may lack: the error says so)."""
    import resource  # loaded by preload() before the child left the host's filesystem

    for kind, soft, hard in rlimits:
        try:
            resource.setrlimit(kind, (soft, hard))
        except (ValueError, OSError) as e:
            raise ContainerError(f"cannot set rlimit {kind} to {soft}:{hard}: {e}") from None


def close_inherited_fds(preserve: int = 0) -> None:
    """The command gets fds 0, 1 and 2, plus 3..3+preserve-1 when asked (OCI --preserve-fds,
    LISTEN_FDS): every other fd, whatever opened it (a directory on the host's / left open
    by whoever called us, say), is marked close-on-exec, in one syscall. Marked, not closed:
    the error pipe must stay open up to the execve that closes it."""
    for fd in range(3, 3 + preserve):
        os.set_inheritable(fd, True)
    syscalls.close_range(3 + preserve, flags=syscalls.CLOSE_RANGE_CLOEXEC)


def exec_command(path: str, args: list[str], env: dict, preserve_fds: int = 0) -> None:
    # Python starts with SIGPIPE and SIGXFSZ ignored, and an ignored signal stays ignored
    # across execve: give the command the defaults any shell would (`yes | head` must end).
    _signal.signal(_signal.SIGPIPE, _signal.SIG_DFL)
    _signal.signal(_signal.SIGXFSZ, _signal.SIG_DFL)
    close_inherited_fds(preserve_fds)
    syscalls.narrate("execve", (path, args))
    try:
        os.execve(path, args, env)
    except OSError as e:
        raise exec_error(args[0], e.errno) from None


def exec_error(command: str, err: int) -> ContainerError:
    """What an execve that failed with `err` means (a script whose interpreter is missing:
    not found, 127; anything else: cannot execute, 126)."""
    if err == errno.ENOENT:
        return CommandNotFound(f'exec: "{command}": no such file or directory')
    return CannotExecute(f'exec: "{command}": {os.strerror(err).lower()}')


def run_as_init(path, args, env, channel, has_terminal: bool) -> None:
    """--init: stay as PID 1, run the command as our child, forward signals and reap zombies
    (the loop is C, in kernel/_build.py). Never returns. Signals that arrived during set-up
    are pending, blocked since birth (launch._spawn): the loop forwards them first.
    channel: the runtime's (protocol.Channel): the command's failure to exec goes there."""
    import prctl  # preloaded (process.preload): no import from the container's root

    # Named before the command starts, so that no `ps` inside ever sees the runtime's
    # command line as PID 1 (the command's exec replaces the name it inherits).
    prctl.set_name("init")
    prctl.set_proctitle("init")
    everything = _signal.valid_signals() - {_signal.SIGKILL, _signal.SIGSTOP}
    _signal.pthread_sigmask(_signal.SIG_BLOCK, everything)
    child = os.fork()
    if child == 0:
        try:
            if has_terminal:  # the command's own process group owns the terminal
                os.setpgid(0, 0)
                os.tcsetpgrp(0, os.getpid())
            _signal.pthread_sigmask(_signal.SIG_SETMASK, channel.unblocked)
            exec_command(path, args, env)
        except ContainerError as e:
            report(channel.err_w, type(e).__name__, str(e))
        os._exit(125)
    # PID 1 never execs, so nothing close-on-exec closes for it: drop every inherited fd (the
    # error pipe, `run -d`'s report pipe, a held port, a netlink socket), or whoever waits
    # for one of them to close would wait for as long as the container runs.
    syscalls.close_range(3)
    os._exit(syscalls.init_supervise(child))
