"""The --trace switch: narrate every syscall, cgroupfs write and clean-up step on stderr.

Off unless a front end turns it on (the CLI's `--trace` or `--trace=json`, or
MINICONTAINER_TRACE=1 or =json in the environment, which the CLI reads once at start). A
switch set by a call, not read from the environment at import time, so what turns it on is
visible where it happens, and a test or a Python caller can turn it on and off. Processes the
runtime forks (the `run -d` shim, the container's first process) inherit it with the rest of
their memory.

Two forms:
  text  for people: `[trace PID] call(ARGS) = RESULT`, one line each, at most WIDTH
        characters. A container id (64 hex digits) is shown as its first 12, as docker
        shows ids, and the state root as `…` (said once, in the line that starts the
        launch); an argument too long for the line keeps its two ends around a `…`.
        `[trace PID] ---- PHASE ----` starts each phase (PHASES) in each process.
  json  for tools: one object per line, nothing shortened:
        {"pid", "phase", "call", "args", "result", "errno"} for a call,
        {"pid", "phase", "note"} for a step that is not one call, {"pid", "phase"} alone
        for the start of a phase. `json` is imported only when this form is asked for.
Syscall arguments arrive spelled already (kernel/syscalls.py): a flag or constant is a
`Name` (shown bare: MS_RDONLY|MS_NOSUID), any other str is a real string (shown quoted).
"""
from __future__ import annotations

import os
import sys

enabled = False
form = "text"      # or "json"
phase_name = None  # the phase this process is in, for json lines
WIDTH = 160
PHASES = ("namespaces", "rootfs", "process", "network", "cgroups", "exec", "teardown")

_state_root = None
_json = None  # the json module, imported by set_enabled only for --trace=json
_HEX = frozenset("0123456789abcdef")


class Name(str):
    """A flag or constant spelled by name (CLONE_NEWPID|CLONE_INTO_CGROUP): shown unquoted."""


def set_enabled(on: bool, how: str = "text") -> None:
    global enabled, form, _json
    if how not in ("text", "json"):
        raise ValueError(f"unknown trace form {how!r} (text or json)")
    enabled, form = bool(on), how
    if enabled and how == "json" and _json is None:
        import json

        _json = json


def set_state_root(root: str) -> None:
    """Show paths under `root` as `…/...` from now on, and say so once."""
    global _state_root
    if enabled:
        _state_root = None
        note(f"state root {root}" if form == "json" else
             f"state root {root} (shown as …); container ids shown by their first 12 characters")
        _state_root = root.rstrip("/")


def phase(name: str) -> None:
    """This process starts one of PHASES: one marker line."""
    global phase_name
    phase_name = name
    if enabled:
        _emit(f"---- {name} ----", {"pid": os.getpid(), "phase": name})


def call(name: str, args=(), result=None, errno: str | None = None) -> None:
    """One call made (result None: one that does not return, as execve)."""
    if not enabled:
        return
    if form == "json":
        _emit(None, {"pid": os.getpid(), "phase": phase_name, "call": name,
                     "args": list(args), "result": result, "errno": errno})
        return
    shown = [_short(_show(a)) for a in args]
    end = "" if result is None else f" = {result}" + (f" {errno}" if errno else "")
    fixed = len(f"[trace {os.getpid()}] {name}()") + len(end) + 2 * max(len(shown) - 1, 0)
    _fit(shown, WIDTH - fixed)
    _emit(f"{name}({', '.join(shown)}){end}", None)


def note(text: str) -> None:
    """A step that is not one syscall (python-prctl's capability sets, a directory removed)."""
    if enabled:
        _emit(_short(text), {"pid": os.getpid(), "phase": phase_name, "note": text})


def line(text: str) -> None:
    """Kept for callers outside the runtime (the workshop's levels): the same as note."""
    note(text)


def _emit(text: str | None, obj: dict | None) -> None:
    if form == "json":
        sys.stderr.write(_json.dumps(obj) + "\n")
        return
    text = f"[trace {os.getpid()}] {text}"
    if len(text) > WIDTH:
        text = ellipsize(text, WIDTH)
    sys.stderr.write(text + "\n")


def _show(value) -> str:
    if isinstance(value, Name):
        return value
    if value is None:
        return "NULL"
    if isinstance(value, int) and value > 0xFFFF:
        return hex(value)
    return repr(value)


def _fit(shown: list[str], room: int) -> None:
    """Shorten the longest arguments, in place, until all of them fit in `room` characters."""
    while sum(map(len, shown)) > room:
        i = max(range(len(shown)), key=lambda k: len(shown[k]))
        over = sum(map(len, shown)) - room
        if len(shown[i]) <= 16:
            return  # nothing sensible left to cut: _emit cuts the line itself
        shown[i] = ellipsize(shown[i], max(len(shown[i]) - over, 16))


def ellipsize(text: str, width: int) -> str:
    """`text` in `width` characters: its beginning and its end (where a path's meaningful
    part is: the options' last one, the file's name) around a `…`."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    tail = width - 1 - head
    return text[:head] + "…" + text[len(text) - tail:]


def short_ids(text: str) -> str:
    """Every run of exactly 64 hex digits (a container id) cut to its first 12."""
    out, i, n = [], 0, len(text)
    while i < n:
        j = i
        while j < n and text[j] in _HEX:
            j += 1
        if j == i:
            out.append(text[i])
            i += 1
        else:
            out.append(text[i:i + 12] if j - i == 64 else text[i:j])
            i = j
    return "".join(out)


def _short(text: str) -> str:
    if _state_root:
        text = text.replace(_state_root + "/", "…/")
    return short_ids(text)
