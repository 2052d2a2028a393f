"""-t: a real pseudo-terminal for the container, and the parent's relay to the user's terminal.

The pty comes from the container's own devpts instance, and its slave end is bound over
/dev/console, as runc does. The parent puts the user's terminal in raw mode and copies bytes
both ways, so ^C, ^Z and line editing are handled by the container's terminal line
discipline: Ctrl-C becomes SIGINT for the container's foreground process group, and job
control in /bin/sh works. A SIGWINCH on the parent is passed on as a new window size.
"""
from __future__ import annotations

import fcntl
import os
import select
import termios

import _signal

from minicontainer.kernel import syscalls
from minicontainer.kernel.syscalls import MS_BIND, mount


def terminal_size():
    """The user's window size (struct winsize, packed) from whichever of our stdio is a
    terminal, or None."""
    for fd in (0, 1, 2):
        try:
            return fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
        except OSError:
            continue
    return None


def pack_winsize(rows: int, cols: int) -> bytes:
    """struct winsize, packed as the TIOCSWINSZ ioctl takes it (OCI process.consoleSize)."""
    return rows.to_bytes(2, "little") + cols.to_bytes(2, "little") + bytes(4)


def open_pty(ptmx: str, winsize) -> tuple[int, int]:
    """A pty pair from the devpts instance whose ptmx is given, sized like the user's
    terminal; returns (master, slave)."""
    master, slave = syscalls.open_pty(ptmx)
    if winsize:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, winsize)
    return master, slave


def open_console(root_fd: int, winsize) -> tuple[int, int]:
    """In the child, with the container's /dev mounted in the root root_fd names: open a pty
    pair from its devpts and bind the slave over /dev/console, both resolved inside the root
    (runtime/rootfs.resolve) and reached through their fds."""
    from minicontainer.runtime.rootfs import fd_path, resolve

    ptmx = resolve(root_fd, "/dev/pts/ptmx")
    try:
        master, slave = open_pty(fd_path(ptmx), winsize)
    finally:
        os.close(ptmx)
    console = resolve(root_fd, "/dev/console", "file")
    try:
        mount(fd_path(slave), fd_path(console), None, MS_BIND)
    finally:
        os.close(console)
    return master, slave


class MasterChannel:
    """-t, for run and exec: the child opens the pty in the container's own devpts (so `tty`
    inside names a device the container can see) and hands the master end to the runtime
    over a unix socketpair (SCM_RIGHTS). Made before the fork; each side closes the other's."""

    def __init__(self):
        import socket

        self.parent, self.child = socket.socketpair()

    def send(self, master: int) -> None:
        """Child side: hand the master over; we keep only the slave."""
        import socket

        socket.send_fds(self.child, [b"m"], [master])
        os.close(master)
        self.child.close()

    def receive(self) -> int | None:
        """Parent side: the master, or None if the child failed before opening the pty (its
        error pipe says why)."""
        import socket

        self.child.close()
        _, fds, _, _ = socket.recv_fds(self.parent, 1, 1)
        self.parent.close()
        return fds[0] if fds else None


def send_console(socket_path: str, master: int) -> None:
    """--console-socket (runc's protocol): connect to the engine's unix socket and send it the
    pty master with SCM_RIGHTS, the pty's name as the message. The engine relays it from then."""
    import socket
    import struct

    TIOCGPTN = 0x80045430  # the pty's number; termios does not name it
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(socket_path)
        socket.send_fds(sock, [f"/dev/pts/{number}".encode()], [master])
    os.close(master)


def become_session_leader(slave: int) -> None:
    """New session, with the pty as its controlling terminal, on fds 0, 1 and 2."""
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def relay(master: int, pid: int, interactive: bool) -> None:
    """Copy the user's terminal to the container's and back until the container's side
    closes (its last process holding the pty has exited)."""
    user_tty = os.isatty(0)
    saved = termios.tcgetattr(0) if user_tty else None

    def resize(signum, frame):
        try:
            size = fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(master, termios.TIOCSWINSZ, size)
        except OSError:
            pass

    if user_tty:
        _signal.signal(_signal.SIGWINCH, resize)
        _make_raw(0)
    try:
        sources = [master, 0] if interactive else [master]
        while True:
            try:
                readable, _, _ = select.select(sources, [], [])
            except InterruptedError:
                continue
            if 0 in readable:
                data = os.read(0, 65536)
                if data:
                    _write_all(master, data)
                else:
                    sources.remove(0)  # our stdin ended; the container's terminal stays
            if master in readable:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: no process holds the slave any more
                    break
                if not data:
                    break
                _write_all(1, data)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSAFLUSH, saved)
        os.close(master)


def _make_raw(fd: int) -> None:
    """cfmakeraw: no echo, no line buffering, no signals from keys (they go to the container)."""
    attrs = termios.tcgetattr(fd)
    attrs[0] &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP |
                  termios.INLCR | termios.IGNCR | termios.ICRNL | termios.IXON)
    attrs[1] &= ~termios.OPOST
    attrs[2] &= ~(termios.CSIZE | termios.PARENB)
    attrs[2] |= termios.CS8
    attrs[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    attrs[6][termios.VMIN] = 1
    attrs[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSAFLUSH, attrs)


def copy_until_closed(master: int, out: int) -> None:
    """-dt: the container's terminal output goes to `out` (its log) until the last holder
    of the pty's other end has exited."""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: nobody holds the slave any more
            break
        if not data:
            break
        _write_all(out, data)
    os.close(master)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]
