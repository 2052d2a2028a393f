"""`run`'s command line: the flag parser (cli/flags.py) and the spec it builds (cli/run.py),
every refusal included. Pure: no container starts."""
from __future__ import annotations

import os

import pytest

from minicontainer.cli import flags, run
from minicontainer.errors import UsageError
from minicontainer.spec import DEFAULT_NAMESPACES


def spec_of(*args):
    return run.build_spec(*run.parse(list(args)))


def refused(*args) -> str:
    with pytest.raises(UsageError) as e:
        spec_of(*args)
    return str(e.value)


# --- the parser ----------------------------------------------------------------------------

def test_parsing_stops_at_the_rootfs_and_keeps_the_command_untouched():
    opts, rest = run.parse(["-e", "A=1", "./rootfs", "ls", "-l", "--all", "-e", "X"])
    assert opts["env"] == ["A=1"]
    assert rest == ["./rootfs", "ls", "-l", "--all", "-e", "X"]


def test_bundled_short_flags():
    opts, rest = run.parse(["-it", "r", "sh"])
    assert opts["interactive"] is True and opts["tty"] is True and rest == ["r", "sh"]


def test_long_flag_with_equals_and_short_flag_with_attached_value():
    opts, _ = run.parse(["--name=web", "-eKEY=VALUE", "-wdir", "r", "c"])
    assert opts["name"] == "web" and opts["env"] == ["KEY=VALUE"] and opts["workdir"] == "dir"


def test_double_dash_ends_the_options():
    opts, rest = run.parse(["--rm", "--", "-rootfs-with-a-dash", "c"])
    assert opts["rm"] is True and rest == ["-rootfs-with-a-dash", "c"]


def test_a_lone_dash_is_a_positional():
    assert run.parse(["-", "c"])[1] == ["-", "c"]


def test_repeatable_flags_collect_every_value():
    opts, _ = run.parse(["-v", "/a:/a", "--volume", "/b:/b", "-e", "A", "r", "c"])
    assert opts["volume"] == ["/a:/a", "/b:/b"] and opts["env"] == ["A"]


def test_a_repeated_single_flag_keeps_the_last_value():
    assert run.parse(["-w", "/a", "-w", "/b", "r", "c"])[0]["workdir"] == "/b"


@pytest.mark.parametrize("args, words", [
    (["--bogus", "r", "c"], "unknown flag: --bogus"),
    (["-Z", "r", "c"], "unknown flag: -Z"),
    (["-iZ", "r", "c"], "unknown flag: -Z"),
    (["--name"], "flag needs an argument: --name"),
    (["-e"], "flag needs an argument: -e"),
    (["--rm=yes", "r", "c"], "flag --rm takes no value"),
])
def test_parser_refusals(args, words):
    with pytest.raises(UsageError, match=words):
        run.parse(args)


def test_env_of_sets_and_takes_the_hosts_value(monkeypatch):
    monkeypatch.setenv("FROM_HOST", "h")
    monkeypatch.delenv("NOT_ON_HOST", raising=False)
    assert flags.env_of(["A=1", "B=", "C=x=y", "FROM_HOST", "NOT_ON_HOST"]) == \
        {"A": "1", "B": "", "C": "x=y", "FROM_HOST": "h"}


def test_env_of_refuses_an_empty_key():
    with pytest.raises(UsageError, match="invalid environment variable"):
        flags.env_of(["=x"])


# --- the spec: what is applied -------------------------------------------------------------

def test_defaults():
    spec = spec_of("./rootfs", "/bin/true")
    assert spec.root.path == os.path.abspath("./rootfs")
    assert spec.root.readonly is False and spec.root.pivot_root is True
    assert spec.process.args == ["/bin/true"] and spec.process.cwd == "/"
    assert spec.process.terminal is False and spec.process.interactive is False
    assert spec.network == "none" and spec.namespaces == DEFAULT_NAMESPACES
    assert spec.mounts == [] and spec.ports == [] and spec.resources is None
    assert spec.security.no_new_privs is True and spec.security.privileged is False
    # docker's default set, CAP_MKNOD included, with docker's device allowlist to make it safe
    assert "mknod" in spec.security.capabilities
    assert spec.device_rules[0] == (False, "a", None, None, "rwm")
    assert spec.name is None and spec.hostname is None


def test_process_fields():
    spec = spec_of("-it", "--init", "-u", "1000:100", "-w", "/srv", "-h", "box",
                   "-e", "A=1", "r", "sh", "-c", "x")
    p = spec.process
    assert (p.terminal, p.interactive, p.init) == (True, True, True)
    assert p.user == "1000:100" and p.cwd == "/srv" and p.env == {"A": "1"}
    assert p.args == ["sh", "-c", "x"] and spec.hostname == "box"


def test_read_only_and_chroot():
    spec = spec_of("--read-only", "--chroot", "r", "c")
    assert spec.root.readonly is True and spec.root.pivot_root is False


def test_volumes_are_normalised_and_keep_their_mode():
    spec = spec_of("-v", "/tmp//a/:/data/", "-v", "/b:/c:ro", "-v", "/d:/e:rw", "r", "c")
    assert [(m.kind, m.source, m.target, m.readonly) for m in spec.mounts] == [
        ("bind", "/tmp/a", "/data", False), ("bind", "/b", "/c", True),
        ("bind", "/d", "/e", False)]


def test_tmpfs_options():
    spec = spec_of("--tmpfs", "/scratch", "--tmpfs", "/ro:ro,size=1m", "r", "c")
    plain, ro = spec.mounts
    assert (plain.kind, plain.target, plain.readonly, plain.options) == \
        ("tmpfs", "/scratch", False, "mode=1777")
    assert (ro.readonly, ro.options) == (True, "size=1m")


def test_volumes_come_before_tmpfs_mounts():
    spec = spec_of("--tmpfs", "/t", "-v", "/a:/b", "r", "c")
    assert [m.kind for m in spec.mounts] == ["bind", "tmpfs"]


@pytest.mark.parametrize("network, has_net_namespace", [
    ("none", True), ("bridge", True), ("host", False), ("container:web", False)])
def test_network_modes(network, has_net_namespace):
    spec = spec_of("--network", network, "r", "c")
    assert spec.network == network
    assert ("net" in spec.namespaces) is has_net_namespace
    assert set(spec.namespaces) - {"net"} == set(DEFAULT_NAMESPACES) - {"net"}


def test_publish_implies_bridge_and_is_parsed():
    spec = spec_of("-p", "127.0.0.1:8080:80/udp", "-p", "9000:90", "r", "c")
    assert spec.network == "bridge"
    assert [(p.host_ip, p.host_port, p.container_port, p.protocol) for p in spec.ports] == \
        [("127.0.0.1", 8080, 80, "udp"), (None, 9000, 90, "tcp")]


def test_cap_add_and_drop():
    spec = spec_of("--cap-add", "CAP_NET_ADMIN", "--cap-add", "sys_time", "--cap-drop",
                   "NET_RAW", "r", "c")
    caps = spec.security.capabilities
    assert {"net_admin", "sys_time"} <= caps and "net_raw" not in caps and "chown" in caps


def test_cap_drop_all_keeps_nothing_even_with_add():
    assert spec_of("--cap-drop", "ALL", "--cap-add", "kill", "r", "c").security.capabilities \
        == frozenset()


def test_cap_add_all_and_privileged_keep_everything():
    from minicontainer.kernel import caps

    privileged = spec_of("--privileged", "r", "c").security
    assert privileged.privileged is True and privileged.capabilities == set(caps.all_names())
    assert "mknod" in privileged.capabilities


def test_no_new_privileges_can_be_turned_off():
    assert spec_of("--security-opt", "no-new-privileges=false", "r", "c").security.no_new_privs is False
    assert spec_of("--security-opt", "no-new-privileges", "r", "c").security.no_new_privs is True


def test_valid_names():
    assert spec_of("--name", "web-1.a_b", "r", "c").name == "web-1.a_b"


# --- the spec: every refusal ---------------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["r"], "needs a rootfs and a command"),
    ([], "needs a rootfs and a command"),
    (["--network", "overlay", "r", "c"], "unknown network mode 'overlay'"),
    (["--network", "container:", "r", "c"], "unknown network mode"),
    (["--network", "host", "-p", "80:80", "r", "c"], "-p/--publish needs --network bridge"),
    (["-p", "80:", "r", "c"], "invalid --publish"),  # `-p 80` is valid: a free host port
    (["-p", "80:80/sctp", "r", "c"], "protocol 'sctp'"),
    (["-p", "1.2.3:80:80", "r", "c"], "is not an IPv4 address"),
    (["-p", "0:80", "r", "c"], "'0' is not a port number"),
    (["-p", "80:70000", "r", "c"], "'70000' is not a port number"),
    (["-w", "relative", "r", "c"], "must be an absolute path"),
    (["-v", "/tmp", "r", "c"], "invalid volume specification"),
    (["-v", ":/x", "r", "c"], "invalid volume specification"),
    (["-v", "/a:/b:ro:x", "r", "c"], "invalid volume specification"),
    (["-v", "/tmp:/x:rx", "r", "c"], "invalid volume mode 'rx'"),
    (["-v", "relative:/x", "r", "c"], "the host path must be absolute"),
    (["-v", "/tmp:relative", "r", "c"], "the container path must be absolute and not /"),
    (["-v", "/tmp:/", "r", "c"], "the container path must be absolute and not /"),
    (["--tmpfs", "relative", "r", "c"], "invalid tmpfs mount"),
    (["--tmpfs", "/", "r", "c"], "invalid tmpfs mount"),
    (["--cap-add", "NOT_A_CAP", "r", "c"], "unknown capability 'NOT_A_CAP'"),
    (["--cap-drop", "CAP_BOGUS", "r", "c"], "unknown capability 'CAP_BOGUS'"),
    (["--device", "/etc/hostname", "r", "c"], "/etc/hostname is not a device node"),
    (["--device", "/dev/null:/tmp/null", "r", "c"], "must be under /dev"),
    (["--device", "/dev/null:rwx", "r", "c"], "are not of r, w, m"),
    (["--security-opt", "apparmor=unconfined", "r", "c"], "unsupported --security-opt"),
    (["--security-opt", "no-new-privileges=maybe", "r", "c"], "unsupported --security-opt"),
])
def test_build_spec_refusals(args, words):
    assert words in refused(*args)


def test_cap_mknod_with_privileged_is_accepted():
    assert "mknod" in spec_of("--privileged", "--cap-add", "MKNOD", "r", "c").security.capabilities


def test_a_plain_run_does_not_import_the_resource_flags_module():
    import subprocess
    import sys

    code = ("import sys; from minicontainer.cli import run; "
            "run.build_spec(*run.parse(['r', 'c'])); "
            "print(sorted(m for m in ('minicontainer.cli.resources', 'json', "
            "'minicontainer.runtime.network') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr


# --- compare: where its options go ---------------------------------------------------------

def compare_args(*args):
    from minicontainer.cli import compare

    return compare.parse_args(list(args))


def test_compare_options_before_the_rootfs_or_between_it_and_the_command():
    for args in (["-n", "3", "--io", "r", "--", "true", "-x"],
                 ["r", "-n", "3", "--io", "--", "true", "-x"],
                 ["-n", "3", "r", "--io", "--", "true", "-x"]):
        opts, rootfs, command = compare_args(*args)
        assert (opts["runs"], opts["io"]) == ("3", True), args
        assert rootfs == os.path.abspath("r") and command == ["true", "-x"]


def test_compare_without_double_dash():
    assert compare_args("r", "true", "-x")[2] == ["true", "-x"]


@pytest.mark.parametrize("args, words", [
    (["r", "-n", "1", "true"], "'-n' after ROOTFS: options go before ROOTFS or between ROOTFS and --"),
    (["r", "true", "--", "x"], "'true' between ROOTFS and --: the command goes after --"),
    (["r", "--bogus", "--", "x"], "unknown flag: --bogus"),
    (["r", "--"], "needs a rootfs and a command"),
    (["r"], "needs a rootfs and a command"),
])
def test_compare_refusals_say_where_things_go(args, words):
    with pytest.raises(UsageError) as e:
        compare_args(*args)
    assert words in str(e.value)
