"""The verbs' command lines (cli/flags.py's Verb) as runc's clients spell their calls, every
verb's --help, the global options, and the tiny JSON codec the verbs use instead of json
(runtime/state.py). Pure: no container starts; `main` is called as root would call it, on a
state root that does not exist."""
from __future__ import annotations

import json
import os

import pytest

from minicontainer.cli import VERBS, flags, main
from minicontainer.errors import UsageError


@pytest.fixture
def as_root(monkeypatch):
    """The CLI refuses non-root callers before parsing; these calls touch nothing."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)

KILL = flags.Verb("kill", "[-s SIGNAL] [--all] CONTAINER [SIGNAL]", "Send a signal.",
                  [("-s, --signal SIGNAL", "signal"), ("-a, --all", "every process")],
                  ["container", "sig?"])
EXEC = flags.Verb("exec", "[OPTIONS] CONTAINER COMMAND [ARG...]", "Run a command.",
                  [("-i, --interactive", ""), ("-t, --tty", ""), ("-d, --detach", ""),
                   ("-e, --env KEY=VALUE...", ""), ("-w, --workdir, --cwd DIR", ""),
                   ("--pid-file FILE", ""), ("-p, --process FILE", "")],
                  ["container", "command*"])


def test_the_spellings_runc_clients_use():
    # containerd's shim (go-runc) and conmon: --flag value, --flag=value
    create = __import__("minicontainer.cli.create", fromlist=["VERB"]).VERB
    opts = create.parse(["--bundle", "/b", "--pid-file=/p", "--console-socket", "/s", "c1"])
    assert (opts["bundle"], opts["pid_file"], opts["console_socket"], opts["id"]) == \
        ("/b", "/p", "/s", "c1")
    assert opts["no_pivot"] is False and opts["preserve_fds"] is None
    # Go's flag package: one dash for a long flag, a switch as =true/=false
    opts = create.parse(["-bundle", "/b", "-pid-file=/p", "-no-pivot", "--no-new-keyring=false",
                         "c1"])
    assert (opts["bundle"], opts["pid_file"], opts["no_pivot"], opts["no_new_keyring"]) == \
        ("/b", "/p", True, False)
    # options after a positional, as runc's users and argparse allowed
    assert KILL.parse(["c1", "KILL", "--all"]) == {
        "help": False, "signal": None, "all": True, "container": "c1", "sig": "KILL"}
    assert KILL.parse(["-s", "9", "c1"])["signal"] == "9"


def test_a_command_keeps_its_own_options():
    opts = EXEC.parse(["-it", "-eA=1", "--env", "B=2", "--cwd", "/tmp", "c1", "ls", "-l",
                       "--all"])
    assert opts["interactive"] and opts["tty"] and not opts["detach"]
    assert (opts["env"], opts["workdir"]) == (["A=1", "B=2"], "/tmp")
    assert (opts["container"], opts["command"]) == ("c1", ["ls", "-l", "--all"])
    assert EXEC.parse(["c1", "--", "sh", "-c", "x"])["command"] == ["sh", "-c", "x"]
    assert EXEC.parse(["--process", "/p.json", "--detach", "-pid-file", "/f", "c1"])[
        "command"] == []


def test_lists_are_fresh_for_each_call():
    assert EXEC.parse(["-e", "A=1", "c", "x"])["env"] == ["A=1"]
    assert EXEC.parse(["c", "x"])["env"] == []


@pytest.mark.parametrize("args, message", [
    ([], "kill: missing CONTAINER: kill [-s SIGNAL]"),
    (["c", "TERM", "extra"], "kill: unexpected argument 'extra'"),
    (["--bogus", "c"], "kill: unknown flag: --bogus"),
    (["c", "-s"], "kill: flag needs an argument: -s"),
    (["--all=maybe", "c"], "kill: flag --all takes no value"),
])
def test_errors_are_one_line_naming_the_verb(args, message):
    with pytest.raises(UsageError) as e:
        KILL.parse(args)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
    assert str(e.value).endswith("(see 'minicontainer kill --help')")


def test_every_verb_prints_help_and_exits_0(as_root, capsys):
    for verb in VERBS:
        if verb in ("checkpoint", "restore", "vm", "compare"):  # refused / their own help
            continue
        assert main([verb, "--help"]) == 0, verb
        out = capsys.readouterr().out
        assert out.startswith(f"Usage: minicontainer {'ps' if verb == 'list' else verb}"), out


def test_the_global_options(as_root, capsys):
    assert main(["-root=/nonexistent", "--log-format=json", "--systemd-cgroup=false",
                 "--rootless=false", "--debug", "delete", "--force", "missing"]) == 0
    assert main(["--cgroup-manager", "systemd", "state", "c"]) == 125
    assert main(["--rootless", "true", "state", "c"]) == 125
    assert main(["--root"]) == 125
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[1].strip() for line in err] == [
        "--cgroup-manager systemd", "--rootless=true is not supported",
        "flag needs an argument"]


def test_json_codec_agrees_with_json():
    from minicontainer.runtime.state import from_json, to_json

    value = {"id": "c1", "pid": 42, "ok": True, "none": None, "list": [1, [], {}],
             "annotations": {"k": "quote \" backslash \\ newline \n tab \t é \u2028"}}
    assert json.loads(to_json(value)) == value
    assert json.loads(to_json(value, indent=2)) == value
    assert to_json(value, indent=2).replace("\\u000a", "\\n").replace("\\u0009", "\\t") == \
        json.dumps(value, indent=2, ensure_ascii=False)
    assert from_json(json.dumps(value)) == value
    assert from_json(' {"a": 1.5e3, "b": "\\ud83d\\ude00"}\n') == {"a": 1500.0, "b": "😀"}
    for bad in ("", "{", "{} {}", "[1,]", "nul", "{'a': 1}"):
        with pytest.raises(ValueError):
            from_json(bad)
