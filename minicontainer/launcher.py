"""The `minicontainer` launcher: the script that runs a checkout's minicontainer, written once.

It starts the venv's interpreter with -S (no site module: about 3 ms less per start) and puts
the checkout, then the venv's site-packages, first on sys.path. install.sh writes it to
/usr/local/bin/minicontainer; the benchmarks (bench/startup.py, bench/verbs.py) and the
client tests (testing/clients.py) write one for the tree they measure or drive, so that what
they time or test starts exactly as an installed minicontainer does.

    python -m minicontainer.launcher PATH [TREE]   write it (TREE: this checkout)
    python -m minicontainer.launcher --code [TREE] print the Python it runs (install.sh's
                                                   shell launcher for a checkout other
                                                   users cannot enter)
"""
from __future__ import annotations

import os
import sys

TREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def site_packages() -> str:
    """This interpreter's site-packages (the venv's, when run from it)."""
    import sysconfig

    return sysconfig.get_paths()["purelib"]


ENTRY = "from minicontainer.cli import entry\nentry()"


def code(tree: str = TREE, site: str | None = None, env: dict | None = None,
         then: str = ENTRY) -> str:
    """The Python the launcher runs. env: variables to set first (a client test's state
    root for calls that come without --root); then: what it does once the path is set
    (bench/startup.py times the imports alone)."""
    lines = ["import os, sys" if env else "import sys"]
    lines += [f"os.environ[{k!r}] = {v!r}" for k, v in (env or {}).items()]
    lines += [f"sys.path[:0] = [{tree!r}, {site or site_packages()!r}]", then]
    return "\n".join(lines) + "\n"


def write(path: str, tree: str = TREE, python: str | None = None, env: dict | None = None) -> str:
    """An executable launcher at `path` for `tree`, run by `python` (this interpreter)."""
    with open(path, "w") as f:
        f.write(f"#!{python or sys.executable} -S\n{code(tree, env=env)}")
    os.chmod(path, 0o755)
    return path


def main(argv: list[str]) -> int:
    if argv[:1] == ["--code"] and len(argv) <= 2:
        sys.stdout.write(code(*argv[1:]))
        return 0
    if len(argv) in (1, 2) and not argv[0].startswith("-"):
        write(*argv)
        return 0
    print("usage: python -m minicontainer.launcher PATH [TREE] | --code [TREE]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
