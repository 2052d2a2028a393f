"""The launch protocol: how the runtime and a child it forked talk until the child's execve.
Used by launch.py (the container's first process) and exec.py (one more process in it).

    runtime (parent)                     pipe                child
    ----------------                     ----                -----
                                                             parent_gone()? (EOF on alive
                                                               before anything: exit 125)
    wait_point() -> b"r"   <──  "r"  ──  ready  ──           point(b"r"): has its namespaces
      (a veth into them, from outside)
    go_on()                ──   "g"  ──> alive  ──>          goes on; EOF instead: the
                                                               runtime is gone, exit 125
    wait_point() -> b"h"   <──  "h"  ──  ready  ──           point(b"h"): mounts made
      (prestart, createRuntime hooks)
    go_on()                ──   "g"  ──> alive  ──>
    wait_point() -> b""    <──  EOF  ──  ready  ──           end_points(): no more stops
    receive_console()      <── master ── console (-t) ──     the pty, opened in its devpts
    read_failure() -> b""  <──  EOF  ──  error  ──           execve closes it: success
                   -> b"Kind\\nmessage"  <──      ──         fail(e): one line, then exit
    raise_failure()                                            with its kind's status

Without outside steps or parent hooks there is no ready pipe and no stop: the default run
costs no round trip. exec's children use the error pipe only (Channel(alive=False)).
EOF is the message wherever it can be: a process that dies closes its ends, so neither side
waits for a peer that is gone.

Signals meant for the container are held (blocked) from before the fork until something can
take them: the parent's forwarding handlers, or the command after execve (hold_signals,
Channel.unblocked). The child of OCI `create` stops before execve at the exec fifo until
`start` (wait_for_start); it closes its error pipe first, which tells `create` it exists.
"""
from __future__ import annotations

import os
import select

import _signal  # the C module under `signal`, which would import enum (~3 ms) on every run

from minicontainer.errors import BY_KIND, ContainerError
from minicontainer.runtime.state import signal_process

# Signals the runtime passes on to the container, as docker does.
FORWARDED_SIGNALS = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT)


class Channel:
    """The pipes between the runtime and one child, made before the fork; after it each side
    calls its *_side() once, which closes the other side's ends.
    err: child -> runtime, "Kind\\nmessage" or EOF at execve; alive: runtime -> child, "g"
    bytes, EOF when the runtime is gone; ready (points=True): child -> runtime, one byte per
    point. console: a terminal.MasterChannel (-t) or None. unblocked: the signal mask the
    command gets at execve (see hold_signals)."""

    __slots__ = ("err_r", "err_w", "alive_r", "alive_w", "ready_r", "ready_w", "console",
                 "unblocked")

    def __init__(self, alive: bool = True, points: bool = False, console=None,
                 unblocked=None):
        self.err_r, self.err_w = os.pipe()
        self.alive_r, self.alive_w = os.pipe() if alive else (None, None)
        self.ready_r, self.ready_w = os.pipe() if points else (None, None)
        self.console, self.unblocked = console, unblocked

    # --- the child's side -----------------------------------------------------------------

    def child_side(self) -> None:
        _close(self.err_r, self.alive_w, self.ready_r)
        self.err_r = self.alive_w = self.ready_r = None

    def parent_gone(self) -> bool:
        """The runtime died before we could arrange to die with it (PDEATHSIG)."""
        poller = select.poll()
        poller.register(self.alive_r, select.POLLIN)
        return bool(poller.poll(0))

    def point(self, byte: bytes) -> None:
        """Tell the runtime we reached a point, and wait until it says go on."""
        os.write(self.ready_w, byte)
        if os.read(self.alive_r, 1) != b"g":  # EOF: the runtime is gone or gave up
            os._exit(125)

    def end_points(self) -> None:
        """No more points: the runtime stops waiting for one (EOF on ready)."""
        if self.ready_w is not None:
            os.close(self.ready_w)
            self.ready_w = None

    def close_error_pipe(self) -> None:
        """OCI create: all that could fail before execve has been checked; EOF now tells
        `create` the container exists. A failure after this goes to stderr (report)."""
        os.close(self.err_w)
        self.err_w = -1

    def fail(self, e: BaseException) -> None:
        fail(self.err_w, e)

    # --- the runtime's side ---------------------------------------------------------------

    def parent_side(self) -> None:
        _close(self.err_w, self.alive_r, self.ready_w)
        self.err_w = self.alive_r = self.ready_w = None

    def wait_point(self) -> bytes:
        """The next point the child reached, or b"" once it has no more (or died)."""
        point = os.read(self.ready_r, 1)
        if not point:
            os.close(self.ready_r)
            self.ready_r = None
        return point

    def go_on(self) -> None:
        os.write(self.alive_w, b"g")

    def receive_console(self):
        """-t: the pty's master, or None (no terminal, or the child failed before: its
        error pipe says why)."""
        return self.console.receive() if self.console else None

    def read_failure(self) -> bytes:
        """Block until execve (b"") or the child's failure ("Kind\\nmessage")."""
        failure = read_all(self.err_r)
        self.err_r = None
        return failure

    def close(self) -> None:
        """Close the runtime's ends still open (a long-lived caller, the Python API, must not
        collect them). Closing alive tells a child before its execve that we are gone."""
        _close(self.alive_w, self.err_r, self.ready_r)
        self.alive_w = self.err_r = self.ready_r = None


    def discard(self) -> None:
        """No child was forked after all (the fork failed, or we were interrupted before it):
        every end is ours to close."""
        _close(self.err_r, self.err_w, self.alive_r, self.alive_w, self.ready_r, self.ready_w)
        self.err_r = self.err_w = self.alive_r = self.alive_w = self.ready_r = None
        self.ready_w = None


def _close(*fds) -> None:
    for fd in fds:
        if fd is not None and fd >= 0:
            os.close(fd)


def read_all(fd: int) -> bytes:
    """Everything written to the pipe until EOF; closes it."""
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            os.close(fd)
            return b"".join(chunks)
        chunks.append(chunk)


def raise_failure(failure: bytes, default: str = "") -> None:
    """Raise what a child reported ("Kind\\nmessage": errors.BY_KIND, its exit status)."""
    kind, _, message = failure.decode(errors="replace").partition("\n")
    raise BY_KIND.get(kind, ContainerError)(message or default)


def fail(err_w: int, e: BaseException) -> None:
    """The end of a child that could not reach execve (never returns): report why, in one
    line, and exit with the status of its kind (errors.py; 125 for anything else)."""
    if isinstance(e, ContainerError):
        report(err_w, type(e).__name__, str(e))
        os._exit(e.exit_code)
    # an OSError names what failed; anything else is a bug: still one line, no traceback
    report(err_w, "ContainerError",
           str(e) if isinstance(e, OSError) else f"{type(e).__name__}: {e}")
    os._exit(125)


def report(err_w: int, kind: str, message: str) -> None:
    """Tell the runtime why we failed; once nobody reads the pipe (after `start`), stderr."""
    try:
        if err_w < 0:
            os.write(2, f"minicontainer: {message}\n".encode(errors="surrogateescape"))
        else:
            # surrogateescape: a command or path that is not UTF-8 goes back to its bytes
            os.write(err_w, f"{kind}\n{message}".encode(errors="surrogateescape"))
    except OSError:
        pass


def kill_and_reap(*pids: int) -> None:
    """SIGKILL each child and wait for it: an interrupted launch leaves no process."""
    for pid in pids:
        signal_process(pid, _signal.SIGKILL)
        os.waitpid(pid, 0)


def wait(pid: int) -> int:
    """Reap the child; its exit status, docker's way: 128+N when killed by signal N."""
    _, status = os.waitpid(pid, 0)  # retried by Python on EINTR (PEP 475)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def hold_signals():
    """Block the forwarded signals; returns the mask from before, for restore_signals."""
    return _signal.pthread_sigmask(_signal.SIG_BLOCK, FORWARDED_SIGNALS)


def restore_signals(mask) -> None:
    _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)


def forward_signals(pid: int) -> None:
    """From now on the forwarded signals we get go to `pid` (the container's process)."""
    for sig in FORWARDED_SIGNALS:
        _signal.signal(sig, lambda signum, frame: signal_process(pid, signum))


def wait_for_start(fifo: int, start_hooks=None, state=None) -> None:
    """OCI create's child: block until `start` opens the other end of the exec fifo (an
    O_PATH fd), run the startContainer hooks (as the container's user, in it, as runc), then
    tell `start` we go on (runc's exec.fifo): "0", or "1" and why not."""
    fd = os.open(f"/proc/self/fd/{fifo}", os.O_WRONLY | os.O_CLOEXEC)
    os.close(fifo)
    if start_hooks:
        from minicontainer.runtime import hooks

        try:
            hooks.run("startContainer", start_hooks, state)
        except ContainerError as e:
            os.write(fd, b"1" + str(e).encode())
            raise
    os.write(fd, b"0")
    os.close(fd)
