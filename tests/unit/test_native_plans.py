"""runtime/native.py's decisions, as any user: which plans native.c takes (the order it
applies steps in), how its failure reports read, and access(X_OK) as the container's user
will ask it. What native.c does in a container: tests/test_native.py, as root."""
from __future__ import annotations

import errno
import os

import pytest

from minicontainer.cli import run
from minicontainer.errors import CannotExecute, CommandNotFound, ContainerError
from minicontainer.runtime import native, plan, process


class Paths:
    id = "c0ffee" * 4
    rootfs, upper, work = "/s/c/rootfs", "/s/c/upper", "/s/c/work"


def ops_for(*args, **kw):
    spec = run.build_spec(*run.parse([*args, "/images/r", "/bin/true"]))
    return plan.plan(spec, Paths, spec.hostname or Paths.id[:12], **kw)


@pytest.mark.parametrize("args, kw", [((), {}), (("--user", "nobody", "-w", "/tmp"), {}),
                                      (("--read-only",), {}), (("--privileged",), {}),
                                      (("--network", "host"), {}), ((), {"foreground": False}),
                                      (("--security-opt", "no-new-privileges=false"), {})])
def test_plans_native_c_applies_in_its_order(args, kw):
    assert native._in_order(ops_for(*args, **kw))


@pytest.mark.parametrize("args, kw", [(("--tmpfs", "/x"), {}), (("-t",), {}),
                                      (("--init",), {}), ((), {"create": True}),
                                      (("--network", "bridge"), {"outside": True}),
                                      (("--chroot",), {})])
def test_plans_with_other_steps_are_left_to_python(args, kw):
    ops = ops_for(*args, **kw)
    assert not native._in_order(ops) or not all(
        op.pivot for op in ops if type(op) is plan.SwitchRoot)


def test_a_reordered_plan_is_refused():
    ops = ops_for()
    ops[0], ops[1] = ops[1], ops[0]
    assert not native._in_order(ops)


def test_failure_reports_read_as_the_python_child_would_raise_them():
    e = native.failure(b"Native\n2 exec", "x")
    assert type(e) is CommandNotFound and str(e) == 'exec: "x": no such file or directory'
    e = native.failure(b"Native\n13 exec", "x")
    assert type(e) is CannotExecute and str(e) == 'exec: "x": permission denied'
    e = native.failure(b"Native\n1 mount on /proc", "x")
    assert type(e) is ContainerError and str(e) == f"mount on /proc: {os.strerror(errno.EPERM)}"


class St:
    def __init__(self, mode, uid=0, gid=0):
        self.st_mode, self.st_uid, self.st_gid = 0o100000 | mode, uid, gid


ROOT = process.User(0, 0, [0], "/root")
NOBODY = process.User(65534, 65534, [65534], "/")
DEFAULT = {"permitted": frozenset({"dac_override", "chown"})}


@pytest.mark.parametrize("st, user, sets, may", [
    (St(0o700), ROOT, DEFAULT, True),            # root with CAP_DAC_OVERRIDE: any x bit
    (St(0o001, uid=5), ROOT, DEFAULT, True),
    (St(0o600), ROOT, DEFAULT, False),           # no x bit at all: nobody may
    (St(0o700, uid=5), ROOT, {"permitted": frozenset()}, False),  # root without it: bits
    (St(0o700), ROOT, None, True),               # privileged
    (St(0o700), NOBODY, DEFAULT, False),         # root's only
    (St(0o755), NOBODY, DEFAULT, True),
    (St(0o710, gid=65534), NOBODY, DEFAULT, True),
    (St(0o071, uid=65534), NOBODY, DEFAULT, False),  # the owner's bits decide for the owner
])
def test_may_execute_as_access_x_ok_for_the_containers_user(st, user, sets, may):
    assert native._may_execute(st, user, sets) is may
