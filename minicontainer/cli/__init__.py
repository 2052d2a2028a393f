"""The command line: global options, then one module per verb (crun's layout).

    minicontainer [--root DIR] [--trace[=json]] [--log FILE] [--log-format text|json] VERB ...

Errors end here: one line on stderr, and the exit code of the error's kind (errors.py).
No argparse: it costs ~8 ms to import, which every container start would pay.
"""
from __future__ import annotations

import os
import sys

from minicontainer import __version__
from minicontainer.cli import flags
from minicontainer.errors import ContainerError, UsageError

USAGE = """\
Usage: minicontainer [--root DIR] [--trace[=json]] COMMAND ...

Commands:
  run [OPTIONS] ROOTFS COMMAND [ARG...]   run a command in a new container
  gc                                      remove what dead runtimes left behind
  vm run [OPTIONS] ROOTFS COMMAND [ARG...]
                                          run the same command in a virtual machine (QEMU)
  compare [OPTIONS] ROOTFS -- COMMAND [ARG...]
                                          measure it as a container and as virtual machines

Long-running containers (docs/lifecycle.md):
  run -d [OPTIONS] ROOTFS COMMAND [ARG...] start it in the background, print its id
  ps [-a]                                 list containers (-a: stopped ones too)
  exec [-i] [-t] [-e ...] [-u ...] [-w ...] CONTAINER COMMAND [ARG...]
                                          run a command inside a running container
  logs [-f] CONTAINER                     what a detached container printed
  stop [-t SECS] CONTAINER...             SIGTERM, then SIGKILL
  kill [-s SIGNAL] CONTAINER              send a signal (default SIGTERM, as runc)
  rm [-f] CONTAINER...                    remove stopped containers
  inspect CONTAINER...                    what is recorded about them, as JSON
  port CONTAINER [PORT[/PROTO]]           its published ports (-p): which host port is which

OCI runtime interface, as runc's (podman --runtime $(command -v minicontainer)):
  create --bundle DIR [--pid-file F] [--console-socket S] [--preserve-fds N] ID
  start ID   state ID   kill ID [SIGNAL] [--all]   delete [--force] ID
  exec --process P.json [--detach] [--pid-file F] [--console-socket S] [--preserve-fds N] ID
  pause ID   resume ID   ps [--format table|json] ID [-- PS_ARGS]
  update [-r FILE|-] [--memory N] [--cpu-quota N] ... ID
  events [--stats] [--interval 5s] ID
  features   spec [--bundle DIR]    (checkpoint and restore: refused, no CRIU)

Global options:
  --root DIR    where runtime state lives (default /run/minicontainer)
  --trace       narrate every syscall of the launch on stderr (--trace=json: one
                JSON object per line, for tools)
  --log FILE    also write errors to FILE (as runc: engines read it)
  --log-format text|json
  --version     print the version

Run 'minicontainer COMMAND --help' for a command's options.
"""

VERBS = {"run": "minicontainer.cli.run", "gc": "minicontainer.cli.gc",
         "vm": "minicontainer.cli.vm", "compare": "minicontainer.cli.compare"}
# Long-running containers and the OCI runtime interface: one module per verb.
VERBS.update({verb: f"minicontainer.cli.{verb}" for verb in (
    "ps", "exec", "logs", "stop", "kill", "rm", "inspect", "port",
    "create", "start", "state", "delete", "features", "spec",
    "pause", "resume", "update", "events", "checkpoint", "restore")})
VERBS["list"] = "minicontainer.cli.ps"  # runc's name for it

# --log / --log-format: where errors also go (runc's global options, which podman passes)
_log = {"path": None, "format": "text"}


def entry() -> None:
    """The console script: main(), then exit without the interpreter's teardown (freeing
    every module costs ~5 ms per container; nothing of ours needs it: files are closed)."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        return _dispatch(args)
    except ContainerError as e:
        _say(str(e))
        return e.exit_code
    except OSError as e:
        _say(str(e))
        return 125
    except KeyboardInterrupt:
        return 130


# The global options, runc's spellings (and crun's --cgroup-manager, which podman passes):
# flag -> (field, takes a value), as cli/flags.py parses them (go_style: -root is --root).
GLOBAL_FLAGS = {
    "-h": ("help", False), "--help": ("help", False),
    "-v": ("version", False), "--version": ("version", False),
    "--trace": ("trace", False), "--root": ("root", True),
    "--log": ("log", True), "--log-format": ("log_format", True),
    "--debug": ("debug", False),  # runc's; errors are all we log
    "--systemd-cgroup": ("systemd_cgroup", False), "--rootless": ("rootless", True),
    "--cgroup-manager": ("cgroup_manager", True),
}


def _dispatch(args: list[str]) -> int:
    args, how = _trace_form(args)
    opts, args = flags.parse(args, GLOBAL_FLAGS, go_style=True)
    if opts.get("help"):
        sys.stdout.write(USAGE)
        return 0
    if opts.get("version"):
        sys.stdout.write(f"minicontainer version {__version__}\n")
        return 0
    env = os.environ.get("MINICONTAINER_TRACE")  # the same switch (=json: --trace=json)
    if opts.get("trace") or env:
        _trace_on(how or ("json" if env == "json" else "text"))
    _log["path"] = opts.get("log")
    _log["format"] = opts.get("log_format", "text")
    if _log["format"] not in ("text", "json"):
        raise UsageError(f"unknown --log-format {_log['format']!r} (text or json)")
    if opts.get("rootless", "false") not in ("false", "auto"):  # auto: root here, so false
        raise UsageError(f"--rootless={opts['rootless']} is not supported: minicontainer runs "
                         "as root only")
    if opts.get("cgroup_manager", "cgroupfs") not in ("cgroupfs", "disabled"):
        raise UsageError(f"--cgroup-manager {opts['cgroup_manager']}: only cgroupfs "
                         "(minicontainer makes its own cgroup v2 per container) or disabled")
    if opts.get("systemd_cgroup"):
        running = "systemd runs here, but " if os.path.isdir("/run/systemd/system") else \
            "systemd is not running here, and "
        raise UsageError(f"--systemd-cgroup is not supported: {running}minicontainer "
                         "has no systemd cgroup driver (it places linux.cgroupsPath as "
                         "runc's cgroupfs driver does: use cgroupfs, podman's "
                         "cgroup_manager = \"cgroupfs\", containerd's SystemdCgroup = false)")
    root = opts.get("root")
    if not args:
        sys.stderr.write(USAGE)
        return 125
    verb = args.pop(0)
    if verb not in VERBS:
        raise UsageError(f"unknown command {verb!r}; see 'minicontainer --help'")
    if os.geteuid() != 0 and verb not in ("help",):
        raise ContainerError(f"{verb} needs root: try 'sudo minicontainer {verb} ...'")
    module = __import__(VERBS[verb], fromlist=["main"])  # importlib costs ~0.6 ms more
    try:
        return module.main(args, root)
    except flags.Help:
        return 0  # VERB --help: printed


def _trace_form(args: list[str]) -> tuple[list[str], str | None]:
    """--trace=json (or =text) among the global options: the form, and the args with a plain
    --trace in its place (flags.parse takes only true/false after a switch's `=`)."""
    args, i = list(args), 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        name, _, value = args[i].partition("=")
        if name in ("--trace", "-trace") and value.lower() not in ("", "true", "t", "1", "false", "f", "0"):
            args[i] = "--trace"
            return args, value
        i += 2 if GLOBAL_FLAGS.get(name, ("", False))[1] and not value else 1
    return args, None


def _trace_on(how: str) -> None:
    from minicontainer.runtime import api

    if how not in ("text", "json"):
        raise UsageError(f"unknown --trace={how} (text or json)")
    api.set_trace(how)


def _say(message: str) -> None:
    sys.stderr.write(f"minicontainer: {message}\n")
    if _log["path"]:
        _write_log("error", message)


def _write_log(level: str, message: str) -> None:
    """One line in runc's log formats; podman shows the last error line of a failed call."""
    import time

    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if _log["format"] == "json":
        import json

        line = json.dumps({"level": level, "msg": message, "time": stamp})
    else:
        line = f'time="{stamp}" level={level} msg="{message}"'
    try:
        with open(_log["path"], "a") as f:
            f.write(line + "\n")
    except OSError:
        pass
