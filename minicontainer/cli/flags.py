"""The one argument parser of the command line: the global options, `run`, `vm run`,
`compare` and every lifecycle and OCI verb. No argparse: it costs ~8 ms to import (~30 ms with
the re, enum and shutil it pulls in), which every container start and every engine's call of
`state`, `kill` or `delete` would pay.

Two layers:
- parse(args, flags): {flag: (field, takes a value)} -> ({field: value given}, the rest).
  Stops at the first argument that is not an option (docker's rule: what follows ROOTFS is
  the command, and the global options stop at the verb).
- Verb: a verb's usage, its options as help lines ("-b, --bundle DIR", "what it does") from
  which both the flag table and `VERB --help` are made, and its named positionals.

The spellings accepted are those of runc's clients (urfave/cli on Go's flag package) and of
docker's (pflag): `--flag value`, `--flag=value`, a switch as `--flag=true|false`, `--` to end
the options, and with go_style the single-dash long form (`-pid-file F`, `-force`), else
bundled short flags (`-it`) and a short flag's value attached (`-eKEY=VALUE`).
"""
from __future__ import annotations

import os
import sys

from minicontainer.errors import UsageError

_BOOLS = {"true": True, "1": True, "t": True, "false": False, "0": False, "f": False}


class Help(Exception):
    """`VERB --help` was asked for and printed: the command line ends here, exit 0."""


def parse(args: list[str], flags: dict, repeatable=(), go_style=False) -> tuple[dict, list[str]]:
    """Split ARGS into {field: value} and the arguments from the first non-option on (a `--`
    that ends the options is dropped). Fields in `repeatable` collect every value in a list."""
    opts: dict = {k: [] for k in repeatable}
    args = list(args)
    i = _options(args, 0, flags, repeatable, go_style, opts)
    if i < len(args) and args[i] == "--":
        i += 1
    return opts, args[i:]


def _options(args: list[str], i: int, flags: dict, repeatable, go_style: bool, opts: dict) -> int:
    """Parse the options from args[i] on into opts (args is rewritten where a bundle of short
    flags is split); return the index of the first argument that is not one (or `--`)."""
    while i < len(args):
        arg = args[i]
        if arg == "--" or not arg.startswith("-") or arg == "-":
            return i
        name, eq, inline = arg.partition("=")
        if not arg.startswith("--") and len(name) > 2:
            if go_style and "-" + name in flags:
                name = "-" + name  # Go's flag package: -pid-file is --pid-file
            elif flags.get(arg[:2], (None, False))[1]:
                name, eq, inline = arg[:2], "=", arg[2:]  # -eKEY=VALUE
            else:
                args[i:i + 1] = [f"-{c}" for c in arg[1:]]  # -it is -i -t
                continue
        if name not in flags:
            raise UsageError(f"unknown flag: {name}")
        field, takes_value = flags[name]
        if takes_value:
            if eq:
                value = inline
            elif i + 1 < len(args):
                i += 1
                value = args[i]
            else:
                raise UsageError(f"flag needs an argument: {name}")
        elif eq:
            if inline.lower() not in _BOOLS:
                raise UsageError(f"flag {name} takes no value (or =true, =false): {arg}")
            value = _BOOLS[inline.lower()]
        else:
            value = True
        if field in repeatable:
            opts[field].append(value)
        else:
            opts[field] = value
        i += 1
    return i


class Verb:
    """A verb's command line, declared once:

        Verb("kill", "[OPTIONS] CONTAINER [SIGNAL]", "Send a signal ...",
             [("-s, --signal SIGNAL", "signal name or number"), ("-a, --all", "...")],
             ["container", "sig?"])

    An option line names its spellings, then a value's name if it takes one; its field is
    its first long name ("--pid-file" -> "pid_file"; a positional needs another name); a value name ending in "..." may be
    given many times (a list). Positionals: "name" required, "name?" optional, "name+" one
    or more, "name*" the rest of the line verbatim (a command and its arguments: options
    after it are its own). Options may come between positionals (as argparse allowed), up
    to a "*" positional. parse() gives every field: False, None or [] when not given.
    """

    def __init__(self, name: str, usage: str, about: str, options=(), positionals=(),
                 go_style: bool = True):
        self.name, self.usage, self.about = name, usage, about
        self.options, self.positionals, self.go_style = list(options), list(positionals), go_style
        self.flags: dict = {"-h": ("help", False), "--help": ("help", False)}
        self.repeatable: set = set()
        self.defaults: dict = {"help": False}
        for spelling, _ in self.options:
            words = spelling.replace(",", " ").split()
            names = [w for w in words if w.startswith("-")]
            value = " ".join(w for w in words if not w.startswith("-"))
            longs = [n for n in names if n.startswith("--")]
            field = (longs or names)[0].lstrip("-").replace("-", "_")
            for n in names:
                self.flags[n] = (field, bool(value))
            if value.endswith("..."):
                self.repeatable.add(field)
            self.defaults[field] = [] if value.endswith("...") else (None if value else False)

    def parse(self, args: list[str]) -> dict:
        """{field: value} for every option and positional; UsageError (one line, naming the
        verb) when the line is wrong; Help after printing the help for -h/--help."""
        try:
            return self._parse(list(args))
        except UsageError as e:
            raise UsageError(f"{self.name}: {e} (see 'minicontainer {self.name} --help')") \
                from None

    def _parse(self, args: list[str]) -> dict:
        opts = dict(self.defaults)
        opts.update({k: [] for k in self.repeatable})
        given: list[str] = []
        i = 0
        while True:
            i = _options(args, i, self.flags, self.repeatable, self.go_style, opts)
            if opts["help"]:
                sys.stdout.write(self.help())
                raise Help()
            if i < len(args) and args[i] == "--":
                given += args[i + 1:]
                break
            if i >= len(args):
                break
            if self.positionals[-1:] and self.positionals[-1].endswith("*") and \
                    len(given) == len(self.positionals) - 1:
                given += args[i:]  # the command: its options are its own
                break
            given.append(args[i])
            i += 1
        for name in self.positionals:
            field, kind = name.rstrip("?+*"), name[-1]
            if kind == "*" or kind == "+":
                if kind == "+" and not given:
                    raise UsageError(f"missing {field.upper()}: {self.name} {self.usage}")
                opts[field], given = given, []
            elif given:
                opts[field] = given.pop(0)
            elif kind == "?":
                opts[field] = None
            else:
                raise UsageError(f"missing {field.upper()}: {self.name} {self.usage}")
        if given:
            raise UsageError(f"unexpected argument {given[0]!r}: {self.name} {self.usage}")
        return opts

    def help(self) -> str:
        lines = [f"Usage: minicontainer {self.name} {self.usage}", "", self.about]
        if self.options:
            lines += ["", "Options:"]
            for spelling, text in self.options:
                lines.append(f"  {spelling:24} {text}" if len(spelling) <= 24 else
                             f"  {spelling}\n  {'':24} {text}")
        return "\n".join(lines) + "\n"


def whole(flag: str, text: str | None, default: int = 0) -> int:
    """A flag's value as a whole number (None: not given, the default)."""
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"invalid value {text!r} for {flag}: want a whole number") from None


def env_of(items: list[str]) -> dict:
    """-e KEY=VALUE sets, -e KEY takes the host's value (skipped when the host has none).
    Keys are checked where every front end's are (runtime/launch.check_env)."""
    env = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key:  # `-e =x` or `-e ""`: nothing to name
            raise UsageError(f"invalid environment variable: {item!r}")
        if eq:
            env[key] = value
        elif key in os.environ:
            env[key] = os.environ[key]
    return env
