"""OCI hooks: programs the engine asks the runtime to run at points of the container's life
(the runtime spec's config.md "POSIX-platform Hooks" and runtime.md "Lifecycle").

    stage            where it runs                        when                      on failure
    prestart         runtime's namespaces (parent)        namespaces and mounts     create fails,
    createRuntime    runtime's namespaces (parent)          made, before pivot_root the container
    createContainer  the container's mount namespace      right after those, still  is removed
                     (and its others), path as the host's   before pivot_root       (poststop runs)
    startContainer   inside the container, as its user    `start`, before execve    start fails
    poststart        runtime's namespaces (`start`)       after the process runs    a warning
    poststop         runtime's namespaces (`delete`)      after it is removed       a warning

Each hook is exec'd with the container's state as JSON on stdin (runtime.md "State": pid as
seen from where the hook runs), exactly its args (args[0] is argv[0]) and env, and is killed
after its timeout. Its stdout and stderr are collected and the end of them is quoted when it
fails, as runc does. No subprocess module: it costs imports, and createContainer and
startContainer run after the host's library is out of reach.
"""
from __future__ import annotations

import json  # hooks.py is loaded only for a config with hooks, and before pivot_root
import os
import select

import _signal

from minicontainer.errors import ContainerError
from minicontainer.oci import OCI_VERSION
from minicontainer.runtime import process

OUTPUT_KEPT = 4096  # bytes of a hook's output quoted in the error


def state(container, status: str, pid: int) -> bytes:
    """The state JSON a hook reads on stdin (the same fields as `state`)."""
    record = container.record
    value = {"ociVersion": OCI_VERSION, "id": container.id, "status": status, "pid": pid,
             "bundle": record.get("bundle") or ""}
    if record.get("annotations"):
        value["annotations"] = record["annotations"]
    return json.dumps(value).encode()


def run(stage: str, hooks: list, state_json: bytes) -> None:
    """Run the hooks of one stage in order; the first failure raises ContainerError."""
    for hook in hooks:
        _run_one(stage, hook, state_json)


def run_warning_only(stage: str, hooks: list, state_json: bytes) -> None:
    """poststart and poststop: a failure is a warning on stderr, and the rest still run."""
    for hook in hooks:
        try:
            _run_one(stage, hook, state_json)
        except ContainerError as e:
            os.write(2, f"minicontainer: warning: {e}\n".encode())


def _run_one(stage: str, hook: dict, state_json: bytes) -> None:
    path = hook["path"]
    # stdin is a memfd holding the state: the hook may read it or not, and a large state
    # can never block us on a full pipe
    stdin = os.memfd_create("oci-state", os.MFD_CLOEXEC)
    os.write(stdin, state_json)
    os.lseek(stdin, 0, os.SEEK_SET)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(stdin, 0)
            os.dup2(out_w, 1)
            os.dup2(out_w, 2)
            # the launch blocks some signals until execve: a hook starts with none blocked
            _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
            env = dict(e.partition("=")[::2] for e in hook["env"])
            process.exec_command(path, hook["args"], env)
        except BaseException as e:
            os.write(2, f"{e}\n".encode())
        os._exit(127)
    os.close(stdin)
    os.close(out_w)
    try:
        status, output = _wait(pid, out_r, hook.get("timeout"))
    finally:
        os.close(out_r)
    if status is None:
        raise ContainerError(f"hooks.{stage} {path}: killed after its timeout of "
                             f"{hook['timeout']} s")
    if status != 0:
        text = output.decode(errors="replace").strip().replace("\n", " | ")
        raise ContainerError(f"hooks.{stage} {path} failed with exit status {status}"
                             + (f": {text}" if text else ""))


def _wait(pid: int, out_r: int, timeout) -> tuple[int | None, bytes]:
    """(exit status in shell form, or None if killed at the timeout; its output's end)."""
    import time

    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    poller.register(out_r, select.POLLIN)
    deadline = None if timeout is None else time.monotonic() + timeout
    output = b""
    exited = False
    try:
        while not exited:
            wait_ms = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            events = poller.poll(wait_ms)
            if not events:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                return None, output
            for fd, _ in events:
                if fd == pidfd:
                    exited = True
                else:
                    chunk = os.read(out_r, 65536)
                    if not chunk:
                        poller.unregister(out_r)
                    output = (output + chunk)[-OUTPUT_KEPT:]
    finally:
        os.close(pidfd)
    _, status = os.waitpid(pid, 0)
    # what it wrote just before exiting is still in the pipe (a child of the hook may still
    # hold the pipe open: read what is there, never wait for EOF)
    while select.select([out_r], [], [], 0)[0]:
        chunk = os.read(out_r, 65536)
        if not chunk:
            break
        output = (output + chunk)[-OUTPUT_KEPT:]
    code = os.waitstatus_to_exitcode(status)
    return (128 - code if code < 0 else code), output
