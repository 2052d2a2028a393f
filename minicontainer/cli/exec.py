"""`minicontainer exec`: run a command in a running container. docker's form and runc's:

    exec [-i] [-t] [-d] [-e K=V] [-u USER] [-w DIR] CONTAINER COMMAND [ARG...]
    exec --process P.json [--detach] [--pid-file F] [--console-socket S] [--preserve-fds N] ID
                                                                     (OCI, as runc)

Without --process the command gets the container's own environment, user, working directory,
capabilities and no_new_privs (from its record), changed by the flags given (runc's too:
--cwd, --env, --user, --cap CAP to add one, --tty, --no-new-privs). With --process the file
says it all, as with runc. --process-label and --apparmor are refused unless empty: this
runtime applies no SELinux label nor AppArmor profile.
"""
from __future__ import annotations

import argparse
import os

from minicontainer.cli._common import kept_fds, parser, store
from minicontainer.errors import ContainerError, UsageError


def main(args: list[str], root: str | None) -> int:
    p = parser("exec", "[OPTIONS] CONTAINER COMMAND [ARG...]",
               "Run a command in a running container.")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    p.add_argument("-d", "--detach", action="store_true", help="do not wait for it")
    p.add_argument("-e", "--env", action="append", default=[], help="KEY=VALUE")
    p.add_argument("-u", "--user", help="USER[:GROUP] (names from the container's files)")
    p.add_argument("-w", "--workdir", "--cwd", dest="workdir", help="working directory")
    p.add_argument("-p", "--process", help="OCI: the process to run, as process.json")
    p.add_argument("--pid-file", help="write the new process's pid here")
    p.add_argument("--console-socket", help="OCI: send the pty master here")
    p.add_argument("--privileged", action="store_true", help="every capability")
    p.add_argument("-c", "--cap", action="append", default=[],
                   help="add this capability (CAP_NET_ADMIN), as runc exec --cap")
    p.add_argument("--no-new-privs", action="store_true", help="set no_new_privs")
    p.add_argument("--process-label", default="", help="SELinux label: refused unless empty")
    p.add_argument("--apparmor", default="", help="AppArmor profile: refused unless empty")
    p.add_argument("--preserve-fds", type=int, default=0, metavar="N",
                   help="the process keeps fds 3..3+N-1 (any other is closed), as runc")
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER)
    opts = p.parse_args(args)
    for flag, value, what in (("--process-label", opts.process_label, "SELinux label"),
                              ("--apparmor", opts.apparmor, "AppArmor profile")):
        if value:
            raise UsageError(f"exec {flag} {value}: not supported (minicontainer applies no "
                             f"{what})")

    container = store(root).lookup(opts.container)
    defaults = container.record.get("exec") or {}
    from minicontainer.kernel import caps
    from minicontainer.spec import Process, Security

    if opts.process:
        if opts.command:
            raise UsageError("exec: give the command in --process or on the line, not both")
        given = [flag for flag, value in (("--env", opts.env), ("--user", opts.user),
                                          ("--cwd", opts.workdir), ("--cap", opts.cap),
                                          ("--no-new-privs", opts.no_new_privs),
                                          ("--privileged", opts.privileged)) if value]
        if given:
            raise UsageError(f"exec: {', '.join(given)} with --process: put it in the "
                             "process JSON (its fields say everything, as with runc)")
        import json

        from minicontainer import oci

        with open(opts.process) as f:
            proc, security = oci.to_process(json.load(f), for_exec=True)
        if opts.tty:
            proc.terminal = True
    else:
        if not opts.command:
            raise UsageError("exec: no command given: minicontainer exec CONTAINER COMMAND")
        from minicontainer.cli.flags import env_of

        env = {**(defaults.get("env") or {}), **env_of(opts.env)}
        proc = Process(args=opts.command, env=env, cwd=opts.workdir or defaults.get("cwd") or "/",
                       user=opts.user if opts.user is not None else defaults.get("user"),
                       terminal=opts.tty, interactive=opts.interactive)
        if opts.privileged:
            from minicontainer.kernel.caps import all_names

            security = Security(capabilities=frozenset(all_names()), no_new_privs=False,
                                privileged=True)
        else:
            added = set()
            for name in opts.cap:
                try:
                    cap = caps.normalize(name)
                except ValueError as e:
                    raise UsageError(f"exec --cap {name}: {e}") from None
                added |= set(caps.all_names()) if cap == "all" else {cap}
            security = Security(
                capabilities=frozenset(defaults.get("capabilities", ())) | added,
                no_new_privs=defaults.get("no_new_privs", True) or opts.no_new_privs,
                privileged=defaults.get("privileged", False))
    proc.preserve_fds = kept_fds(opts.preserve_fds)
    if proc.terminal and opts.detach and not opts.console_socket:
        raise ContainerError("exec -d -t needs --console-socket: nobody would hold the pty")
    from minicontainer.runtime.exec import exec_in

    return exec_in(container, proc, security, detach=opts.detach,
                   pid_file=opts.pid_file and os.path.abspath(opts.pid_file),
                   console_socket=opts.console_socket)
