"""The command line: global options, then one module per verb (crun's layout).

    minicontainer [--root DIR] [--trace] VERB ...

Errors end here: one line on stderr, and the exit code of the error's kind (errors.py).
No argparse: it costs ~8 ms to import, which every container start would pay.
"""
from __future__ import annotations

import os
import sys

from minicontainer import __version__
from minicontainer.errors import ContainerError, UsageError

USAGE = """\
Usage: minicontainer [--root DIR] [--trace] COMMAND ...

Commands:
  run [OPTIONS] ROOTFS COMMAND [ARG...]   run a command in a new container
  gc                                      remove what dead runtimes left behind
  vm run [OPTIONS] ROOTFS COMMAND [ARG...]
                                          run the same command in a virtual machine (QEMU)
  compare [OPTIONS] ROOTFS -- COMMAND [ARG...]
                                          measure it as a container and as virtual machines

Global options:
  --root DIR    where runtime state lives (default /run/minicontainer)
  --trace       narrate every syscall of the launch on stderr
  --version     print the version

Run 'minicontainer COMMAND --help' for a command's options.
"""

VERBS = {"run": "minicontainer.cli.run", "gc": "minicontainer.cli.gc",
         "vm": "minicontainer.cli.vm", "compare": "minicontainer.cli.compare"}


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


def _dispatch(args: list[str]) -> int:
    root = None
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if opt in ("-h", "--help"):
            sys.stdout.write(USAGE)
            return 0
        if opt in ("-v", "--version"):
            sys.stdout.write(f"minicontainer version {__version__}\n")
            return 0
        if opt == "--trace":
            os.environ["MINICONTAINER_TRACE"] = "1"
        elif opt == "--root" or opt.startswith("--root="):
            root = opt[7:] if "=" in opt else _value(opt, args)
        else:
            raise UsageError(f"unknown flag: {opt}")
    if not args:
        sys.stderr.write(USAGE)
        return 125
    verb = args.pop(0)
    if verb not in VERBS:
        raise UsageError(f"unknown command {verb!r}; see 'minicontainer --help'")
    if os.geteuid() != 0 and verb not in ("help",):
        raise ContainerError(f"{verb} needs root: try 'sudo minicontainer {verb} ...'")
    import importlib

    module = importlib.import_module(VERBS[verb])
    return module.main(args, root)


def _value(flag: str, args: list[str]) -> str:
    if not args:
        raise UsageError(f"flag needs an argument: {flag}")
    return args.pop(0)


def _say(message: str) -> None:
    sys.stderr.write(f"minicontainer: {message}\n")
