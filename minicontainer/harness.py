"""The Python API for test harnesses: `minicontainer.run` and `minicontainer.Container`.

    result = minicontainer.run("./rootfs", ["echo", "hi"], text=True)   # like subprocess.run
    with minicontainer.Container("./rootfs", ["httpd", "-f", "-p", "80"],
                                 ports={80: None}) as web:
        web.wait_for_port(80)
        url = f"http://127.0.0.1:{web.host_port(80)}/"

In process, over the runtime's own API (runtime/api.py): no interpreter start, no CLI. The
options are the CLI's flags by their long names (env, user, workdir, volumes, tmpfs,
network, ports, hostname, name, init, read_only, privileged, cap_add, cap_drop and the
resource limits: memory, cpus, pids_limit...), turned into a spec by the very code that
turns `minicontainer run`'s flags into one (cli/run.build_spec): the same checks, the same
one-line errors, raised before anything starts. See docs/harness.md.
"""
from __future__ import annotations

import os
import re
import select
import socket
import time
from typing import Any, Mapping, Sequence

from minicontainer.errors import ContainerError, ExitStatusError, Timeout, UsageError
from minicontainer.runtime import api

# run()'s keyword options that map one to one to a `minicontainer run` flag's field
_SIMPLE = ("user", "workdir", "hostname", "name")
_FLAGS = ("init", "read_only", "privileged")
_LISTS = ("cap_add", "cap_drop", "security_opt")


class Result:
    """What run() and Container.exec() return: subprocess.CompletedProcess's fields."""

    __slots__ = ("args", "returncode", "stdout", "stderr")

    def __init__(self, args, returncode: int, stdout, stderr):
        self.args, self.returncode, self.stdout, self.stderr = args, returncode, stdout, stderr

    def check_returncode(self) -> None:
        if self.returncode:
            raise ExitStatusError(self.returncode, self.args, self.stdout, self.stderr)

    def __repr__(self) -> str:
        return (f"Result(args={self.args!r}, returncode={self.returncode}, "
                f"stdout={self.stdout!r}, stderr={self.stderr!r})")


def run(rootfs: str, argv: Sequence[str], *, input: bytes | str | None = None,
        timeout: float | None = None, text: bool = False, check: bool = False,
        root: str | None = None, **options: Any) -> Result:
    """Run `argv` in a new container of `rootfs` to completion, its output captured.

    input: written to its stdin (else /dev/null); timeout: seconds, then it is killed and
    Timeout raised (with the output so far); text: str instead of bytes; check: raise
    ExitStatusError unless it exits 0; root: the state root. A command that is not in the
    rootfs raises CommandNotFound, one that cannot be executed CannotExecute (the CLI's 127
    and 126); a bad option UsageError, before anything starts."""
    argv = _argv(argv)
    spec = _spec(rootfs, argv, options)
    out, err, code = _with_pipes(
        lambda stdio, pump: api.run(spec, root, stdio=stdio, supervise=pump),
        input, timeout, f"container {argv!r}")
    return _result(argv, code, out, err, text, check)


class Container:
    """A container that runs in the background (`run -d`), as a service for tests.

    Container(rootfs, argv, **options) checks the options (the same as run()'s) at once;
    start() starts it; `with Container(...) as c:` starts it and, on leaving, kills and
    removes it. lifeline=True (the default): it also dies, and is removed, when this
    process does, even by SIGKILL (its shim watches us: docs/harness.md, "The reaper")."""

    def __init__(self, rootfs: str, argv: Sequence[str], *, root: str | None = None,
                 lifeline: bool = True, **options: Any):
        self.rootfs, self.argv, self.options = rootfs, _argv(argv), options
        self.root, self.lifeline = root, lifeline
        _spec(rootfs, self.argv, options)  # a bad option fails here, not at start()
        self.id: str | None = None
        self._record: dict = {}

    # Lifetime.

    def start(self) -> "Container":
        if self.id is not None:
            raise ContainerError(f"container {self.name} was started already")
        spec = _spec(self.rootfs, self.argv, self.options)  # a fresh one: a start uses it up
        self.id = api.run_detached(spec, self.root, lifeline=self.lifeline)
        self._record = api.state(self.id, self.root)
        return self

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds (a stopped one: nothing to do)."""
        api.stop(self._id(), timeout, self.root)

    def kill(self, signal: int = 9) -> None:
        api.kill(self._id(), signal, root=self.root)

    def remove(self) -> None:
        """Kill it if it still runs, and release everything it has (safe to call twice)."""
        if self.id is None:
            return
        try:
            api.delete(self.id, force=True, root=self.root)
        except ContainerError:
            if self._exists():
                raise

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait until it exits; its exit status (128+N: killed by signal N)."""
        code = api.wait(self._id(), timeout, self.root)
        if code is None and self.status() != "stopped":
            raise Timeout(f"container {self.name} did not exit within {timeout} s", timeout)
        return code

    def __enter__(self) -> "Container":
        return self.start() if self.id is None else self

    def __exit__(self, *exc) -> None:
        self.remove()

    # What it is.

    @property
    def name(self) -> str:
        return self.options.get("name") or (self.id[:12] if self.id else "(not started)")

    @property
    def ip(self) -> str | None:
        """Its address on the bridge network (None without one)."""
        return self._record.get("ip")

    def status(self) -> str:
        """creating, running, or stopped (see docs/lifecycle.md)."""
        return api.state(self._id(), self.root)["status"]

    def host_port(self, port: int, protocol: str = "tcp") -> int:
        """The host port that forwards to the container's `port` (ports={...} at start)."""
        for p in self._record.get("ports") or ():
            if p["container_port"] == int(port) and p["protocol"] == protocol:
                return p["host_port"]
        raise ContainerError(f"container {self.name} publishes no port {port}/{protocol}")

    def logs(self) -> bytes:
        """What it has written to stdout and stderr so far."""
        return api.logs(self._id(), self.root)

    def stats(self) -> dict:
        """Its cgroup's usage now: memory (bytes), pids, cpu_usec. Needs cgroup v2's memory
        and pids controllers; ContainerError naming what is missing where there are none."""
        from minicontainer.kernel import cgroupfs

        container = api.lookup(self._id(), self.root)
        path = next((v for k, v in container.owned() if k == "cgroup"), None)
        missing = [c for c in ("memory", "pids") if path is None or
                   not os.path.exists(f"{path}/{c}.current")]
        if missing:
            raise ContainerError(
                f"stats() of container {self.name} needs cgroup v2's {' and '.join(missing)} "
                "controller(s), which this host does not delegate (see docs/cgroups.md)")
        return {"memory": cgroupfs.single(f"{path}/memory.current"),
                "pids": cgroupfs.single(f"{path}/pids.current"),
                "cpu_usec": cgroupfs.keyed(f"{path}/cpu.stat").get("usage_usec")}

    # Using it.

    def exec(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
             user: str | None = None, workdir: str | None = None, privileged: bool = False,
             input: bytes | str | None = None, timeout: float | None = None,
             text: bool = False, check: bool = False) -> Result:
        """Run one more command in it, like run(): its own environment, user and working
        directory unless given here."""
        argv = _argv(argv)
        container = api.lookup(self._id(), self.root)
        proc, security = api.exec_process(container, argv, env=_env(env), user=user,
                                          cwd=workdir, privileged=privileged)
        out, err, code = _with_pipes(
            lambda stdio, pump: api.exec(self.id, proc, security, self.root, stdio=stdio,
                                         supervise=pump),
            input, timeout, f"exec {argv!r} in container {self.name}")
        return _result(argv, code, out, err, text, check)

    def wait_for_port(self, port: int, timeout: float = 30, protocol: str = "tcp") -> None:
        """Until a TCP connection to the container's `port` succeeds: through its published
        host port on 127.0.0.1 if it has one, else to its bridge address."""
        if protocol != "tcp":
            raise UsageError("wait_for_port: only tcp ports can be probed")
        published = any(p["container_port"] == int(port) and p["protocol"] == "tcp"
                        for p in self._record.get("ports") or ())
        if published:
            where = ("127.0.0.1", self.host_port(port))
        elif self.ip:
            where = (self.ip, int(port))
        else:
            raise ContainerError(f"container {self.name}: port {port} is neither published "
                                 "nor reachable (no bridge network): nothing to wait for")
        what = f"port {port}/tcp of container {self.name} ({where[0]}:{where[1]})"

        def ready():
            try:
                socket.create_connection(where, timeout=1).close()
                return True
            except OSError:
                return False

        self._wait_until(ready, what, timeout)

    def wait_for_log(self, pattern: str | bytes, timeout: float = 30) -> re.Match:
        """Until its output matches the regular expression `pattern`; the match (of bytes
        for a bytes pattern, else of its output decoded as UTF-8)."""
        regex = re.compile(pattern)
        found: list = []

        def ready():
            output = self.logs()
            found[:] = [regex.search(output if isinstance(pattern, bytes) else
                                     output.decode(errors="replace"))]
            return found[0] is not None

        self._wait_until(ready, f"output matching {pattern!r} from container {self.name}",
                         timeout)
        return found[0]

    def _wait_until(self, ready, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.005
        while not ready():
            if self.status() == "stopped":
                if ready():  # what it did just before it exited counts
                    return
                raise ContainerError(f"waiting for {what}: the container exited (status "
                                     f"{self.wait(5)}); its output: "
                                     f"{self.logs()[-500:].decode(errors='replace')!r}")
            if time.monotonic() > deadline:
                raise Timeout(f"timed out after {timeout} s waiting for {what}", timeout)
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _id(self) -> str:
        if self.id is None:
            raise ContainerError("the container is not started: call start() first")
        return self.id

    def _exists(self) -> bool:
        return os.path.isdir(os.path.join(api.store(self.root).root, "containers", self.id))

    def __repr__(self) -> str:
        return f"<Container {self.name} {self.argv!r}>"


# From keyword options to a spec: through the CLI's own flag handling.

def _argv(argv) -> list[str]:
    if isinstance(argv, (str, bytes)) or not argv:
        raise UsageError(f"argv must be a non-empty list of strings, not {argv!r}")
    return [str(a) for a in argv]


def _spec(rootfs: str, argv: list[str], options: dict):
    """The spec `minicontainer run` would build from the same settings as flags."""
    from minicontainer.cli import run as cli_run

    opts: dict = {field: [] for field in cli_run.REPEATABLE}
    for key, value in options.items():
        if value is None or value is False:
            continue
        if key in _SIMPLE:
            opts[key] = str(value)
        elif key in _FLAGS or key == "stats":
            opts[key] = True
        elif key in _LISTS:
            opts[key] = [value] if isinstance(value, str) else [str(v) for v in value]
        elif key == "env":
            opts["env"] = [f"{k}={v}" for k, v in _env(value).items()]
        elif key == "volumes":
            opts["volume"] = _volumes(value)
        elif key == "tmpfs":
            opts["tmpfs"] = _tmpfs(value)
        elif key == "ports":
            opts["publish"] = _ports(value)
        elif key == "network":
            opts["network"] = str(value)
        elif key in cli_run.RESOURCE_FIELDS:
            opts[key] = value if isinstance(value, list) else str(value)
        else:
            raise UsageError(f"unknown option {key}= (see help(minicontainer.run))")
    if "network" not in opts and not opts["publish"]:
        opts["network"] = "none"
    spec = cli_run.build_spec(opts, [rootfs, *argv])
    if spec.name is not None:
        from minicontainer.runtime.state import check_name

        check_name(spec.name)  # the store checks it at start too; Container() fails now
    return spec


def _env(env) -> dict:
    if env is None:
        return {}
    if isinstance(env, Mapping):
        return {str(k): str(v) for k, v in env.items()}
    out = {}
    for item in env:  # ["KEY=VALUE", ...]
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UsageError(f"invalid environment variable: {item!r} (want KEY=VALUE)")
        out[key] = value
    return out


def _volumes(volumes) -> list[str]:
    """{HOST: CONTAINER}, {HOST: (CONTAINER, "ro")}, {HOST: {"bind": .., "mode": ..}}
    (docker-py's form) or ["HOST:CONTAINER[:ro]"] -> -v values."""
    if not isinstance(volumes, Mapping):
        return [str(v) for v in volumes]
    out = []
    for host, target in volumes.items():
        if isinstance(target, Mapping):
            target = (target.get("bind"), target.get("mode", "rw"))
        if isinstance(target, str):
            target = (target,)
        out.append(":".join((str(host), *map(str, target))))
    return out


def _ports(ports) -> list[str]:
    """{80: None} (a free host port), {80: 8080}, {"53/udp": ("127.0.0.1", None)} or
    ["127.0.0.1::80"] -> -p values."""
    if not isinstance(ports, Mapping):
        return [str(p) for p in ports]
    out = []
    for inside, host in ports.items():
        host_ip, host_port = host if isinstance(host, tuple) else (None, host)
        host_port = "" if host_port is None else str(host_port)
        if host_ip:
            out.append(f"{host_ip}:{host_port}:{inside}")  # 127.0.0.1::80/udp
        else:
            out.append(f"{host_port}:{inside}" if host_port else str(inside))  # 8080:80, 80
    return out


def _tmpfs(tmpfs) -> list[str]:
    """"/t", ["/t"] or {"/t": "size=1m"} -> --tmpfs values."""
    if isinstance(tmpfs, str):
        return [tmpfs]
    if isinstance(tmpfs, Mapping):
        return [f"{target}:{options}" if options else target
                for target, options in tmpfs.items()]
    return [str(t) for t in tmpfs]


# Pipes in, pipes out.

def _with_pipes(start, input, timeout, what: str):
    """start(stdio, pump) runs the process with `stdio` as its fds and calls pump(pid) while
    it runs; pump writes `input`, collects stdout and stderr, and kills on `timeout`.
    Returns (stdout, stderr, status)."""
    data = input.encode() if isinstance(input, str) else input
    own: set[int] = set()  # every fd of ours still open, closed whatever happens

    def pipe():
        r, w = os.pipe()  # close-on-exec: the container sees them only as its 0, 1, 2
        own.update((r, w))
        return r, w

    def close(fd):
        if fd in own:
            own.discard(fd)
            os.close(fd)

    if data is None:
        in_r = in_w = None  # the container's own stdin: /dev/null
    else:
        in_r, in_w = pipe()
    out_r, out_w = pipe()
    err_r, err_w = pipe()
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    deadline = None if timeout is None else time.monotonic() + timeout

    def pump(pid):
        for fd in (in_r, out_w, err_w):  # the child has its copies now
            close(fd)
        poller = select.poll()
        for fd in (out_r, err_r):
            poller.register(fd, select.POLLIN)
        pending = memoryview(data or b"")
        if in_w is not None:
            if pending:
                os.set_blocking(in_w, False)
                poller.register(in_w, select.POLLOUT)
            else:
                close(in_w)
        readers = 2
        while readers:
            events = poller.poll(_left(deadline))
            if not events:
                raise Timeout(f"{what} did not exit within {timeout} s", timeout,
                              b"".join(chunks[out_r]), b"".join(chunks[err_r]))
            for fd, event in events:
                if fd == in_w:
                    try:
                        pending = pending[os.write(in_w, pending[:65536]):]
                    except BrokenPipeError:
                        pending = pending[:0]
                    if not pending:
                        poller.unregister(in_w)
                        close(in_w)
                    continue
                chunk = os.read(fd, 65536)
                if chunk:
                    chunks[fd].append(chunk)
                else:
                    poller.unregister(fd)
                    close(fd)
                    readers -= 1
        if deadline is not None:  # its output is closed; it may still run: wait for that
            pidfd = os.pidfd_open(pid)
            own.add(pidfd)
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            if not poller.poll(_left(deadline)):
                raise Timeout(f"{what} did not exit within {timeout} s", timeout,
                              b"".join(chunks[out_r]), b"".join(chunks[err_r]))

    try:
        status = start((in_r, out_w, err_w), pump)
    finally:
        for fd in list(own):
            close(fd)
    return b"".join(chunks[out_r]), b"".join(chunks[err_r]), status


def _left(deadline: float | None) -> int | None:
    """poll()'s timeout in ms until `deadline` (None: no deadline)."""
    return None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))


def _result(argv, code: int, out: bytes, err: bytes, text: bool, check: bool) -> Result:
    if text:
        out, err = out.decode(errors="replace"), err.decode(errors="replace")
    result = Result(argv, code, out, err)
    if check:
        result.check_returncode()
    return result
