"""`minicontainer --trace run`: a real launch narrated, phase by phase, through its teardown."""
import json
import os
import re

from minicontainer.kernel import trace

LINE = re.compile(r"\[trace (\d+)\] (.*)")


def _markers(lines, pid):
    return [text[5:-5] for p, text in lines if p == pid and text.startswith("---- ")]


def test_trace_narrates_every_phase_within_the_width(mc, rootfs):
    r = mc("--trace", "run", rootfs, "/bin/true")
    assert r.returncode == 0, r.stderr
    raw = r.stderr.splitlines()
    assert raw and all(len(line) <= trace.WIDTH for line in raw), \
        max(raw, key=len)
    lines = [LINE.fullmatch(line).groups() for line in raw]
    runtime = lines[0][0]
    # the runtime: its cgroup, the clone3, then the teardown; the container's PID 1 the rest
    assert _markers(lines, runtime) == ["cgroups", "namespaces", "teardown"]
    assert _markers(lines, "1") == ["namespaces", "network", "rootfs", "process", "exec"]
    texts = [text for _, text in lines]
    # the container's own cgroup is the last directory made (after its parent, if missing)
    cid = [t for t in texts if t.startswith("mkdir('/sys/fs/cgroup/")][-1][-18:-6]
    assert len(cid) == 12
    assert not re.search(r"[0-9a-f]{64}", r.stderr)  # no full id anywhere
    # both ends of the clone3 narrate it: the child (= 0) and the runtime (= the child's pid)
    clones = sorted((p, t) for p, t in lines if t.startswith("clone3("))
    assert [p for p, _ in clones] == ["1", runtime]
    for _, clone in clones:
        assert clone.startswith("clone3(CLONE_NEWPID|CLONE_INTO_CGROUP, cgroup=/sys/fs/cgroup/")
        assert f"/{cid}) = " in clone
    assert "prctl(PR_SET_PDEATHSIG, SIGKILL) = 0" in texts
    assert any(t.startswith("mount('overlay', '…/containers/") and f"/{cid}/rootfs'" in t
               for t in texts)
    teardown = texts[texts.index("---- teardown ----") + 1:]
    assert teardown[0].startswith("the container's mounts (overlay root, /proc, /dev, /sys)")
    assert any(t.startswith("rmdir('/sys/fs/cgroup/") and t.endswith(f"/{cid}') = 0")
               for t in teardown)
    assert teardown[-1] == f"removed the state directory …/containers/{cid} " \
        "(record, upper and work layers)"
    assert "execve('/bin/true', ['/bin/true'])" in texts


def test_trace_json_lines_parse(mc, rootfs, state_root):
    r = mc("--trace=json", "run", rootfs, "/bin/true")
    assert r.returncode == 0, r.stderr
    objects = [json.loads(line) for line in r.stderr.splitlines()]
    assert objects[0]["note"] == f"state root {state_root}"
    calls = {o["call"]: o for o in objects if "call" in o}
    assert calls["clone3"]["args"][0] == "CLONE_NEWPID|CLONE_INTO_CGROUP"
    assert calls["execve"] == {"pid": 1, "phase": "exec", "call": "execve",
                               "args": ["/bin/true", ["/bin/true"]], "result": None,
                               "errno": None}
    assert [o["phase"] for o in objects if set(o) == {"pid", "phase"} and o["pid"] == 1] == \
        ["namespaces", "network", "rootfs", "process", "exec"]
    # json keeps the whole id: a tool can find the container by it
    assert any(len(o["args"][0].rsplit("/", 1)[1]) == 64 for o in objects
               if o.get("call") == "rmdir" and o["result"] == 0)


def test_unknown_trace_form_is_refused(mc, rootfs):
    r = mc("--trace=xml", "run", rootfs, "/bin/true")
    assert (r.returncode, r.stderr) == (125, "minicontainer: unknown --trace=xml (text or json)\n")


def _normal(line: str, state_root: str) -> tuple[str, str]:
    """(pid, text) with what differs between runs and hosts made alike: the runtime's pid,
    the container id, the state root and the cgroup parent named after it, the cgroup2 mount
    point (hybrid or not), and the overlay's data (the reader's own rootfs path)."""
    pid, text = LINE.fullmatch(line).groups()
    text = text.replace(state_root, "/run/minicontainer")
    text = re.sub(r"minicontainer-[0-9a-f]{16}", "minicontainer", text)
    text = re.sub(r"/sys/fs/cgroup/(unified/)?", "CGROUP2/", text)
    text = re.sub(r"\b[0-9a-f]{12}\b", "ID", text)
    text = re.sub(r"'lowerdir=.*'\) = 0$", "'lowerdir=…') = 0", text)
    if pid != "1":  # the child's pid, as the runtime's clone3 returns it
        text = re.sub(r"^(clone3\(.*\)) = \d+$", r"\1 = PID", text)
    return ("1" if pid == "1" else "runtime"), text


def test_the_excerpt_in_docs_run_md_is_real_output(mc, rootfs, state_root):
    doc = open(os.path.join(os.path.dirname(__file__), "..", "docs", "run.md")).read()
    block = doc.split("<!-- trace excerpt: checked by tests/test_trace.py -->\n```text\n")[1]
    shown = [line for line in block.split("\n```")[0].splitlines() if line != "..."]
    r = mc("--trace", "run", rootfs, "/bin/true")
    assert r.returncode == 0, r.stderr
    real = [_normal(line, state_root) for line in r.stderr.splitlines()]
    # each line shown is a real one, in the order its process printed it
    at = {"1": 0, "runtime": 0}
    for line in shown:
        pid, text = _normal(line, "/run/minicontainer")
        mine = [t for p, t in real if p == pid]
        assert text in mine[at[pid]:], f"not in the real trace (in this order): {line}"
        at[pid] = mine.index(text, at[pid]) + 1
