"""An interactive shell in a container, driven through a real pseudo-terminal, as a person
at a keyboard would: the prompt, the container's own tty, Ctrl-C, job control, resizing."""
from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import time

import pytest


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Terminal:
    """The user's side: a pty whose slave is the runtime's stdin/stdout/controlling tty."""

    def __init__(self, argv: list[str]):
        self.master, slave = os.openpty()
        set_size(slave, 33, 101)

        def controlling_tty():
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                     preexec_fn=controlling_tty, close_fds=True)
        os.close(slave)
        self.seen = ""

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def expect(self, text: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"did not see {text!r}; screen so far:\n{self.seen}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096).decode(errors="replace")
                except OSError:
                    break
        found = self.seen
        self.seen = found[found.index(text) + len(text):]
        return found

    def close(self) -> int:
        try:
            return self.proc.wait(timeout=10)
        finally:
            os.close(self.master)


@pytest.fixture
def shell(mc_cmd, rootfs):
    term = Terminal([*mc_cmd, "run", "-it", "--hostname", "box", rootfs, "/bin/sh"])
    yield term
    if term.proc.poll() is None:
        term.proc.kill()
        term.close()


def test_interactive_shell(shell):
    shell.expect("# ")  # busybox ash's root prompt
    shell.send("tty; stty size; echo $((6*7)); hostname\r")
    out = shell.expect("box")
    assert "/dev/pts/0" in out  # the container's own devpts, not the host's
    assert "33 101" in out       # the window size of the user's terminal
    assert "42" in out

    # Ctrl-C reaches the container's foreground job, not the runtime.
    shell.send("sleep 100\r")
    time.sleep(0.5)
    shell.send("\x03")
    shell.send("echo after-$((1+1))\r")
    shell.expect("after-2", timeout=5)

    # Job control: a background job, listed, brought back and stopped with Ctrl-Z.
    shell.send("sleep 60 &\r")
    shell.send("jobs\r")
    shell.expect("Running")
    shell.send("fg\r")
    time.sleep(0.3)
    shell.send("\x1a")
    shell.expect("Stopped")
    shell.send("kill -9 %1; echo killed-$((2+2))\r")
    shell.expect("killed-4")

    # Resizing the user's terminal reaches the container's.
    set_size(shell.master, 40, 120)
    time.sleep(0.3)
    shell.send("stty size\r")
    shell.expect("40 120")

    shell.send("exit 7\r")
    assert shell.close() == 7


def test_tty_without_stdin_still_shows_output(mc_cmd, rootfs):
    term = Terminal([*mc_cmd, "run", "-t", rootfs, "/bin/sh", "-c", "tty; test -t 0 && echo is-a-tty"])
    term.expect("is-a-tty")
    assert term.close() == 0


def test_interactive_without_tty_pipes_stdin(mc, rootfs):
    r = mc("run", "-i", rootfs, "/bin/sh", "-c", "tr a-z A-Z", input="hello\n", stdin=None)
    assert r.stdout == "HELLO\n"


def test_stdin_is_closed_without_i(mc, rootfs):
    r = mc("run", rootfs, "/bin/sh", "-c", "cat; echo done", input="ignored\n", stdin=None)
    assert r.stdout == "done\n"
