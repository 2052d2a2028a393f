"""`minicontainer vm run [OPTIONS] ROOTFS COMMAND [ARG...]`: the same rootfs and command as
`run`, booted under QEMU with a real guest kernel (minicontainer/vm/).

Flags that mean the same in both modes are spelled as `run` spells them (-e, -w, -h, -i, -t);
parsing stops at the first argument that is not an option, as with `run`.
"""
from __future__ import annotations

import os
import sys

from minicontainer.cli.flags import env_of, parse
from minicontainer.errors import UsageError

HELP = """\
Usage: minicontainer vm run [OPTIONS] ROOTFS COMMAND [ARG...]

Boot ROOTFS as a virtual machine (QEMU, a real guest kernel) and run COMMAND as its workload.
Its output comes back here (stdout and stderr apart, as with `run`) and its exit status
becomes minicontainer's. ROOTFS is packed into an initramfs (cached, keyed by its files'
metadata) with a small init; it is never written to. By default the guest gets no disk and
no NIC (like `run`'s default --network none): the rootfs lives in the initramfs.

Options:
  -e, --env KEY[=VALUE]    set an environment variable (KEY alone: take the host's value)
  -h, --hostname NAME      the guest's hostname
  -w, --workdir DIR        working directory in the guest (created if missing)
  -i, --interactive        keep stdin open (sent to the guest's console)
  -t, --tty                a terminal: the command gets the guest's console as its tty
  -m, --memory SIZE        guest memory, docker's syntax: 256m, 1g (default 128m)
      --cpus N             virtual CPUs (default 1)
      --devices MODEL      none (default): no disk, no NIC, on QEMU's microvm machine;
                           virtio: paravirtualized virtio-blk (/dev/vda, a 64 MiB scratch
                           disk) and virtio-net on microvm; emulated: an IDE disk (/dev/sda)
                           and an e1000 NIC on a PC, driven as real hardware
      --kernel PATH        the guest kernel (bzImage or vmlinux); default: the host's
                           /boot/vmlinuz-$(uname -r), else Debian's linux-image-amd64
                           fetched into /var/cache/minicontainer
      --accel auto|kvm|tcg auto (default): KVM if a test guest really runs under it
      --timeout SECONDS    stop the guest after this long (exit 125)
      --guestfwd GUEST_PORT:HOST_PORT
                           let the guest reach 127.0.0.1:HOST_PORT on the host at
                           10.0.2.100:GUEST_PORT (the guest can reach nothing else;
                           needs --devices virtio or emulated)
      --stats FILE         write the run's figures (times, memory, guest kernel) as JSON
      --verbose            show the guest kernel's boot messages

Exit status: the command's own; 125 if minicontainer or the VM failed.
"""

# flag -> (field, takes a value)
FLAGS = {
    "-e": ("env", True), "--env": ("env", True),
    "-h": ("hostname", True), "--hostname": ("hostname", True),
    "-w": ("workdir", True), "--workdir": ("workdir", True),
    "-i": ("interactive", False), "--interactive": ("interactive", False),
    "-t": ("tty", False), "--tty": ("tty", False),
    "-m": ("memory", True), "--memory": ("memory", True),
    "--cpus": ("cpus", True),
    "--devices": ("devices", True),
    "--kernel": ("kernel", True),
    "--accel": ("accel", True),
    "--timeout": ("timeout", True),
    "--stats": ("stats", True),
    "--guestfwd": ("guestfwd", True),
    "--verbose": ("verbose", False),
    "--help": ("help", False),
}
REPEATABLE = ("env", "guestfwd")


def config_of(opts: dict, rootfs: str, command: list[str]):
    """The VMConfig for parsed options (shared with `compare`)."""
    from minicontainer.vm.launch import VMConfig, parse_memory

    workdir = opts.get("workdir", "/")
    if not workdir.startswith("/"):
        raise UsageError(f"the working directory {workdir!r} must be an absolute path")
    cpus = _number(opts.get("cpus", "1"), "--cpus", int)
    timeout = _number(opts["timeout"], "--timeout", float) if "timeout" in opts else None
    accel = opts.get("accel", "auto")
    if accel not in ("auto", "kvm", "tcg"):
        raise UsageError(f"--accel {accel!r}: choose auto, kvm or tcg")
    env = env_of(opts["env"])
    if opts.get("tty") and "TERM" in os.environ:
        env.setdefault("TERM", os.environ["TERM"])  # as docker -t does
    return VMConfig(rootfs=os.path.abspath(rootfs), args=command, env=env,
                    workdir=workdir, hostname=opts.get("hostname"), kernel=opts.get("kernel"),
                    devices=opts.get("devices", "none"),
                    memory_mib=parse_memory(opts["memory"]) if "memory" in opts else 128,
                    cpus=cpus, interactive=bool(opts.get("interactive")),
                    tty=bool(opts.get("tty")), accel=accel, timeout=timeout,
                    guestfwd=[_forward(f) for f in opts.get("guestfwd", [])],
                    verbose=bool(opts.get("verbose")))


def _forward(text: str) -> tuple[int, int]:
    guest, _, host = text.partition(":")
    if not (guest.isdigit() and host.isdigit() and 0 < int(guest) < 65536 and 0 < int(host) < 65536):
        raise UsageError(f"--guestfwd {text!r}: want GUEST_PORT:HOST_PORT")
    return int(guest), int(host)


def _number(text: str, flag: str, kind):
    try:
        value = kind(text)
    except ValueError:
        value = -1
    if value <= 0:
        raise UsageError(f"{flag} {text!r}: want a positive number")
    return value


def main(args: list[str], root: str | None) -> int:
    if not args or args[0] in ("--help", "-h", "help"):
        sys.stdout.write(HELP)
        return 0 if args else 125
    if args[0] != "run":
        raise UsageError(f"unknown vm command {args[0]!r}: try 'minicontainer vm run --help'")
    opts, positionals = parse(args[1:], FLAGS, REPEATABLE)
    if opts.get("help"):
        sys.stdout.write(HELP)
        return 0
    if len(positionals) < 2:
        raise UsageError('"vm run" needs a rootfs and a command: minicontainer vm run ROOTFS COMMAND [ARG...]')
    config = config_of(opts, positionals[0], positionals[1:])

    from minicontainer.vm.launch import run_vm

    result = run_vm(config)
    if "stats" in opts:
        import json
        import resource

        figures = result.as_dict()
        figures["runtime_maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with open(opts["stats"], "w") as f:
            json.dump(figures, f, indent=2)
    return result.status
