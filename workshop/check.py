"""Check your work: run the commands a level's README shows under "Check your work" and
compare what they print with what the README says they print, literally.
    .venv/bin/python workshop/check.py            # every level
    .venv/bin/python workshop/check.py 03 05      # some levels
Run as root from the repository. tests/test_workshop.py uses the same two functions, and
tests/test_docs.py the same parser (commands) and runner (execute) for docs/*.md.
"""
import difflib
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SECTION = "## Check your work"


def blocks(level: str) -> list[tuple[str, str]]:
    """(command, expected output) for each `$ ` line in the ```console blocks of the
    README's "Check your work" section, in order."""
    with open(os.path.join(HERE, level, "README.md")) as f:
        text = f.read()
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return [(command, output) for info, command, output in commands(section) if info == "console"]


def commands(markdown: str) -> list[tuple[str, str, str]]:
    """(fence info string, command, what follows it) for each `$ ` line of the fenced blocks,
    in order. A command ending in `\\` continues on the next line, as in the shell."""
    found = []
    for info, block in re.findall(r"^ *```(\w*)[^\n]*\n(.*?)^ *```", markdown, re.M | re.S):
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, _, output = chunk.partition("\n")
            while command.endswith("\\") and output:
                more, _, output = output.partition("\n")
                command += "\n" + more
            found.append((info, command, output))
    return found


def run(command: str, timeout: float = 300) -> str:
    """What `command` prints on a terminal (stdout and stderr together), run from the repository."""
    return execute(command, timeout)[1]


def execute(command: str, timeout: float = 300, env: dict | None = None) -> tuple[int, str]:
    """`sh -c command` from the repository: its exit status and what it printed (stdout and
    stderr together, as on a terminal)."""
    done = subprocess.run(["/bin/sh", "-c", command], cwd=REPO, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, env=env)
    return done.returncode, done.stdout


def levels() -> list[str]:
    return sorted(d for d in os.listdir(HERE) if d[:2].isdigit())


def main(wanted: list[str]) -> int:
    failed = 0
    for level in levels():
        if wanted and level[:2] not in wanted and level not in wanted:
            continue
        for command, expected in blocks(level):
            got = run(command)
            if got == expected:
                print(f"ok    {level}: $ {command}")
                continue
            failed += 1
            print(f"FAIL  {level}: $ {command}")
            sys.stdout.writelines(difflib.unified_diff(expected.splitlines(True), got.splitlines(True),
                                                       "README", "yours"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
