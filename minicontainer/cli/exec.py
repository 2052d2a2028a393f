"""`minicontainer exec`: run a command in a running container. docker's form and runc's:

    exec [-i] [-t] [-d] [-e K=V] [-u USER] [-w DIR] CONTAINER COMMAND [ARG...]
    exec --process P.json [--detach] [--pid-file F] [--console-socket S] [--preserve-fds N] ID
                                                                     (OCI, as runc)

Without --process the command gets the container's own environment, user, working directory,
capabilities and no_new_privs (from its record), changed by the flags given (runc's too:
--cwd, --env, --user, --cap CAP to add one, --tty, --no-new-privs). With --process the file
says it all, as with runc. --process-label and --apparmor are refused unless empty: this
runtime applies no SELinux label nor AppArmor profile. Either way the command gets the
container's seccomp filter and, unless the container was created without one, a session
keyring of its own.
"""
from __future__ import annotations

import os

from minicontainer.cli._common import kept_fds
from minicontainer.cli.flags import Verb, env_of, whole
from minicontainer.errors import ContainerError, UsageError

VERB = Verb("exec", "[OPTIONS] CONTAINER COMMAND [ARG...]",
            "Run a command in a running container.",
            [("-i, --interactive", "keep stdin open"),
             ("-t, --tty", "allocate a pseudo-terminal"),
             ("-d, --detach", "do not wait for it"),
             ("-e, --env KEY=VALUE...", "set a variable (KEY alone: the host's value)"),
             ("-u, --user USER[:GROUP]", "names from the container's files"),
             ("-w, --workdir, --cwd DIR", "working directory"),
             ("-p, --process FILE", "OCI: the process to run, as process.json"),
             ("--pid-file FILE", "write the new process's pid here"),
             ("--console-socket SOCKET", "OCI: send the pty master here"),
             ("--privileged", "every capability"),
             ("-c, --cap CAP...", "add this capability (CAP_NET_ADMIN), as runc exec --cap"),
             ("--no-new-privs", "set no_new_privs"),
             ("--process-label LABEL", "SELinux label: refused unless empty"),
             ("--apparmor PROFILE", "AppArmor profile: refused unless empty"),
             ("--preserve-fds N", "the process keeps fds 3..3+N-1 (any other is closed), "
              "as runc")],
            ["container", "command*"])


def main(args: list[str], root: str | None) -> int:
    opts = VERB.parse(args)
    preserve = whole("--preserve-fds", opts["preserve_fds"])
    for flag, value, what in (("--process-label", opts["process_label"], "SELinux label"),
                              ("--apparmor", opts["apparmor"], "AppArmor profile")):
        if value:
            raise UsageError(f"exec {flag} {value}: not supported (minicontainer applies no "
                             f"{what})")

    from minicontainer.runtime import api

    container = api.lookup(opts["container"], root)
    if opts["process"]:
        if opts["command"]:
            raise UsageError("exec: give the command in --process or on the line, not both")
        given = [flag for flag, field in (("--env", "env"), ("--user", "user"),
                                          ("--cwd", "workdir"), ("--cap", "cap"),
                                          ("--no-new-privs", "no_new_privs"),
                                          ("--privileged", "privileged")) if opts[field]]
        if given:
            raise UsageError(f"exec: {', '.join(given)} with --process: put it in the "
                             "process JSON (its fields say everything, as with runc)")
        from minicontainer import oci
        from minicontainer.runtime.state import from_json

        try:
            with open(opts["process"], encoding="utf-8") as f:
                process = from_json(f.read())
        except ValueError as e:
            raise ContainerError(f"exec --process {opts['process']}: {e}") from None
        proc, security = oci.to_process(process, for_exec=True)
        if "capabilities" not in process:  # as runc: the container's own
            security = api.exec_process(container, proc.args,
                                        no_new_privs=security.no_new_privs)[1]
        if opts["tty"]:
            proc.terminal = True
    else:
        if not opts["command"]:
            raise UsageError("exec: no command given: minicontainer exec CONTAINER COMMAND")
        added = set()
        for name in opts["cap"]:
            try:
                cap = api.capability_name(name)
            except ValueError as e:
                raise UsageError(f"exec --cap {name}: {e}") from None
            added |= set(api.capability_names()) if cap == "all" else {cap}
        proc, security = api.exec_process(
            container, opts["command"], env=env_of(opts["env"]), user=opts["user"],
            cwd=opts["workdir"], privileged=opts["privileged"], terminal=opts["tty"],
            interactive=opts["interactive"], add_capabilities=added,
            no_new_privs=opts["no_new_privs"])
    proc.preserve_fds = kept_fds(preserve)
    if proc.terminal and opts["detach"] and not opts["console_socket"]:
        raise ContainerError("exec -d -t needs --console-socket: nobody would hold the pty")
    return api.exec(container.id, proc, security, root, exact=True, detach=opts["detach"],
                    pid_file=opts["pid_file"] and os.path.abspath(opts["pid_file"]),
                    console_socket=opts["console_socket"])
