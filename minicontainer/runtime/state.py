"""The state store: what each container owns, recorded before it is created.

Layout under the state root (default /run/minicontainer, `--root` or MINICONTAINER_ROOT to move):

    containers/<id>/state.json   who owns this container (runtime pid + start time), its name
    containers/<id>/owned        one line per host resource it owns beyond its directory
                                 ("KIND VALUE": a cgroup, a veth, an address lease...),
                                 appended *before* the resource is created
    containers/<id>/upper, work  the overlay's copy-on-write layer
    containers/<id>/rootfs       the mount point of the container's root (mounted only inside
                                 the container's own mount namespace, so the host never sees it)
    names/<name> -> <id>         a symlink: creating it is the atomic reservation of a name

Cleanup after success, failure, or a SIGKILLed runtime walks the same thing: release each
owned resource (newest first) with the releaser registered for its kind in RELEASERS, then
remove the container's directory and its name link. `collect_garbage` finds containers whose runtime is
gone (pid dead, or reused by another process) and does that for them.
"""
from __future__ import annotations

import os
import time

from minicontainer.errors import ContainerError

DEFAULT_ROOT = "/run/minicontainer"

# kind -> "module:function" that releases one resource of that kind given its VALUE string.
# Imported only when a container owns such a resource, so gc of plain containers stays cheap
# (and never imports pyroute2). A releaser must succeed when the resource is already gone.
RELEASERS: dict[str, str] = {
    "cgroup": "minicontainer.runtime.cgroups:release",
}


def state_root(explicit: str | None = None) -> str:
    return explicit or os.environ.get("MINICONTAINER_ROOT") or DEFAULT_ROOT


def _process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: with the pid, it names one process for its whole life."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2:].split()[19].decode()


def _json(value) -> str:
    """A tiny JSON encoder for str/int/bool/None/list/dict: `import json` costs milliseconds
    on the start-up path, and these records hold nothing else."""
    if isinstance(value, str):
        out = []
        for ch in value:
            if ch in '"\\':
                out.append("\\" + ch)
            elif ord(ch) < 0x20:
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
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_json(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_json(str(k))}: {_json(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot encode {type(value).__name__}")


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
            os.unlink(entry.path)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


class Container:
    """One container's record and owned directories."""

    def __init__(self, store: "StateStore", cid: str, name: str | None):
        self.store = store
        self.id = cid
        self.name = name
        self.dir = os.path.join(store.root, "containers", cid)
        self.upper = os.path.join(self.dir, "upper")
        self.work = os.path.join(self.dir, "work")
        self.rootfs = os.path.join(self.dir, "rootfs")
        self.cgroup = None  # its cgroup v2 directory, set by runtime/cgroups.create

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

    def remove(self) -> None:
        """Remove everything this container owns on the host. Safe to call twice."""
        errors = []
        for kind, value in reversed(self.owned()):
            module_name, _, function = RELEASERS[kind].partition(":")
            import importlib

            try:
                getattr(importlib.import_module(module_name), function)(value)
            except Exception as e:  # keep releasing the rest; report at the end
                errors.append(f"{kind} {value}: {e}")
        if errors:
            raise ContainerError("cleanup failed, will retry at next gc: " + "; ".join(errors))
        if self.name:
            link = os.path.join(self.store.root, "names", self.name)
            try:
                if os.readlink(link) == self.id:
                    os.unlink(link)
            except OSError:
                pass
        remove_tree(self.dir)


class StateStore:
    def __init__(self, root: str):
        self.root = root

    def create(self, name: str | None, rootfs: str, command: list[str]) -> Container:
        """Record a new container, then reserve its name, then make its directories:
        the record comes first so that a crash at any later step is found by gc."""
        containers = os.path.join(self.root, "containers")
        os.makedirs(containers, mode=0o700, exist_ok=True)
        cid = os.urandom(32).hex()
        container = Container(self, cid, name)
        os.mkdir(container.dir, 0o700)
        record = {
            "id": cid,
            "name": name,
            "runtime_pid": os.getpid(),
            "runtime_start": _process_start_time(os.getpid()),
            "rootfs": rootfs,
            "command": command,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        with open(os.path.join(container.dir, "state.json"), "w") as f:
            f.write(_json(record) + "\n")
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
                raise ContainerError(
                    f'the container name "{link.rsplit("/", 1)[1]}" is already in use')

    def _reclaim_dead(self, cid: str) -> bool:
        """If the container `cid` belongs to a runtime that is gone, remove it; say whether the
        container is gone now."""
        directory = os.path.join(self.root, "containers", cid)
        try:
            with open(os.path.join(directory, "state.json")) as f:
                text = f.read()
        except FileNotFoundError:
            if os.path.isdir(directory) and self._fresh(directory):
                return False  # its runtime is still writing the record
            remove_tree(directory)
            self._unlink_names_of(cid)
            return True
        import json

        record = json.loads(text)
        if _process_start_time(record["runtime_pid"]) == record["runtime_start"]:
            return False
        try:
            Container(self, cid, record.get("name")).remove()
        except ContainerError:
            return False  # a resource would not go yet: the next gc tries again
        return True

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
        try:
            ids = os.listdir(os.path.join(self.root, "containers"))
        except FileNotFoundError:
            return []
        return [cid for cid in ids if self._reclaim_dead(cid)]
