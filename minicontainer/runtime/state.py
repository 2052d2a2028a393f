"""The state store: what each container owns, recorded before it is created.

Layout under the state root (default /run/minicontainer, `--root` or MINICONTAINER_ROOT to move):

    containers/<id>/state.json   the record: who watches the container (runtime pid + start
                                 time), the container's own pid + start time, mode, status,
                                 exit code, name, bundle, annotations (see Container.record)
    containers/<id>/liveness     the record's fields gc decides on, as one line of words
                                 (Container.update writes both), so that the gc pass of every
                                 `run` needs no json while the other containers are healthy
    containers/<id>/owned        one line per host resource it owns beyond its directory
                                 ("KIND VALUE": a cgroup, a veth, an address lease...),
                                 appended *before* the resource is created
    containers/<id>/upper, work  the overlay's copy-on-write layer
    containers/<id>/rootfs       the mount point of the container's root (mounted only inside
                                 the container's own mount namespace, so the host never sees it)
    names/<name> -> <id>         a symlink: creating it is the atomic reservation of a name

Cleanup after success, failure, or a SIGKILLed runtime walks the same thing: release each
owned resource (newest first) with the releaser registered for its kind in RELEASERS, then
remove the container's directory and its name link.

Three modes, and what "its runtime died" means for each (`collect_garbage`):
    run       foreground: the container dies with its runtime (PDEATHSIG), so everything goes
    detached  run -d: a small supervising process (the "shim") watches it and records its exit;
              if the shim is gone too, the container may still run; once it has died unwatched
              it is marked stopped (exit code unknown) and keeps its record until `rm`
    oci       create/start: nobody watches (the engine's conmon reaps it); the record stays
              until `delete`, and a dead init simply reads as "stopped"
A container still "creating" whose runtime died is removed in every mode, and so is a detached
one with a lifeline (lifeline_pid, lifeline_start: the Python API's, a test session's) once
that process is gone and its shim too (the shim itself kills and removes it first).

Every start runs that pass over every recorded container, so its common case is cheap: the
`liveness` line and /proc/PID/stat say "nothing to do" with a few small reads and no import;
only a container that needs action has its full record parsed (json) and acted on.
"""
from __future__ import annotations

import os
import time

from minicontainer.errors import ContainerError, UsageError
from minicontainer.kernel import trace

DEFAULT_ROOT = "/run/minicontainer"

# kind -> "module:function" that releases one resource of that kind given its VALUE string.
# Imported only when a container owns such a resource, so gc of plain containers stays cheap
# (and never imports pyroute2). A releaser must succeed when the resource is already gone.
RELEASERS: dict[str, str] = {
    "cgroup": "minicontainer.runtime.cgroups:release",
    "cgroup-parent": "minicontainer.runtime.cgroups:release_parent",
    "lease": "minicontainer.runtime.network:release_lease",
    "port": "minicontainer.runtime.network:release_port",
    "veth": "minicontainer.runtime.network:release_veth",
}


def state_root(explicit: str | None = None) -> str:
    return explicit or os.environ.get("MINICONTAINER_ROOT") or DEFAULT_ROOT


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _proc_stat(pid: int) -> tuple[bytes, str] | None:
    """(state letter, start time) from /proc/PID/stat (fields 3 and 22); None if no such pid.
    The start time with the pid names one process for its whole life."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()
    return fields[0], fields[19].decode()


def process_start_time(pid: int | None) -> str | None:
    found = _proc_stat(pid) if pid else None
    return found[1] if found else None


def to_json(value, indent: int | None = None, _at: str = "\n") -> str:
    """A tiny JSON encoder for str/int/bool/None/list/dict (indent: spaces per level, as
    json.dumps's): `import json` costs milliseconds on the start-up path (its decoder pulls in
    re and enum), and these records, and what the verbs print, hold nothing else.

    A command, an environment value or a path may hold bytes that are not UTF-8: Python
    carries each as a lone surrogate (surrogateescape, as in sys.argv). Those are written as
    \\udcXX escapes, which from_json reads back into the same str, so `exec` hands the
    container the same bytes again (os.execve encodes them back)."""
    if isinstance(value, str):
        if value.isprintable() and '"' not in value and "\\" not in value:
            return '"' + value + '"'  # nothing to escape (most strings): no loop per char
        out = []
        for ch in value:
            if ch in '"\\':
                out.append("\\" + ch)
            elif ord(ch) < 0x20 or 0xD800 <= ord(ch) <= 0xDFFF:
                out.append(f"\\u{ord(ch):04x}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, (list, tuple, dict)):
        raise TypeError(f"cannot encode {type(value).__name__}")
    inner = _at + " " * (indent or 0)
    if isinstance(value, dict):
        ends, items = "{}", [f"{to_json(str(k))}: {to_json(v, indent, inner)}"
                             for k, v in value.items()]
    else:
        ends, items = "[]", [to_json(v, indent, inner) for v in value]
    if indent is None or not items:
        return ends[0] + ", ".join(items) + ends[1]
    return ends[0] + inner + ("," + inner).join(items) + _at + ends[1]


class _Decoding:
    """What CPython's C scanner asks of its decoder (json.JSONDecoder's attributes)."""
    strict, object_hook, object_pairs_hook = True, None, None
    parse_float, parse_int, parse_constant = float, int, float


def from_json(text: str):
    """Decode JSON with CPython's C scanner, the one json.loads uses, without importing json
    (whose decoder imports re and enum: ~10 ms for each `state`, `kill` or `delete`).
    ValueError when TEXT is not one JSON value."""
    try:
        import _json
    except ImportError:  # another Python: its json, slower to import but the same answer
        import json

        return json.loads(text)
    text = text.strip(" \t\n\r")
    try:
        value, end = _json.make_scanner(_Decoding())(text, 0)
    except StopIteration as e:
        raise ValueError(f"invalid JSON at character {e.value}") from None
    if end != len(text):
        raise ValueError(f"invalid JSON: extra data at character {end}")
    return value


# Names and ids are file names here (names/<name>, containers/<id>): NAME_MAX bytes at most.
NAME_MAX = 255
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def check_name(name: str) -> None:
    """A container name: ASCII [a-zA-Z0-9][a-zA-Z0-9_.-]*, as docker's (str.isalnum would let
    any unicode letter through), short enough to be a file name."""
    if not (name and len(name) <= NAME_MAX and name[0] in _ALNUM and
            all(c in _ALNUM or c in "_.-" for c in name)):
        raise UsageError(f"invalid container name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                         f"are allowed, at most {NAME_MAX} characters")


def check_id(cid: str) -> None:
    """An OCI container id, as runc takes them: ASCII [A-Za-z0-9_+.-], not . or .."""
    if not (cid and len(cid) <= NAME_MAX and cid not in (".", "..") and
            all(c in _ALNUM or c in "_+.-" for c in cid)):
        raise UsageError(f"invalid container id {cid!r}: only [A-Za-z0-9_+.-] are allowed, "
                         f"at most {NAME_MAX} characters")


def remove_tree(path: str) -> None:
    """rm -rf without following symlinks (shutil costs milliseconds to import)."""
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return
    except NotADirectoryError:
        os.unlink(path)
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            remove_tree(entry.path)
        else:
            try:
                os.unlink(entry.path)
            except FileNotFoundError:  # a shim releasing the same container (its `owned`)
                pass
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def write_atomic(path: str, text: str) -> None:
    """Write aside, then rename over: a reader in another process sees the old file or the
    new one, never an empty or half-written one (records, pid files, network files)."""
    with open(path + ".new", "w", encoding="utf-8") as f:
        f.write(text)
    os.rename(path + ".new", path)


class Container:
    """One container's record and owned directories."""

    def __init__(self, store: "StateStore", cid: str, name: str | None, record: dict | None = None):
        self.store = store
        self.id = cid
        self.name = name
        self.record = record if record is not None else {"id": cid, "name": name}
        self.dir = os.path.join(store.root, "containers", cid)
        self.upper = os.path.join(self.dir, "upper")
        self.work = os.path.join(self.dir, "work")
        self.rootfs = os.path.join(self.dir, "rootfs")
        self.cgroup = None  # its cgroup v2 directory, set by runtime/cgroups.create
        # What this process holds open for the container while it runs (its published host
        # ports: runtime/network/links.publish); closed when it releases what it owns.
        self.held: list = []

    def update(self, **fields) -> None:
        """Change fields of the record, atomically (write aside, rename over): readers in other
        processes see the old record or the new one, never half of one."""
        self.record.update(fields)
        # liveness first: whoever waits for state.json to change (rm -f waits for "stopped")
        # finds both written
        for name, text in (("liveness", _liveness(self.record)),
                           ("state.json", to_json(self.record))):
            write_atomic(os.path.join(self.dir, name), text + "\n")

    def started(self, pid: int, **fields) -> None:
        """Record the container's first process (its pid on the host and start time)."""
        self.update(pid=pid, pid_start=process_start_time(pid), **fields)

    def watched(self) -> bool:
        """Whether the process in charge of this container (the runtime or shim) still lives."""
        r = self.record
        return r.get("runtime_pid") is not None and \
            process_start_time(r["runtime_pid"]) == r.get("runtime_start")

    def alive(self) -> bool:
        """Whether the container's first process still runs (same pid, same start time)."""
        r = self.record
        found = _proc_stat(r["pid"]) if r.get("pid") else None
        # a zombie still has its stat line: it has exited all the same
        return found is not None and found[1] == r.get("pid_start") and found[0] not in (b"Z", b"X")

    def status(self) -> str:
        """creating, created, running, paused or stopped, reconciled with the kernel: a
        container whose process has died while nothing watched reads as stopped."""
        status = self.record.get("status", "running")
        if status in ("created", "running", "paused") and self.record.get("pid") and \
                not self.alive():
            return "stopped"
        return status

    def own(self, kind: str, value: str) -> None:
        """Record that this container is about to own a host resource. Call it before creating
        the resource, so that a crash in between leaves a record, never an orphan."""
        if kind not in RELEASERS:
            raise ValueError(f"no releaser registered for {kind!r}")
        with open(os.path.join(self.dir, "owned"), "a") as f:
            f.write(f"{kind} {value}\n")

    def owned(self) -> list[tuple[str, str]]:
        try:
            with open(os.path.join(self.dir, "owned")) as f:
                return [tuple(line.rstrip("\n").split(" ", 1)) for line in f if " " in line]
        except FileNotFoundError:
            return []

    def release(self) -> None:
        """Release what the container owns on the host (cgroup, network...), keep its record:
        what a stopped container that has not been removed yet still needs."""
        self._release_owned()
        try:
            os.unlink(os.path.join(self.dir, "owned"))
        except FileNotFoundError:
            pass

    def remove(self) -> None:
        """Remove everything this container owns on the host. Safe to call twice."""
        self._release_owned()
        self._unlink_name()
        remove_tree(self.dir)
        trace.note(f"removed the state directory {self.dir} (record, upper and work layers)")

    def _release_owned(self) -> None:
        while self.held:
            self.held.pop().close()
        errors = []
        for kind, value in reversed(self.owned()):
            module_name, _, function = RELEASERS[kind].partition(":")
            trace.note(f"release {kind} {value}")
            try:
                # __import__, not importlib (which would import warnings: ~1 ms per run)
                getattr(__import__(module_name, fromlist=[function]), function)(value)
            except Exception as e:  # keep releasing the rest; report at the end
                errors.append(f"{kind} {value}: {e}")
        if errors:
            raise ContainerError("cleanup failed, will retry at next gc: " + "; ".join(errors))

    def _unlink_name(self) -> None:
        if self.name:
            link = os.path.join(self.store.root, "names", self.name)
            try:
                if os.readlink(link) == self.id:
                    os.unlink(link)
            except OSError:
                pass


def signal_process(pid: int, sig: int = 9) -> None:
    """kill(2), where a process already gone is no error."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


# The liveness line: these record fields, in this order, "-" for None (none holds a space).
LIVENESS_FIELDS = ("mode", "status", "runtime_pid", "runtime_start", "pid", "pid_start",
                   "auto_remove", "lifeline_pid", "lifeline_start")


def _liveness(record: dict) -> str:
    values = []
    for key in LIVENESS_FIELDS:
        value = record.get(key)
        values.append("-" if value is None or value is False else
                      "1" if value is True else str(value))
    return " ".join(values)


def _read_liveness(directory: str) -> dict | None:
    """The fields of the liveness line as a record, or None if there is none (yet)."""
    try:
        with open(os.path.join(directory, "liveness")) as f:
            words = f.read().split()
    except OSError:
        return None
    if len(words) != len(LIVENESS_FIELDS):
        return None
    record = {k: None if w == "-" else w for k, w in zip(LIVENESS_FIELDS, words)}
    for key in ("runtime_pid", "pid", "lifeline_pid"):
        if record[key] is not None:
            record[key] = int(record[key])
    record["auto_remove"] = record["auto_remove"] == "1"
    return record


def _gc_action(container: "Container") -> str | None:
    """What garbage collection must do about a container, by its mode (module docstring):
    None (nothing: watched, still running, or stopped and kept), "remove", or "stop" (it
    died while nothing watched: release what it owns, mark it stopped, keep the record)."""
    r = container.record
    if container.watched():
        return None
    if r.get("mode", "run") == "run" or r.get("status") == "creating":
        return "remove"
    lifeline = r.get("lifeline_pid")  # started for a process (a test session) that is gone
    if lifeline and process_start_time(lifeline) != r.get("lifeline_start"):
        return "remove"
    if container.alive():
        return None  # still running, unwatched: `stop`, `kill` and `rm -f` reach it
    if r.get("auto_remove"):
        return "remove"
    return None if r.get("status") == "stopped" else "stop"


def _name_in_use(name: str) -> ContainerError:
    return ContainerError(f'the container name "{name}" is already in use')


class StateStore:
    def __init__(self, root: str):
        self.root = root

    def create(self, name: str | None, rootfs: str, command: list[str], cid: str | None = None,
               mode: str = "run", **extra) -> Container:
        """Record a new container, then reserve its name, then make its directories:
        the record comes first so that a crash at any later step is found by gc.
        cid: the caller's id (OCI create), else a random one; extra: more record fields.
        A bad name or id is refused before anything is made."""
        if name is not None:
            check_name(name)
        if cid is None:
            cid = os.urandom(32).hex()
        else:
            check_id(cid)
        containers = os.path.join(self.root, "containers")
        os.makedirs(containers, mode=0o700, exist_ok=True)
        container = Container(self, cid, name)
        try:
            os.mkdir(container.dir, 0o700)
        except FileExistsError:
            raise ContainerError(f'a container with id "{cid}" already exists') from None
        record = {
            "id": cid,
            "name": name,
            "mode": mode,
            "status": "creating",
            "runtime_pid": os.getpid(),
            "runtime_start": process_start_time(os.getpid()),
            "rootfs": rootfs,
            "command": command,
            "created": now(),
            **extra,
        }
        container.record = {}
        try:
            container.update(**record)
        except BaseException:  # no record, no gc: this directory would stay forever
            remove_tree(container.dir)
            raise
        if name:
            self._reserve_name(container)
        for d in (container.upper, container.work, container.rootfs):
            os.mkdir(d, 0o755)
        return container

    def _reserve_name(self, container: Container) -> None:
        names = os.path.join(self.root, "names")
        os.makedirs(names, mode=0o700, exist_ok=True)
        link = os.path.join(names, container.name)
        for attempt in (1, 2):
            try:
                os.symlink(container.id, link)
                return
            except FileExistsError:
                # A name held by a container whose runtime died is free again.
                if attempt == 1 and self._reclaim_dead(os.readlink(link)):
                    continue
                container.name = None  # not ours: remove() must not touch the link
                container.remove()
                raise _name_in_use(link.rsplit("/", 1)[1])

    def check_name_free(self, name: str) -> None:
        """ContainerError if a start would find `name` taken, changing nothing (`run
        --dry-run`): a name held by a container whose runtime died is free (a start
        reclaims it), one of a container kept stopped is not."""
        try:
            cid = os.readlink(os.path.join(self.root, "names", name))
        except OSError:
            return
        directory = os.path.join(self.root, "containers", cid)
        quick = _read_liveness(directory)
        if quick is None:
            if os.path.isdir(directory):
                raise _name_in_use(name)  # its runtime is writing the record
            return
        if _gc_action(Container(self, cid, None, quick)) != "remove":
            raise _name_in_use(name)

    def _reclaim_dead(self, cid: str) -> bool:
        """If nothing is in charge of the container `cid` any more, clean up what is due for its
        mode (module docstring); say whether the container is gone now."""
        directory = os.path.join(self.root, "containers", cid)
        # The common case, on every start: the liveness line says there is nothing to do.
        # Written just before state.json, it may be a step ahead of it, never behind; and
        # any action is decided again on the full record, so gc never acts on the line alone.
        quick = _read_liveness(directory)
        if quick is not None and _gc_action(Container(self, cid, None, quick)) is None:
            return False
        try:
            with open(os.path.join(directory, "state.json"), encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            if os.path.isdir(directory) and self._fresh(directory):
                return False  # its runtime is still writing the record
            remove_tree(directory)
            self._unlink_names_of(cid)
            return True
        record = from_json(text)  # only now: something is to be done
        container = Container(self, cid, record.get("name"), record)
        action = _gc_action(container)
        try:
            if action == "remove":
                if container.alive():  # a create whose runtime died before it was done
                    signal_process(record["pid"])
                container.remove()
                return True
            if action == "stop":  # with an exit code nobody could collect
                container.release()
                container.update(status="stopped", finished=record.get("finished") or now())
        except ContainerError:
            pass  # a resource would not go yet: the next gc tries again
        return False

    def load(self, cid: str) -> Container:
        """The container with exactly this id; ContainerError if there is none."""
        try:
            path = os.path.join(self.root, "containers", cid, "state.json")
            with open(path, encoding="utf-8") as f:
                record = from_json(f.read())
        except (FileNotFoundError, NotADirectoryError, ValueError):
            raise ContainerError(f'container "{cid}" does not exist') from None
        return Container(self, cid, record.get("name"), record)

    def lookup(self, ref: str, exact: bool = False) -> Container:
        """A container by name, id, or (unless exact, as the OCI verbs want) a unique id
        prefix, as docker resolves them."""
        if not ref or "/" in ref or ref in (".", ".."):
            raise ContainerError(f"invalid container id or name {ref!r}")
        try:
            return self.load(ref)
        except ContainerError:
            if exact:
                raise
        try:
            return self.load(os.readlink(os.path.join(self.root, "names", ref)))
        except (OSError, ContainerError):
            pass
        matches = [c for c in self.ids() if c.startswith(ref)]
        if len(matches) > 1:
            raise ContainerError(f'"{ref}" matches {len(matches)} containers: give more of the id')
        if not matches:
            raise ContainerError(f'no such container: "{ref}"')
        return self.load(matches[0])

    def ids(self) -> list[str]:
        try:
            return os.listdir(os.path.join(self.root, "containers"))
        except FileNotFoundError:
            return []

    def containers(self) -> list[Container]:
        """Every recorded container (reconciled first: see collect_garbage), oldest first."""
        self.collect_garbage()
        out = []
        for cid in self.ids():
            try:
                out.append(self.load(cid))
            except ContainerError:
                continue  # removed meanwhile, or its record is still being written
        return sorted(out, key=lambda c: c.record.get("created", ""))

    @staticmethod
    def _fresh(path: str) -> bool:
        try:
            return time.time() - os.stat(path).st_mtime < 10
        except OSError:
            return False

    def _unlink_names_of(self, cid: str) -> None:
        names = os.path.join(self.root, "names")
        try:
            entries = os.listdir(names)
        except FileNotFoundError:
            return
        for n in entries:
            link = os.path.join(names, n)
            try:
                if os.readlink(link) == cid:
                    os.unlink(link)
            except OSError:
                pass

    def collect_garbage(self) -> list[str]:
        """Remove every container whose runtime is gone; return their ids. Cheap when there
        is nothing to do (one listdir), so every run calls it."""
        return [cid for cid in self.ids() if self._reclaim_dead(cid)]
