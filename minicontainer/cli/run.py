"""`minicontainer run [OPTIONS] ROOTFS COMMAND [ARG...]`: docker's flags, turned into a spec.

Parsing stops at the first argument that is not an option (the rootfs): everything after it
is the container's command, untouched, as with docker.
"""
from __future__ import annotations

import os
import sys

from minicontainer.cli import flags
from minicontainer.errors import UsageError
from minicontainer.spec import ContainerSpec, Mount, Port, Process, Root, Security

HELP = """\
Usage: minicontainer run [OPTIONS] ROOTFS COMMAND [ARG...]

Run COMMAND in a new container whose root filesystem is the directory ROOTFS.
ROOTFS is never written to: the container writes to its own overlay layer.

Options:
  -e, --env KEY[=VALUE]    set an environment variable (KEY alone: take the host's value)
  -h, --hostname NAME      container hostname (default: the short container id)
  -w, --workdir DIR        working directory inside the container (created if missing)
  -u, --user USER[:GROUP]  name or uid, resolved in the container's /etc/passwd
  -v, --volume SRC:DST[:ro|rw]
                           bind-mount host path SRC at DST
      --tmpfs DST[:OPTS]   mount a tmpfs at DST (OPTS as for mount -o, e.g. size=64m)
      --device HOST[:CTR][:rwm]
                           the host's device node HOST in the container's /dev, allowed by
                           its device allowlist (r read, w write, m mknod; default rwm)
      --name NAME          a name for the container (unique among running containers)
  -i, --interactive        keep stdin open
  -t, --tty                allocate a pseudo-terminal
      --init               run a small init as PID 1 that forwards signals and reaps zombies
      --read-only          mount the rootfs read-only instead of giving it an overlay
      --chroot             teaching mode: chroot instead of pivot_root (see docs/run.md)
      --cap-add CAP        add a capability (or ALL)
      --cap-drop CAP       drop a capability (or ALL)
      --privileged         keep every capability, no seccomp filter
      --security-opt no-new-privileges[=true|false]
                           no_new_privs is on unless set to false here
      --security-opt seccomp=unconfined|PROFILE.json
                           no seccomp filter, or this docker/OCI-format profile instead of
                           docker's default one (docs/security.md)
      --network MODE       none (default): a new network namespace with only lo;
                           host: the host's; bridge: a veth on the bridge, NAT, /etc/hosts;
                           container:NAME: join that running container's network namespace
  -p, --publish [[HOSTIP:][HOSTPORT]:]CONTAINERPORT[/tcp|udp]
                           forward a host port to the container (implies --network bridge);
                           without HOSTPORT a free one is picked (minicontainer port NAME)
  -d, --detach             run in the background: print the id, keep the output in a log
                           (minicontainer logs), record the exit status (ps -a)
      --rm                 with -d: remove the container when it exits (without -d a run is
                           always removed at exit)
      --dry-run            print what the container's process would do, one step a line,
                           and start nothing, create nothing (docs/run.md)

Exit status: the command's own; 128+N if it was killed by signal N; 125 if minicontainer
itself failed; 126 if the command cannot be executed; 127 if it was not found.
"""

# flag -> (field, takes a value)
FLAGS = {
    "-e": ("env", True), "--env": ("env", True),
    "-h": ("hostname", True), "--hostname": ("hostname", True),
    "-w": ("workdir", True), "--workdir": ("workdir", True),
    "-u": ("user", True), "--user": ("user", True),
    "-v": ("volume", True), "--volume": ("volume", True),
    "--tmpfs": ("tmpfs", True),
    "--device": ("device", True),
    "--name": ("name", True),
    "--cap-add": ("cap_add", True), "--cap-drop": ("cap_drop", True),
    "--security-opt": ("security_opt", True),
    "--network": ("network", True), "--net": ("network", True),
    "-p": ("publish", True), "--publish": ("publish", True),
    "-i": ("interactive", False), "--interactive": ("interactive", False),
    "-t": ("tty", False), "--tty": ("tty", False),
    "--init": ("init", False),
    "--read-only": ("read_only", False),
    "--chroot": ("chroot", False),
    "--privileged": ("privileged", False),
    "--rm": ("rm", False),
    "--dry-run": ("dry_run", False),
    "-d": ("detach", False), "--detach": ("detach", False),
    "--help": ("help", False),
    # resource limits: parsed by cli/resources.py, imported only when one is given
    "-m": ("memory", True), "--memory": ("memory", True),
    "--memory-swap": ("memory_swap", True), "--memory-reservation": ("memory_reservation", True),
    "--cpus": ("cpus", True), "-c": ("cpu_shares", True), "--cpu-shares": ("cpu_shares", True),
    "--cpuset-cpus": ("cpuset_cpus", True), "--pids-limit": ("pids_limit", True),
    "--io-weight": ("io_weight", True),
    "--device-read-bps": ("device_read_bps", True), "--device-write-bps": ("device_write_bps", True),
    "--stats": ("stats", False),
}
REPEATABLE = {"env", "volume", "tmpfs", "device", "cap_add", "cap_drop", "security_opt", "publish",
              "device_read_bps", "device_write_bps"}
RESOURCE_FIELDS = ("memory", "memory_swap", "memory_reservation", "cpus", "cpu_shares",
                   "cpuset_cpus", "pids_limit", "io_weight", "device_read_bps",
                   "device_write_bps", "stats")


def parse(args: list[str]) -> tuple[dict, list[str]]:
    """Split args into {field: value} options and positionals (ROOTFS COMMAND...)."""
    return flags.parse(args, FLAGS, REPEATABLE)


def build_spec(opts: dict, positionals: list[str]) -> ContainerSpec:
    if len(positionals) < 2:
        raise UsageError('"run" needs a rootfs and a command: minicontainer run ROOTFS COMMAND [ARG...]')
    rootfs, command = os.path.abspath(positionals[0]), positionals[1:]

    env = flags.env_of(opts["env"])

    mounts = [_parse_volume(v) for v in opts["volume"]] + [_parse_tmpfs(t) for t in opts["tmpfs"]]

    # Publishing a port implies a bridge, as with docker; otherwise no network by default.
    network = opts.get("network", "bridge" if opts["publish"] else "none")
    namespaces = ("mnt", "pid", "uts", "ipc", "net", "cgroup")
    if network == "host" or network.startswith("container:") and len(network) > 10:
        namespaces = tuple(n for n in namespaces if n != "net")  # host's, or joined
    elif network not in ("none", "bridge"):
        raise UsageError(f"unknown network mode {network!r} (have: none, host, bridge, container:NAME)")
    ports = []
    if opts["publish"]:
        if network != "bridge":
            raise UsageError(f"-p/--publish needs --network bridge, not {network!r}")
        ports = [parse_publish(p) for p in opts["publish"]]

    security = _security(opts)
    # docker's device allowlist, which makes CAP_MKNOD harmless (a node made for the host's
    # disk cannot be opened): only a container holding CAP_MKNOD needs it
    device_rules = None
    if "mknod" in security.capabilities and not security.privileged:
        from minicontainer.runtime.devices import DEFAULT_RULES

        device_rules = list(DEFAULT_RULES)
    devices = [_parse_device(d) for d in opts["device"]]
    if device_rules is not None:
        device_rules += [(True, kind, major, minor, perms)
                         for (_, kind, major, minor, *_), perms in devices]

    workdir = opts.get("workdir", "/")
    if not workdir.startswith("/"):
        raise UsageError(f"the working directory {workdir!r} must be an absolute path")

    return ContainerSpec(
        root=Root(path=rootfs, readonly=bool(opts.get("read_only")),
                  pivot_root=not opts.get("chroot")),
        process=Process(args=command, env=env, cwd=workdir, user=opts.get("user"),
                        terminal=bool(opts.get("tty")),
                        interactive=bool(opts.get("interactive")),
                        init=bool(opts.get("init"))),
        hostname=opts.get("hostname"),
        name=opts.get("name"),  # checked by the state store, for every front end
        mounts=mounts,
        namespaces=namespaces,
        security=security,
        network=network,
        ports=ports,
        resources=_resources(opts),
        devices=[node for node, _ in devices],
        device_rules=device_rules,
    )


def _resources(opts: dict):
    if not any(opts.get(f) for f in RESOURCE_FIELDS):
        return None
    from minicontainer.cli import resources

    return resources.build(opts)


def _parse_volume(spec: str) -> Mount:
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise UsageError(f"invalid volume specification: {spec!r} (want SRC:DST[:ro|rw])")
    source, target = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise UsageError(f"invalid volume mode {mode!r} in {spec!r} (want ro or rw)")
    if not source.startswith("/"):
        raise UsageError(f"invalid volume specification: {spec!r}: the host path must be absolute")
    if not target.startswith("/") or target == "/":
        raise UsageError(f"invalid volume specification: {spec!r}: the container path must be absolute and not /")
    return Mount(kind="bind", source=os.path.normpath(source),
                 target=os.path.normpath(target), readonly=mode == "ro")


def parse_publish(text: str) -> Port:
    """-p [[HOSTIP:][HOSTPORT]:]CONTAINERPORT[/tcp|udp] (IPv4 only). No HOSTPORT (`-p 80`,
    `-p 127.0.0.1::80`): a free one is picked at start (runtime/network/links.publish), as
    docker does."""
    want = f"invalid --publish {text!r}: want [[HOSTIP:][HOSTPORT]:]CONTAINERPORT[/tcp|udp]"
    body, slash, protocol = text.partition("/")
    protocol = protocol if slash else "tcp"
    if protocol not in ("tcp", "udp"):
        raise UsageError(f"{want} (protocol {protocol!r})")
    parts = body.split(":")
    if len(parts) == 1:
        parts = ["", body]
    if len(parts) not in (2, 3):
        raise UsageError(want)
    host_ip = None
    if len(parts) == 3 and parts[0]:
        import ipaddress  # only with -p: not on the path of a plain run

        try:
            host_ip = str(ipaddress.IPv4Address(parts[0]))
        except ValueError:
            raise UsageError(f"{want} ({parts[0]!r} is not an IPv4 address)") from None
        if host_ip == "0.0.0.0":
            host_ip = None
    ports = []
    for p in parts[-2:]:
        if p == "" and not ports:
            ports.append(None)  # the host port: pick a free one
        elif not p.isdigit() or not 1 <= int(p) <= 65535:
            raise UsageError(f"{want} ({p!r} is not a port number)")
        else:
            ports.append(int(p))
    return Port(host_ip=host_ip, host_port=ports[0], container_port=ports[1], protocol=protocol)


def _parse_tmpfs(spec: str) -> Mount:
    target, _, options = spec.partition(":")
    if not target.startswith("/") or target == "/":
        raise UsageError(f"invalid tmpfs mount {spec!r}: the path must be absolute and not /")
    fields = [o for o in options.split(",") if o]
    readonly = "ro" in fields
    fields = [o for o in fields if o not in ("ro", "rw")]
    from minicontainer.runtime import api

    return Mount(kind="tmpfs", source="tmpfs", target=os.path.normpath(target),
                 readonly=readonly, options=",".join(fields) or "mode=1777",
                 flags=api.mount_flags("nosuid", "nodev"))  # docker's defaults


def _parse_device(text: str) -> tuple[tuple, str]:
    """--device HOST[:CONTAINER][:PERMS], as docker: (the node to make, as ContainerSpec.devices
    has them, with the host node's mode and owner; its permissions in the allowlist)."""
    host, _, rest = text.partition(":")
    target, _, perms = rest.partition(":")
    if target and not perms and not target.startswith("/"):
        target, perms = "", target
    target, perms = os.path.normpath(target or host), perms or "rwm"
    if not perms or set(perms) - set("rwm"):
        raise UsageError(f"--device {text}: permissions {perms!r} are not of r, w, m")
    try:
        st = os.stat(host)
    except OSError as e:
        raise UsageError(f"--device {text}: {e.strerror}") from None
    kind = {0o020000: "c", 0o060000: "b"}.get(st.st_mode & 0o170000)
    if kind is None:
        raise UsageError(f"--device {text}: {host} is not a device node")
    if not target.startswith("/dev/"):
        raise UsageError(f"--device {text}: the container's path must be under /dev")
    node = (target, kind, os.major(st.st_rdev), os.minor(st.st_rdev), st.st_mode & 0o7777,
            st.st_uid, st.st_gid)
    return node, perms


def _security(opts: dict) -> Security:
    from minicontainer.runtime import api

    privileged = bool(opts.get("privileged"))
    try:
        add = {api.capability_name(c) for c in opts["cap_add"]}
        drop = {api.capability_name(c) for c in opts["cap_drop"]}
    except ValueError as e:
        raise UsageError(str(e))
    keep = set(api.capability_names(default=not (privileged or "all" in add)))
    keep |= add - {"all"}
    keep = set() if "all" in drop else keep - drop

    no_new_privs, seccomp = True, "default"
    for opt in opts["security_opt"]:
        key, eq, value = opt.partition("=")
        if key == "seccomp" and value:
            seccomp = value
        elif key != "no-new-privileges" or value not in ("", "true", "false"):
            raise UsageError(f"unsupported --security-opt {opt!r} (supported: "
                             "no-new-privileges[=true|false], seccomp=unconfined|PROFILE.json)")
        else:
            no_new_privs = value != "false"
    if privileged or seccomp == "unconfined":  # --privileged: no filter, as with docker
        seccomp = None
    elif seccomp != "default":  # a file, read and checked now: json only for this case
        from minicontainer.runtime.seccomp_profile import load_file

        seccomp = load_file(seccomp)
    return Security(capabilities=frozenset(keep), no_new_privs=no_new_privs,
                    privileged=privileged, seccomp=seccomp)


def main(args: list[str], root: str | None) -> int:
    opts, positionals = parse(args)
    if opts.get("help"):
        from minicontainer.cli.resources import HELP as RESOURCES_HELP

        sys.stdout.write(HELP + "\n" + RESOURCES_HELP)
        return 0
    spec = build_spec(opts, positionals)
    from minicontainer.runtime import api

    if opts.get("dry_run"):
        sys.stdout.write("".join(line + "\n" for line in
                                 api.dry_run(spec, root, detached=bool(opts.get("detach")))))
        return 0
    if opts.get("detach"):
        sys.stdout.write(api.run_detached(spec, root, auto_remove=bool(opts.get("rm"))) + "\n")
        return 0
    return api.run(spec, root)
