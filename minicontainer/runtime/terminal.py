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


def open_console(root: str, winsize) -> tuple[int, int]:
    """In the child, with the container's /dev mounted at root/dev: open a pty pair there,
    size it like the user's terminal, and bind the slave over /dev/console."""
    master, slave = syscalls.open_pty(f"{root}/dev/pts/ptmx")
    if winsize:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, winsize)
    console = f"{root}/dev/console"
    open(console, "a").close()
    mount(f"/proc/self/fd/{slave}", console, None, MS_BIND)
    return master, slave


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


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]
