"""The container spec: the one value every front end produces and the runtime consumes.

CLI flags, an OCI bundle's config.json or a Python caller all end up here, so `run`, the VM
mode and later front ends agree on what each setting means.

These are plain slotted classes rather than dataclasses on purpose: `import dataclasses`
costs several milliseconds (it pulls in inspect and re), and start-up time is a feature.
"""
from __future__ import annotations

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# New namespaces for every container unless told otherwise (docker's set, plus cgroup).
DEFAULT_NAMESPACES = ("mnt", "pid", "uts", "ipc", "net", "cgroup")


class _Record:
    """Keyword-constructed record: fields are __slots__, defaults in _defaults (copied)."""

    __slots__ = ()
    _defaults: dict = {}

    def __init__(self, **values):
        for name in self.__slots__:
            if name in values:
                setattr(self, name, values.pop(name))
            else:
                default = self._defaults.get(name)
                setattr(self, name, default.copy() if isinstance(default, (list, dict)) else default)
        if values:
            raise TypeError(f"{type(self).__name__}: unknown fields {sorted(values)}")

    def replace(self, **changes):
        """A new record of the same type: these fields changed, the others shared."""
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return type(self)(**values)

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({fields})"


class Mount(_Record):
    """A mount inside the container: kind is 'bind' (source is a host path) or a filesystem
    type (tmpfs, proc, sysfs, devpts, mqueue, cgroup2), source then its name."""

    __slots__ = ("kind", "source", "target", "readonly", "options", "flags", "recursive",
                 "propagation", "copy_up")
    # options: the filesystem's data (size=64m,mode=755); flags: more MS_* flags (nosuid,
    # nodev, noexec, atime ones); recursive: rbind (a bind's submounts come too, and take
    # its flags); propagation: MS_SHARED/SLAVE/PRIVATE/UNBINDABLE (| MS_REC) flags, applied
    # after the mount in this order; copy_up: a tmpfs starts with what the directory under it
    # held (OCI tmpcopyup)
    _defaults = {"readonly": False, "options": "", "flags": 0, "recursive": True,
                 "propagation": (), "copy_up": False}


class Process(_Record):
    """What runs: argv, environment, working directory, user ('uid[:gid]' or a name, resolved
    in the container's /etc/passwd), terminal (-t), stdin kept open (-i), and --init.
    args and env may carry non-UTF-8 bytes as Python's surrogateescape does (sys.argv):
    os.execve gives the container the original bytes."""

    __slots__ = ("args", "env", "cwd", "user", "terminal", "interactive", "init", "rlimits",
                 "umask", "preserve_fds", "groups", "oom_score_adj", "console_size")
    # rlimits: [(resource number, soft, hard)] (OCI process.rlimits); umask: None keeps ours;
    # preserve_fds: fds 3..3+N-1 stay open across execve (OCI --preserve-fds, LISTEN_FDS);
    # every other fd but 0, 1 and 2 is closed; groups: the supplementary gids exactly (OCI
    # additionalGids), None: the user's groups in the container's /etc/group; oom_score_adj:
    # None keeps ours; console_size: (rows, cols) of the pty, None: the user's terminal's
    _defaults = {"env": {}, "cwd": "/", "user": None, "terminal": False, "interactive": False,
                 "init": False, "rlimits": [], "umask": None, "preserve_fds": 0,
                 "groups": None, "oom_score_adj": None, "console_size": None}


class Root(_Record):
    """The root filesystem, a host directory. overlay (`run`): never written to, the container
    gets a private copy-on-write layer on it (or, readonly, the directory read-only); without
    (an OCI bundle's root.path): it is the container's root, written in place, as runc has it.
    readonly: read-only all the way down. pivot_root=False is the --chroot teaching mode."""

    __slots__ = ("path", "readonly", "pivot_root", "overlay")
    _defaults = {"readonly": False, "pivot_root": True, "overlay": True}


class Port(_Record):
    """-p: connections to host_ip (None: any of the host's addresses):host_port are forwarded
    to container_port; protocol 'tcp' or 'udp'."""

    __slots__ = ("host_ip", "host_port", "container_port", "protocol")
    _defaults = {"host_ip": None, "protocol": "tcp"}


class Security(_Record):
    """Capabilities kept (lower-case names without CAP_), no_new_privs, and privileged.
    sets: an OCI config's five sets {"bounding", "effective", "permitted", "inheritable",
    "ambient": frozenset of names}, applied as they are (kernel/caps.py sets_of); None: the
    docker-like `capabilities` is bounding, effective and permitted at once. seccomp: the
    profile (None: unconfined; "default": docker's; or a docker/OCI-format profile dict:
    runtime/seccomp.py); new_keyring: whether the process gets a session keyring of its own."""

    __slots__ = ("capabilities", "no_new_privs", "privileged", "sets", "seccomp", "new_keyring")
    _defaults = {"no_new_privs": True, "privileged": False, "sets": None, "seccomp": "default",
                 "new_keyring": True}


class Resources(_Record):
    """Resource limits, in docker's units (bytes, CPUs, shares); runtime/cgroups.py turns them
    into cgroup v2 files. None means no limit. device_*_bps: [(path, "MAJ:MIN", bytes/s)].
    stats: print a usage summary at exit."""

    __slots__ = ("memory", "memory_swap", "memory_reservation", "cpus", "cpu_shares",
                 "cpuset_cpus", "pids_limit", "io_weight", "device_read_bps",
                 "device_write_bps", "stats")
    _defaults = {"device_read_bps": [], "device_write_bps": [], "stats": False}


class ContainerSpec(_Record):
    __slots__ = ("root", "process", "hostname", "name", "mounts", "namespaces", "security",
                 "network", "resources", "ports", "namespace_paths", "devices", "sysctl",
                 "masked_paths", "readonly_paths", "system_mounts", "rootfs_propagation",
                 "domainname", "hooks", "cgroups_path", "device_rules")
    # network: none|host|bridge|container:NAME; ports: [Port] (bridge only);
    # namespace_paths: {"net": "/proc/..."}: join these namespaces instead of new ones
    # devices: [(path, "c"|"b"|"p", major, minor, mode, uid, gid)] made in /dev;
    # sysctl: {key: value}; masked_paths, readonly_paths: None means runc's defaults
    # (runtime/rootfs.py); system_mounts: `run`'s /proc, /dev, /sys (an OCI config lists its
    # own in mounts); rootfs_propagation: MS_* flags for the container's / (OCI
    # linux.rootfsPropagation)
    # hooks: an OCI config's {stage: [{"path", "args", "env", "timeout"}]} (runtime/hooks.py);
    # cgroups_path: an OCI linux.cgroupsPath, None: minicontainer's own place (runtime/cgroups.py)
    # device_rules: the device allowlist, [(allow, type, major, minor, access)] in order
    # (runtime/devices.py), enforced by the container's cgroup; None: no device cgroup
    _defaults = {"hostname": None, "name": None, "mounts": [], "namespaces": DEFAULT_NAMESPACES,
                 "network": "none", "ports": [], "namespace_paths": {}, "devices": [],
                 "sysctl": {}, "masked_paths": None, "readonly_paths": None,
                 "system_mounts": True, "rootfs_propagation": 0,
                 "domainname": None, "hooks": {}, "cgroups_path": None, "device_rules": None}
