"""Write each level's skeleton.py from its solution.py: every region between
`# >>> exercise: WHAT` and `# <<< exercise` becomes a TODO that says WHAT.
    .venv/bin/python workshop/make_skeletons.py
tests/test_workshop.py checks the skeletons are what this makes, so they cannot drift."""
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
REGION = re.compile(r"^( *)# >>> exercise: (.*?)\n.*?^ *# <<< exercise\n", re.M | re.S)


def skeleton(solution: str) -> str:
    text = REGION.sub(lambda m: f'{m[1]}# TODO: {m[2]}\n{m[1]}raise NotImplementedError({"TODO: " + m[2]!r})\n',
                      solution)
    return text.replace('"""Level', '"""Skeleton of level', 1)


def levels() -> list[str]:
    return sorted(os.path.join(HERE, d) for d in os.listdir(HERE) if d[:2].isdigit())


if __name__ == "__main__":
    for level in levels():
        with open(os.path.join(level, "solution.py")) as f:
            text = skeleton(f.read())
        with open(os.path.join(level, "skeleton.py"), "w") as f:
            f.write(text)
