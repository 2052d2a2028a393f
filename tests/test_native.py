"""The plan applied in C (runtime/native.py, kernel/native.c) against the plan applied in
Python (launch._child): for each kind of run native.c takes, the container must look the
same from inside either way, and fail the same way. Each case runs twice, once with
native.prepare answering None (the Python child), and compares what a probe prints."""
from __future__ import annotations

import os
import re

import pytest

import minicontainer
from minicontainer.runtime import native

# What the probe looks at: identity, capability sets, no_new_privs, seccomp mode, signal
# dispositions and mask, /dev, every mount, the working directory, the environment, the
# umask, the open fds, the cgroup, the keyring, oom_score_adj, masked and read-only paths.
PROBE = ("id; grep -E '^(Cap|NoNewPrivs|Seccomp|Sig(Blk|Ign|Cgt))' /proc/self/status; "
         "ls -la /dev | sed 's/ [A-Z][a-z][a-z] .* / /'; "
         "sed -E 's/^[0-9]+ [0-9]+ [0-9]+:[0-9]+ //' /proc/self/mountinfo; pwd; "
         "env | sort | grep -v HOSTNAME; umask; ls -l /proc/self/fd | sed 's/.*:[0-9][0-9] //'; "
         "cat /proc/1/cgroup; grep -c . /proc/keys; cat /proc/self/oom_score_adj; "
         "ls /proc/kcore /proc/keys 2>&1; touch /proc/sys/x 2>&1; hostname | wc -c")

CASES = [dict(), dict(user="nobody"), dict(user="1000:1000"), dict(user="daemon", workdir="/tmp"),
         dict(env={"A": "b", "PATH": "/bin"}), dict(cap_add=["SYS_ADMIN"]), dict(cap_drop=["ALL"]),
         dict(privileged=True), dict(security_opt=["no-new-privileges=false"]),
         dict(security_opt=["seccomp=unconfined"]), dict(hostname="box"), dict(network="host"),
         dict(user="nobody", cap_add=["DAC_OVERRIDE"]), dict(read_only=True),
         dict(read_only=True, user="nobody", workdir="/tmp")]


@pytest.fixture
def ways(monkeypatch):
    """run(...) -> (rc, stdout, stderr, took_native) for way "c" or "python"."""
    prepare = native.prepare

    def run(way, *args, **options):
        taken = []

        def spy(*a, **k):  # taken: native.c's way (or its checks raised, before the fork)
            taken.append(way == "c")
            if way != "c":
                return None
            prepared = prepare(*a, **k)
            taken[-1] = prepared is not None
            return prepared

        monkeypatch.setattr(native, "prepare", spy)
        options.setdefault("text", True)
        try:
            r = minicontainer.run(*args, **options)
        except minicontainer.ContainerError as e:
            return type(e).__name__, str(e), None, bool(taken and taken[-1])
        finally:
            monkeypatch.setattr(native, "prepare", prepare)
        out = re.sub(r"pipe:\[\d+\]", "pipe", re.sub(r"[0-9a-f]{64}", "ID", r.stdout))
        return r.returncode, out, r.stderr, bool(taken and taken[-1])

    return run


@pytest.mark.parametrize("options", CASES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_the_container_looks_the_same_either_way(ways, rootfs, state_root, options):
    c = ways("c", rootfs, ["/bin/sh", "-c", PROBE], root=state_root, text=True, **options)
    py = ways("python", rootfs, ["/bin/sh", "-c", PROBE], root=state_root, text=True, **options)
    assert c[3] and not py[3]  # native.c did the first, the Python child the second
    assert c[:3] == py[:3]
    assert c[0] == 0, c[2]


@pytest.mark.parametrize("argv, options, kind", [
    (["nosuch"], {}, "CommandNotFound"),
    (["/nosuch"], {}, "CommandNotFound"),
    (["/etc/passwd"], {}, "CannotExecute"),
    (["/bin/true"], {"user": "nosuchuser"}, "ContainerError"),
    (["/bin/true"], {"user": "0:nosuchgroup"}, "ContainerError"),
    (["./true"], {"workdir": "/bin", "user": "nobody"}, None),
])
def test_failures_are_the_same_either_way(ways, rootfs, state_root, argv, options, kind):
    c = ways("c", rootfs, argv, root=state_root, text=True, **options)
    py = ways("python", rootfs, argv, root=state_root, text=True, **options)
    assert c[:3] == py[:3]
    assert c[0] == (kind if kind else 0)


def test_a_script_for_another_user_and_a_missing_interpreter(ways, rootfs, state_root, tmp_path):
    """What only execve finds out (a #! interpreter that is missing, a file the user may not
    run): reported by native.c with errno, said as the Python child says it."""
    image = tmp_path / "image"
    os.system(f"cp -a {rootfs} {image}")
    (image / "bin" / "script").write_text("#!/nosuch/interpreter\n")
    (image / "bin" / "script").chmod(0o755)
    (image / "bin" / "mine").write_text("#!/bin/sh\necho mine\n")
    (image / "bin" / "mine").chmod(0o700)  # root's only
    for argv, options in ((["script"], {}), (["mine"], {"user": "nobody"}), (["mine"], {})):
        c = ways("c", str(image), argv, root=state_root, text=True, **options)
        py = ways("python", str(image), argv, root=state_root, text=True, **options)
        assert c[:3] == py[:3], argv
        assert c[3], "native.c was not used"


def test_what_native_c_does_not_take_goes_the_python_way(ways, rootfs, state_root, tmp_path):
    for options in (dict(tmpfs=["/scratch"]), dict(volumes={str(tmp_path): "/data"}),
                    dict(init=True), dict(workdir="/not/in/the/image")):
        r = ways("c", rootfs, ["true"], root=state_root, **options)
        assert r[0] == 0 and not r[3], options


def test_clone3_refused_with_enosys_falls_back_to_the_python_child(rootfs, state_root,
                                                                     monkeypatch):
    """A seccomp filter around the runtime (docker's answers clone3 with ENOSYS): the Python
    child, whose fork falls back to clone(2), starts the container instead."""
    import errno

    monkeypatch.setattr(native, "_clone", lambda *args: -errno.ENOSYS)
    r = minicontainer.run(rootfs, ["echo", "ok"], root=state_root, text=True)
    assert (r.returncode, r.stdout) == (0, "ok\n")


def test_the_runtime_reads_only_regular_files_of_the_image(rootfs, tmp_path):
    """/etc/passwd is read by the runtime itself, before the fork: a FIFO there would block it
    (its signals held: only SIGKILL ends it, and its cgroup and record stay), a device node
    would be read on the host. Only a regular file is opened; anything else is left to the
    Python child, which meets it inside the container. Checked in a subprocess: a hang fails."""
    import subprocess
    import sys

    image = tmp_path / "image"
    (image / "etc").mkdir(parents=True)
    os.mkfifo(image / "etc" / "passwd")
    os.mknod(image / "etc" / "group", 0o20644, os.makedev(1, 5))  # /dev/zero: no end
    code = ("import os, sys; from minicontainer.runtime import native\n"
            "image = os.open(sys.argv[1], os.O_PATH)\n"
            "for path in ('/etc/passwd', '/etc/group'):\n"
            "    try:\n"
            "        native._read_table(image, path)\n"
            "    except native._NotOurs:\n"
            "        print('left to the container:', path)\n")
    r = subprocess.run([sys.executable, "-c", code, str(image)], capture_output=True, text=True,
                       timeout=20)
    assert r.stdout.splitlines() == ["left to the container: /etc/passwd",
                                     "left to the container: /etc/group"], r.stderr


def test_a_passwd_that_is_a_directory_fails_the_same_way(ways, rootfs, state_root, tmp_path):
    image = tmp_path / "image"
    os.system(f"cp -a {rootfs} {image}")
    (image / "etc" / "passwd").unlink()
    (image / "etc" / "passwd").mkdir()
    c = ways("c", str(image), ["true"], root=state_root)
    py = ways("python", str(image), ["true"], root=state_root)
    assert c[:3] == py[:3] and c[0] != 0
    assert os.listdir(os.path.join(state_root, "containers")) == []


def test_the_command_is_looked_for_as_the_container_sees_it(ways, rootfs, state_root, tmp_path):
    """`..` after a symlinked working directory is the kernel's, not os.path.normpath's; a
    $PATH candidate that is a symlink into /dev (a tmpfs in the container) is not what the
    image has there."""
    image = tmp_path / "image"
    os.system(f"cp -a {rootfs} {image}")
    (image / "opt" / "real" / "sub").mkdir(parents=True)
    (image / "opt" / "real" / "tool").write_text("#!/bin/sh\necho real\n")
    (image / "opt" / "real" / "tool").chmod(0o755)
    (image / "lnk").symlink_to("/opt/real/sub")
    (image / "dev" / "devtool").write_text("#!/bin/sh\necho image\n")
    (image / "dev" / "devtool").chmod(0o755)
    (image / "bin" / "devtool").symlink_to("/dev/devtool")
    for argv, options in ((["../tool"], {"workdir": "/lnk"}), (["devtool"], {})):
        c = ways("c", str(image), argv, root=state_root, text=True, **options)
        py = ways("python", str(image), argv, root=state_root, text=True, **options)
        assert c[:3] == py[:3], argv
    assert c[0] == "CommandNotFound"


def test_an_argument_with_a_nul_is_refused_not_cut(ways, rootfs, state_root):
    """C strings end at a NUL: "a\\0b" would reach the command as "a". os.execve refuses it."""
    c = ways("c", rootfs, ["echo", "a\x00b"], root=state_root, text=True)
    py = ways("python", rootfs, ["echo", "a\x00b"], root=state_root, text=True)
    assert c[:3] == py[:3] and c[0] == "ContainerError"


def test_a_workdir_that_is_a_symlink_into_dev(ways, rootfs, state_root, tmp_path):
    """The image's /dev/x is not the container's (a tmpfs there): the Python child makes the
    working directory in the tmpfs; native.c would find none and fail."""
    image = tmp_path / "image"
    os.system(f"cp -a {rootfs} {image}")
    (image / "dev" / "x").mkdir()
    (image / "w").symlink_to("/dev/x")
    c = ways("c", str(image), ["pwd"], root=state_root, text=True, workdir="/w")
    py = ways("python", str(image), ["pwd"], root=state_root, text=True, workdir="/w")
    assert c[:3] == py[:3] == (0, "/dev/x\n", "")


@pytest.mark.parametrize("case", ["not utf-8", "symlink loop", "passwd in /proc"])
def test_what_the_image_holds_is_met_the_same_way(ways, rootfs, state_root, tmp_path, case):
    image = tmp_path / "image"
    os.system(f"cp -a {rootfs} {image}")
    argv, options = ["/bin/sh", "-c", "echo $HOME"], {}
    if case == "not utf-8":
        with open(image / "etc" / "passwd", "ab") as f:
            f.write(b"j\xe9r:x:1234:1234::/home/j\xe9r:/bin/sh\n")
        options = {"user": "1234"}
    elif case == "symlink loop":
        (image / "loop").symlink_to("/loop")
        argv = ["/loop"]
    else:  # the container reads its procfs there, not the image's file
        (image / "etc" / "passwd").unlink()
        (image / "etc" / "passwd").symlink_to("/proc/x")
        (image / "proc" / "x").write_text("root:x:0:0:root:/imagehome:/bin/sh\n")
    c = ways("c", str(image), argv, root=state_root, text=True, **options)
    py = ways("python", str(image), argv, root=state_root, text=True, **options)
    assert c[:3] == py[:3]


@pytest.mark.parametrize("argv, env", [(["/opt/secret/tool"], {}),
                                        (["tool"], {"PATH": "/opt/secret:/bin"})])
def test_a_command_in_a_directory_the_user_may_not_search(ways, rootfs, state_root, tmp_path,
                                                           argv, env):
    """access(X_OK) wants search permission on the directories too: the Python child finds
    the command not executable (126); native.c must not exec it (with the capabilities it
    still holds before execve, the kernel would let it)."""
    image = tmp_path / "image"
    os.system(f"cp -a {rootfs} {image}")
    (image / "opt" / "secret").mkdir(parents=True)
    (image / "opt" / "secret" / "tool").write_text("#!/bin/sh\necho hi\n")
    (image / "opt" / "secret" / "tool").chmod(0o755)
    (image / "opt" / "secret").chmod(0o700)
    c = ways("c", str(image), argv, root=state_root, text=True, user="nobody", env=env)
    py = ways("python", str(image), argv, root=state_root, text=True, user="nobody", env=env)
    assert c[:3] == py[:3] and c[0] == "CannotExecute"
