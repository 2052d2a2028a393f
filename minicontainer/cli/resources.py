"""Resource flags of `run` (docker's), parsed and checked before anything starts.

Imported only when one of these flags is given, so plain runs do not pay for it. Values are
kept in docker's units in spec.Resources; runtime/cgroups.py translates them to cgroup v2.
"""
from __future__ import annotations

import os
import re

from minicontainer.errors import UsageError
from minicontainer.spec import Resources

HELP = """\
Resource limits (cgroup v2; refused, never ignored, where the host cannot enforce them):
      --memory BYTES       memory.max; the container is OOM-killed (exit 137) beyond it.
                           Sizes take b, k, m, g suffixes (binary: 1k = 1024); at least 6m
      --memory-swap BYTES  memory plus swap (docker's meaning); -1: unlimited swap;
                           default: as much swap as memory
      --memory-reservation BYTES
                           memory.low: memory protected from reclaim under pressure
      --cpus N             cpu.max: at most N CPUs' worth of time per period (e.g. 0.5)
      --cpu-shares N       relative weight, 2..262144 (default 1024), mapped to cpu.weight
      --cpuset-cpus LIST   only run on these CPUs, e.g. 0-1,3
      --pids-limit N       pids.max: at most N tasks; 0 or -1: unlimited
      --io-weight N        io.weight, 1..10000 (default 100)
      --device-read-bps PATH:RATE, --device-write-bps PATH:RATE
                           io.max on block device PATH, bytes per second (e.g. /dev/vda:1m)
      --stats              at exit, print peak memory, CPU time, throttling and pids peak
"""

# The Resources fields these flags fill (the flags themselves are in cli/run.py's table,
# so that parsing a plain run never imports this module).
FIELDS = ("memory", "memory_swap", "memory_reservation", "cpus", "cpu_shares", "cpuset_cpus",
          "pids_limit", "io_weight", "device_read_bps", "device_write_bps", "stats")

MIN_MEMORY = 6 << 20  # docker's minimum: less and the runtime itself cannot start inside

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?$", re.IGNORECASE)


def parse_size(flag: str, text: str) -> int:
    """'512m', '1.5g', '64k', '1048576', '10mb' -> bytes (binary multiples, as docker)."""
    m = _SIZE.match(text.strip())
    if not m:
        raise UsageError(f"invalid size {text!r} for {flag}: want a number with an optional "
                         "b, k, m or g suffix, e.g. 256m")
    number, unit = m.groups()
    value = int(float(number) * (1 << (10 * " kmgtp".index(unit.lower() or " "))))
    if value <= 0:
        raise UsageError(f"invalid size {text!r} for {flag}: must be more than 0")
    return value


def _int(flag: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"invalid value {text!r} for {flag}: want a whole number") from None
    if not low <= value <= high:
        raise UsageError(f"invalid value {text!r} for {flag}: must be from {low} to {high}")
    return value


def online_cpus() -> set[int]:
    with open("/sys/devices/system/cpu/online") as f:
        return parse_cpu_list(f.read().strip())


def parse_cpu_list(text: str) -> set[int]:
    """'0-2,4' -> {0, 1, 2, 4}; ValueError when malformed."""
    cpus: set[int] = set()
    for part in text.split(","):
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(part)
        first, last = int(low), int(high) if dash else int(low)
        if last < first:
            raise ValueError(part)
        cpus.update(range(first, last + 1))
    return cpus


def _cpuset(text: str) -> str:
    try:
        cpus = parse_cpu_list(text)
    except ValueError:
        raise UsageError(f"invalid --cpuset-cpus {text!r}: want a list like 0-2,4") from None
    online = online_cpus()
    if not cpus <= online:
        raise UsageError(f"invalid --cpuset-cpus {text!r}: CPU(s) "
                         f"{','.join(map(str, sorted(cpus - online)))} do not exist here "
                         f"(online: {','.join(map(str, sorted(online)))})")
    return text


def _cpus(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"invalid --cpus {text!r}: want a number of CPUs, e.g. 1.5") from None
    count = len(online_cpus())
    if not 0.01 <= value <= count:
        raise UsageError(f"invalid --cpus {text!r}: the range is 0.01 to {count} "
                         f"(this machine has {count} CPUs)")
    return value


def _device_rate(flag: str, text: str) -> tuple[str, str, int]:
    """'/dev/vda:1m' -> ('/dev/vda', '254:0', 1048576)."""
    path, colon, rate = text.rpartition(":")
    if not colon or not path.startswith("/"):
        raise UsageError(f"invalid {flag} {text!r}: want DEVICE-PATH:RATE, e.g. /dev/sda:1m")
    try:
        st = os.stat(path)
    except OSError as e:
        raise UsageError(f"invalid {flag} {text!r}: {path}: {e.strerror}") from None
    import stat

    if not stat.S_ISBLK(st.st_mode):
        raise UsageError(f"invalid {flag} {text!r}: {path} is not a block device")
    devno = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    return path, devno, parse_size(flag, rate)


def build(opts: dict) -> Resources | None:
    """The Resources for these options, or None when no resource flag was given."""
    if not any(opts.get(f) for f in FIELDS):
        return None
    r = Resources(stats=bool(opts.get("stats")))
    if "memory" in opts:
        r.memory = parse_size("--memory", opts["memory"])
        if r.memory < MIN_MEMORY:
            raise UsageError(f"--memory {opts['memory']} is too small: the minimum is 6m")
    if "memory_swap" in opts:
        text = opts["memory_swap"]
        r.memory_swap = -1 if text.strip() == "-1" else parse_size("--memory-swap", text)
        if r.memory is None:
            raise UsageError("--memory-swap needs --memory: it is memory plus swap")
        if r.memory_swap != -1 and r.memory_swap < r.memory:
            raise UsageError(f"--memory-swap {text} is less than --memory {opts['memory']}: "
                             "it counts memory plus swap, so it must be at least as large")
    if "memory_reservation" in opts:
        r.memory_reservation = parse_size("--memory-reservation", opts["memory_reservation"])
        if r.memory is not None and r.memory_reservation > r.memory:
            raise UsageError("--memory-reservation must not be more than --memory")
    if "cpus" in opts:
        r.cpus = _cpus(opts["cpus"])
    if "cpu_shares" in opts:
        r.cpu_shares = _int("--cpu-shares", opts["cpu_shares"], 2, 262144)
    if "cpuset_cpus" in opts:
        r.cpuset_cpus = _cpuset(opts["cpuset_cpus"])
    if "pids_limit" in opts:
        limit = _int("--pids-limit", opts["pids_limit"], -1, 1 << 22)
        r.pids_limit = limit if limit > 0 else None  # docker: 0 or -1 is unlimited
    if "io_weight" in opts:
        r.io_weight = _int("--io-weight", opts["io_weight"], 1, 10000)
    r.device_read_bps = [_device_rate("--device-read-bps", t) for t in opts.get("device_read_bps", [])]
    r.device_write_bps = [_device_rate("--device-write-bps", t) for t in opts.get("device_write_bps", [])]
    return r
