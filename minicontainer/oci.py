"""The OCI bundle's config.json (and `exec --process` JSON) turned into a ContainerSpec: the
one place where the OCI runtime spec's fields meet ours.

Every field is either applied, or met by what minicontainer does anyway (named below), or
refused with a message naming it: never silently dropped. See docs/lifecycle.md for the list.
"""
from __future__ import annotations

import os

from minicontainer.errors import ContainerError
from minicontainer.kernel import caps
from minicontainer.runtime import rootfs
from minicontainer.runtime.state import from_json
from minicontainer.spec import ContainerSpec, Mount, Process, Resources, Root, Security

OCI_VERSION = "1.0.2"

# OCI namespace type -> ours. Each is new, or joined by path (runtime/launch.py: pid by the
# runtime before the clone, mount last, and the root is then built inside the joined one).
NAMESPACES = {"pid": "pid", "network": "net", "ipc": "ipc", "uts": "uts", "mount": "mnt",
              "cgroup": "cgroup"}

# The hook stages of config.md, in the order they run (runtime/hooks.py)
HOOK_STAGES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
               "poststop")

# config.json mount options (runc's set): the MS_* flag each sets (by name in
# kernel/syscalls.py), or None for the ones that are the default anyway. rw, suid, dev and
# exec leave a bind's source flags as they are; atime, diratime, norelatime, nostrictatime
# set nothing (the kernel's default is relatime)
MOUNT_FLAGS = {"ro": "MS_RDONLY", "nosuid": "MS_NOSUID", "nodev": "MS_NODEV",
               "noexec": "MS_NOEXEC", "noatime": "MS_NOATIME", "nodiratime": "MS_NODIRATIME",
               "relatime": "MS_RELATIME", "strictatime": "MS_STRICTATIME",
               "rw": None, "suid": None, "dev": None, "exec": None, "atime": None,
               "diratime": None, "norelatime": None, "nostrictatime": None, "defaults": None,
               # SELinux relabelling: the engine's job before it calls the runtime
               "z": None, "Z": None}
# Propagation, applied after the mount (and to / for linux.rootfsPropagation)
PROPAGATION = {"shared": "MS_SHARED", "slave": "MS_SLAVE", "private": "MS_PRIVATE",
               "unbindable": "MS_UNBINDABLE"}
# Mount types and their kernel filesystem; "cgroup" (v1) becomes cgroup2, as runc mounts it
# on a cgroup2-only host: minicontainer's containers live in cgroup2 only
MOUNT_TYPES = {"tmpfs": "tmpfs", "proc": "proc", "sysfs": "sysfs", "devpts": "devpts",
               "mqueue": "mqueue", "cgroup": "cgroup2", "cgroup2": "cgroup2"}
# Option words that are the filesystem's own data, not mount flags (runc passes any
# unknown word on as data; here only these, so that a typo is refused, not ignored)
DATA_WORDS = {"devpts": {"newinstance"},
              "cgroup2": {"nsdelegate", "memory_recursiveprot", "favordynmods"}}
# What may be mounted under /proc (runc's checkProcMount): proc itself at /proc, and binds
# over these files (lxcfs); anything else there could hide what the runtime writes to
# (/proc/sys, /proc/self) behind a file of the config's choosing
PROC_BINDS = {"/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat",
              "/proc/swaps", "/proc/uptime", "/proc/loadavg", "/proc/slabinfo",
              "/proc/net/dev", "/proc/sys/kernel/ns_last_pid"}
# linux.sysctl keys that belong to a namespace (runc's validator): the ipc namespace's, and
# which namespace the rest need; anything else is the host kernel's and refused
IPC_SYSCTLS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
               "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}
UTS_SYSCTLS = {"kernel.hostname", "kernel.domainname"}

# Linux's numbering (the resource module lacks some of these names)
RLIMITS = {f"RLIMIT_{n}": i for i, n in enumerate((
    "CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK", "AS", "LOCKS",
    "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME"))}

# Device node types (config.md linux.devices): c and u are character devices (u: unbuffered,
# the same node), b block, p a FIFO
DEVICE_TYPES = {"c": "c", "u": "c", "b": "b", "p": "p"}


class Refused(ContainerError):
    pass


def refuse(field: str, why: str) -> None:
    raise Refused(f"config.json: {field} is not supported by minicontainer: {why}")


def load_bundle(bundle: str, cid: str, no_pivot: bool = False) -> tuple[ContainerSpec, dict]:
    """(spec, annotations) for the bundle directory `bundle`."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            config = from_json(f.read())  # json's decoder would import re and enum: ~10 ms
    except FileNotFoundError:
        raise ContainerError(f"no config.json in bundle {bundle}") from None
    except ValueError as e:
        raise ContainerError(f"{path}: invalid JSON: {e}") from None
    return to_spec(config, bundle, cid, no_pivot), dict(config.get("annotations") or {})


def to_spec(config: dict, bundle: str, cid: str, no_pivot: bool = False) -> ContainerSpec:
    # Properties this runtime does not know (another platform's, a newer spec's) are ignored:
    # config.md says a runtime MUST NOT generate an error on an unknown property. Known ones
    # that are not implemented are refused by name.
    linux = config.get("linux") or {}
    for key, why in _WHY.items():
        if linux.get(key) not in (None, {}, [], ""):
            refuse(f"linux.{key}", why)
    if linux.get("uidMappings") or linux.get("gidMappings"):
        refuse("linux.uidMappings/gidMappings", "user namespaces are not implemented yet")
    rootfs_propagation = _propagation(linux.get("rootfsPropagation") or "")
    if linux.get("rootfsPropagation") and not rootfs_propagation:
        refuse("linux.rootfsPropagation", f"{linux['rootfsPropagation']!r}: not one of "
               "shared, slave, private, unbindable (or their r* forms)")

    root = config.get("root") or {}
    if not root.get("path"):
        raise ContainerError("config.json: root.path is required")
    root_path = os.path.normpath(os.path.join(bundle, root["path"]))

    namespaces, paths = _namespaces(linux.get("namespaces") or [])
    sysctl = {k: str(v) for k, v in (linux.get("sysctl") or {}).items()}
    check_sysctl(sysctl, own_namespaces(namespaces, paths))
    has_uts = "uts" in namespaces or "uts" in paths
    hostname = config.get("hostname") or None
    if hostname and not has_uts:
        raise ContainerError("config.json: hostname needs a uts namespace (new or joined)")
    domainname = config.get("domainname") or None
    if domainname and not has_uts:
        raise ContainerError("config.json: domainname needs a uts namespace (new or joined)")
    process, security = to_process(config.get("process") or {}, for_exec=False)
    # As given (what cannot be applied is refused here); none: unconfined, as runc
    security.seccomp = linux.get("seccomp") or None
    if security.seccomp is not None:
        from minicontainer.runtime.seccomp_profile import check

        check(security.seccomp)
    devices, device_rules = _devices(linux)
    mounts = _mounts(config.get("mounts") or [], bundle)
    spec = ContainerSpec(
        root=Root(path=root_path, readonly=bool(root.get("readonly")), pivot_root=not no_pivot,
                  overlay=False),
        process=process, hostname=hostname or (cid[:12] if "uts" in namespaces else None),
        mounts=mounts, namespaces=tuple(namespaces), security=security,
        network="none" if "net" in namespaces else "host", namespace_paths=paths,
        resources=resources(linux.get("resources") or {}), devices=devices,
        sysctl=sysctl, system_mounts=False, rootfs_propagation=rootfs_propagation,
        masked_paths=tuple(linux.get("maskedPaths") or ()),
        readonly_paths=tuple(linux.get("readonlyPaths") or ()),
        domainname=domainname, hooks=_hooks(config.get("hooks") or {}),
        cgroups_path=_cgroups_path(linux.get("cgroupsPath")), device_rules=device_rules)
    if "mnt" not in namespaces and "mnt" not in paths:
        refuse("linux.namespaces", "a container without a mount namespace of its own "
               "(new or joined by path)")
    if "pid" not in namespaces and "pid" not in paths:
        refuse("linux.namespaces", "a container without a pid namespace of its own "
               "(new or joined by path)")
    return spec


_WHY = {"intelRdt": "no resctrl support", "personality": "not implemented",
        "mountLabel": "no SELinux support", "timeOffsets": "no time namespace support",
        "memoryPolicy": "not implemented", "netDevices": "not implemented"}


def _namespaces(entries) -> tuple[list[str], dict[str, str]]:
    new, paths = [], {}
    for entry in entries:
        kind = entry.get("type")
        if kind == "user":
            refuse("linux.namespaces user", "user namespaces are not implemented yet")
        if kind == "time":
            refuse("linux.namespaces time", "time namespaces are not implemented")
        if kind not in NAMESPACES:
            refuse(f"linux.namespaces {kind!r}", "unknown namespace type")
        ours = NAMESPACES[kind]
        if ours in new or ours in paths:
            raise ContainerError(f"config.json: linux.namespaces: {kind} given twice")
        if entry.get("path"):
            if not entry["path"].startswith("/"):
                raise ContainerError(f"config.json: linux.namespaces {kind} path "
                                     f"{entry['path']!r} must be absolute")
            paths[ours] = entry["path"]
        else:
            new.append(ours)
    return new, paths


def _hooks(hooks: dict) -> dict:
    """{stage: [{"path", "args", "env", "timeout"}]}; an unknown stage is an unknown property
    (ignored); every hook's path must be absolute and its timeout, if any, above zero."""
    out = {}
    for stage in HOOK_STAGES:
        for h in hooks.get(stage) or []:
            path = h.get("path")
            if not isinstance(path, str) or not path.startswith("/"):
                raise ContainerError(f"config.json: hooks.{stage}: path {path!r} must be "
                                     "an absolute path")
            timeout = h.get("timeout")
            if timeout is not None and (not isinstance(timeout, int) or timeout <= 0):
                raise ContainerError(f"config.json: hooks.{stage} {path}: timeout "
                                     f"{timeout!r} must be a number of seconds above zero")
            out.setdefault(stage, []).append({
                "path": path, "args": [str(a) for a in h.get("args") or [path]],
                "env": [str(e) for e in h.get("env") or []], "timeout": timeout})
    return out


def _cgroups_path(value) -> str | None:
    """linux.cgroupsPath as given; runtime/cgroups.py places it (absolute: under the cgroup2
    root; relative, the systemd slice:prefix:name form included: as runc's cgroupfs driver
    does, under the parent of the runtime's own cgroup)."""
    if value in (None, ""):
        return None
    if not isinstance(value, str) or "\0" in value:
        raise ContainerError(f"config.json: linux.cgroupsPath {value!r} is not a path")
    return value


def to_process(p: dict, for_exec: bool) -> tuple[Process, Security]:
    """process (config.json, or exec --process) -> (Process, Security)."""
    for key in ("apparmorProfile", "selinuxLabel"):
        if p.get(key):
            refuse(f"process.{key}", "no LSM support here (podman: apparmor_profile = "
                   "\"unconfined\" or --security-opt label=disable)")
    if p.get("ioPriority") or p.get("scheduler") or p.get("execCPUAffinity"):
        refuse("process.ioPriority/scheduler/execCPUAffinity", "not implemented")
    args = p.get("args") or []
    if not args:
        raise ContainerError("config.json: process.args is empty")
    env = {}
    for item in p.get("env") or []:
        key, _, value = item.partition("=")
        env[key] = value
    user = p.get("user") or {}
    if user.get("username"):
        refuse("process.user.username", "Windows only")
    uid, gid = _number("process.user.uid", user.get("uid", 0)), \
        _number("process.user.gid", user.get("gid", 0))
    # As runc: with uid and gid both given, the supplementary groups are exactly
    # additionalGids (none from the container's /etc/group)
    groups = [_number("process.user.additionalGids", g) for g in user.get("additionalGids") or []]
    umask = user.get("umask")
    if umask is not None:
        umask = _number("process.user.umask", umask)
        if umask > 0o777:
            raise ContainerError(f"config.json: process.user.umask {umask:#o} is not a umask")
    rlimits, seen = [], set()
    for r in p.get("rlimits") or []:
        if r.get("type") not in RLIMITS:
            refuse(f"process.rlimits {r.get('type')!r}", "unknown rlimit")
        if r["type"] in seen:
            raise ContainerError(f"config.json: process.rlimits: {r['type']} given twice")
        seen.add(r["type"])
        rlimits.append((RLIMITS[r["type"]], int(r["soft"]), int(r["hard"])))
    oom = p.get("oomScoreAdj")
    if oom is not None and not -1000 <= int(oom) <= 1000:
        raise ContainerError(f"config.json: process.oomScoreAdj {oom} is outside -1000..1000")
    size = p.get("consoleSize") or None
    if size is not None:
        size = (_number("process.consoleSize.height", size.get("height", 0)),
                _number("process.consoleSize.width", size.get("width", 0)))
    cwd = p.get("cwd") or "/"
    if not cwd.startswith("/"):
        raise ContainerError(f"config.json: process.cwd {cwd!r} must be absolute")
    process = Process(args=list(args), env=env, cwd=cwd, user=f"{uid}:{gid}",
                      terminal=bool(p.get("terminal")), interactive=True,
                      rlimits=rlimits, umask=umask, groups=groups,
                      oom_score_adj=None if oom is None else int(oom), console_size=size)
    return process, _security(p)


def _number(field: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ContainerError(f"config.json: {field} {value!r} must be a number >= 0")
    return value


def _security(p: dict) -> Security:
    """The five capability sets as given, each kept as the kernel has it. No capabilities
    object at all: nothing is cut (runc's reading; exec --process then takes the
    container's, cli/exec.py)."""
    nnp = bool(p.get("noNewPrivileges"))
    given = p.get("capabilities")
    if given is None:
        return Security(capabilities=frozenset(caps.all_names()), no_new_privs=nnp,
                        privileged=True)
    try:
        sets = {kind: frozenset(caps.normalize(c) for c in given.get(kind) or [])
                for kind in caps.KINDS}
    except ValueError as e:
        refuse("process.capabilities", f"{e} (this kernel has capabilities up to "
               f"CAP_{caps.all_names()[-1].upper()})")
    for kind, within, why in (
            ("effective", "permitted", "a capability can be effective only if permitted"),
            ("inheritable", "bounding", "capset(2) refuses an inheritable capability outside "
                                        "the bounding set")):
        extra = sets[kind] - sets[within]
        if extra:
            raise ContainerError(f"config.json: process.capabilities.{kind}: "
                                 f"{_cap_list(extra)} not in {within}: {why}")
    # The kernel keeps an ambient capability only while it is both permitted and
    # inheritable; runc warns about the others and goes on (runc spec's default config
    # asks for ambient ones with no inheritable set): so do we, in one line.
    lost = sets["ambient"] - (sets["permitted"] & sets["inheritable"])
    if lost:
        import sys

        sys.stderr.write(f"minicontainer: warning: process.capabilities.ambient: "
                         f"{_cap_list(lost)} not raised: an ambient capability must be "
                         "both permitted and inheritable\n")
        sets["ambient"] = sets["ambient"] - lost
    return Security(capabilities=sets["bounding"], no_new_privs=nnp, privileged=False,
                    sets=sets)


def _cap_list(names) -> str:
    return ", ".join(f"CAP_{n.upper()}" for n in sorted(names, key=caps.NUMBER.get))


def _devices(linux: dict) -> tuple[list, list]:
    """(nodes to make, the device allowlist): linux.resources.devices in order, then what
    every container may use (runtime/devices.py ALLOWED) and the nodes of linux.devices, as
    runc appends its default allowed devices and the config's own."""
    from minicontainer.runtime.devices import ALLOWED

    nodes = []
    for d in linux.get("devices") or []:
        kind = DEVICE_TYPES.get(d.get("type"))
        if kind is None:
            refuse(f"linux.devices {d.get('path')}", f"type {d.get('type')!r} (c, u, b, p)")
        path = os.path.normpath(d.get("path") or "")
        if not path.startswith("/") or path == "/":
            raise ContainerError(f"config.json: linux.devices path {d.get('path')!r} must be "
                                 "absolute")  # and is resolved inside the root (rootfs.py)
        major, minor = (0, 0) if kind == "p" else (int(d["major"]), int(d["minor"]))
        nodes.append((path, kind, major, minor, int(d.get("fileMode", 0o666)) & 0o7777,
                      int(d.get("uid", 0)), int(d.get("gid", 0))))
    always = list(ALLOWED) + [(True, n[1], n[2], n[3], "rwm") for n in nodes if n[1] != "p"]
    rules = []
    for rule in (linux.get("resources") or {}).get("devices") or []:
        kind, access = rule.get("type") or "a", rule.get("access") or ""
        major, minor = (None if rule.get(k) in (None, -1) else int(rule[k])
                        for k in ("major", "minor"))
        if kind not in ("a", "c", "b") or set(access) - set("rwm"):
            refuse(f"linux.resources.devices {rule!r}", "type a, c or b; access of r, w, m")
        if not rule.get("allow") and major is not None and any(
                (k, ma, mi) == (kind, major, minor) for _, k, ma, mi, _ in always):
            refuse("linux.resources.devices", f"a deny rule for {kind} {major}:{minor}, a node "
                   "minicontainer gives every container (or linux.devices makes), which is "
                   "always allowed, as runc allows its default devices")
        rules.append((bool(rule.get("allow")), kind, major, minor, access))
    return nodes, rules + always


def _mounts(entries, bundle: str) -> list[Mount]:
    """config.json mounts, every one, in order (runtime/rootfs.mount_user_mounts mounts them
    with each destination resolved inside the root). A device node bound in is opened only if
    the device allowlist says so (the device cgroup, runtime/devices.py)."""
    return [parse_mount(m, bundle) for m in entries]


def parse_mount(m: dict, bundle: str) -> Mount:
    """One config.json mount -> Mount, as runc reads it: type bind (or any type with a bind or
    rbind option) binds `source` (relative to the bundle); the filesystem types take their
    `key=value` options as data; flags and propagation from the option words. An unknown type
    or option is refused, naming it."""
    raw = m.get("destination") or ""
    if not raw.startswith("/") or os.path.normpath(raw) == "/":
        raise ContainerError(f"config.json: mount destination {raw!r} must be absolute and "
                             "not /")
    dest = os.path.normpath(raw)
    options = list(m.get("options") or [])
    kind = m.get("type") or ""
    if "bind" in options or "rbind" in options or kind == "bind":
        kind = "bind"
    elif kind not in MOUNT_TYPES:
        refuse(f"mount {dest} of type {kind!r}", "only bind, tmpfs, proc, sysfs, devpts, "
               "mqueue, cgroup and cgroup2 mounts")
    if dest == "/proc" and kind != "proc" or dest.startswith("/proc/") and not (
            kind == "bind" and dest in PROC_BINDS):
        refuse(f"mount {dest} of type {kind!r}", "under /proc only proc itself at /proc and "
               "binds over " + ", ".join(sorted(PROC_BINDS)) + " (as runc)")
    from minicontainer.kernel import syscalls

    flags, propagation, data = 0, [], []
    for o in options:
        if o in MOUNT_FLAGS:
            flags |= getattr(syscalls, MOUNT_FLAGS[o]) if MOUNT_FLAGS[o] else 0
        elif _propagation(o):
            propagation.append(_propagation(o))
        elif o in ("bind", "rbind") and kind == "bind" or o == "tmpcopyup" and kind == "tmpfs":
            continue
        elif kind != "bind" and ("=" in o or o in DATA_WORDS.get(kind, ())):
            data.append(o)
        else:
            refuse(f"mount {dest} option {o!r}", "unknown or unimplemented mount option")
    if kind == "bind":
        return Mount(kind="bind", source=os.path.normpath(os.path.join(bundle, m.get("source")
                                                                       or "")),
                     target=dest, flags=flags, recursive="rbind" in options,
                     propagation=tuple(propagation))
    return Mount(kind=MOUNT_TYPES[kind], source=m.get("source") or kind, target=dest,
                 flags=flags, options=",".join(data), propagation=tuple(propagation),
                 copy_up="tmpcopyup" in options)


def _propagation(option: str) -> int:
    """'rshared' -> MS_SHARED | MS_REC, 'slave' -> MS_SLAVE, ...; 0 for anything else."""
    from minicontainer.kernel import syscalls

    name = option[1:] if option[:1] == "r" and option[1:] in PROPAGATION else option
    if name not in PROPAGATION:
        return 0
    return getattr(syscalls, PROPAGATION[name]) | (syscalls.MS_REC if name != option else 0)


def own_namespaces(new, paths: dict) -> set[str]:
    """The namespaces the container has to itself: new ones, and joined ones that are not
    the runtime's (the host's) own."""
    own = set(new)
    for ns, path in paths.items():
        try:
            if os.stat(path).st_ino != os.stat(f"/proc/self/ns/{ns}").st_ino:
                own.add(ns)
        except OSError:
            own.add(ns)  # joining it will fail and say so
    return own


def check_sysctl(sysctl: dict, own: set[str]) -> None:
    """Only keys that a namespace of the container's own holds (runc's validator), written
    under /proc/sys and nowhere else: refused, naming the key, before anything is made."""
    for key in sysctl:
        parts = key.split(".")
        if "/" in key or "\0" in key or not all(parts) or ".." in parts:
            refuse(f"linux.sysctl {key!r}", "not a sysctl name (dots between non-empty parts, "
                   "no /)")
        if key in IPC_SYSCTLS or key.startswith("fs.mqueue."):
            need = "ipc"
        elif key.startswith("net."):
            need = "net"
        elif key in UTS_SYSCTLS:
            need = "uts"
        else:
            refuse(f"linux.sysctl {key}", "not in a namespace of the container's own: it "
                   "would change the host's kernel")
        if need not in own:
            refuse(f"linux.sysctl {key}", f"the container shares the host's {need} namespace")


def resources(r: dict) -> Resources | None:
    """linux.resources -> Resources (docker's units); runtime/cgroups.py refuses what this
    host cannot enforce. devices: _devices (the device cgroup, runtime/devices.py)."""
    for key in r:
        if key not in ("devices", "memory", "cpu", "pids", "blockIO") and r[key]:
            refuse(f"linux.resources.{key}", "not implemented")
    out = Resources()
    mem = r.get("memory") or {}
    for key in mem:
        if key not in ("limit", "swap", "reservation", "disableOOMKiller", "swappiness") \
                and mem[key] is not None:
            refuse(f"linux.resources.memory.{key}", "not implemented")
    if mem.get("disableOOMKiller"):
        refuse("linux.resources.memory.disableOOMKiller", "not available in cgroup v2")
    if mem.get("limit") and mem["limit"] > 0:
        out.memory = int(mem["limit"])
        if mem.get("swap"):
            out.memory_swap = int(mem["swap"])
    if mem.get("reservation") and mem["reservation"] > 0:
        out.memory_reservation = int(mem["reservation"])
    cpu = r.get("cpu") or {}
    for key in cpu:
        if key not in ("shares", "quota", "period", "cpus", "mems") and cpu[key]:
            refuse(f"linux.resources.cpu.{key}", "not implemented")
    if cpu.get("quota") and cpu["quota"] > 0:
        out.cpus = cpu["quota"] / (cpu.get("period") or 100000)
    if cpu.get("shares"):
        out.cpu_shares = int(cpu["shares"])
    if cpu.get("cpus"):
        out.cpuset_cpus = cpu["cpus"]
    if cpu.get("mems"):
        refuse("linux.resources.cpu.mems", "not implemented")
    pids = (r.get("pids") or {}).get("limit")
    if pids and pids > 0:
        out.pids_limit = int(pids)
    blkio = r.get("blockIO") or {}
    if blkio.get("weight"):
        out.io_weight = int(blkio["weight"])
    for key in blkio:
        if key != "weight" and blkio[key]:
            refuse(f"linux.resources.blockIO.{key}", "not implemented")
    fields = ("memory", "memory_swap", "memory_reservation", "cpus", "cpu_shares",
              "cpuset_cpus", "pids_limit", "io_weight")
    return out if any(getattr(out, f) is not None for f in fields) else None


def default_config(rootfs_path: str = "rootfs") -> dict:
    """`minicontainer spec`: a config.json that minicontainer runs as it is (runc's default,
    less the ambient capabilities the kernel would not keep: none is inheritable)."""
    keep = ["CAP_" + c.upper() for c in ("audit_write", "kill", "net_bind_service")]
    return {
        "ociVersion": OCI_VERSION,
        "process": {"terminal": True, "user": {"uid": 0, "gid": 0}, "args": ["sh"],
                    "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                            "TERM=xterm"],
                    "cwd": "/", "capabilities": {"bounding": keep, "effective": keep,
                                                 "permitted": keep},
                    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                    "noNewPrivileges": True},
        "root": {"path": rootfs_path, "readonly": True},
        "hostname": "minicontainer",
        "mounts": [{"destination": d, "type": t, "source": src, "options": o} for d, t, src, o in (
            ("/proc", "proc", "proc", []),
            ("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
            ("/dev/pts", "devpts", "devpts", ["nosuid", "noexec", "newinstance",
                                              "ptmxmode=0666", "mode=0620", "gid=5"]),
            ("/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777",
                                          "size=65536k"]),
            ("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
            ("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]),
            ("/sys/fs/cgroup", "cgroup", "cgroup", ["nosuid", "noexec", "nodev", "relatime",
                                                    "ro"]))],
        "linux": {"resources": {"devices": [{"allow": False, "access": "rwm"}]},
                  "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount",
                                                       "cgroup")],
                  "maskedPaths": list(rootfs.MASKED_PATHS),
                  "readonlyPaths": list(rootfs.READONLY_PATHS)},
    }


def features() -> dict:
    """`minicontainer features` (runc's command): what this runtime implements."""
    from minicontainer.runtime import seccomp_profile

    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": list(HOOK_STAGES),
        "mountOptions": sorted(set(MOUNT_FLAGS) | {"bind", "rbind", "tmpcopyup"} |
                               set(PROPAGATION) |
                               {"r" + p for p in PROPAGATION}),
        "linux": {
            "namespaces": sorted(NAMESPACES),
            "capabilities": ["CAP_" + c.upper() for c in caps.all_names()],
            "cgroup": {"v1": False, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": seccomp_profile.features(),
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"org.opencontainers.runtime-spec.features.minicontainer":
                        "no user namespaces, no seccomp agent (SCMP_ACT_NOTIFY)",
                        # runc's key: clients read it before offering checkpoint/restore
                        "org.opencontainers.runc.checkpoint.enabled": "false"},
    }
