"""What the lifecycle and OCI verbs share: an argparse that fails the minicontainer way (one
line, exit 125), the state store, and JSON output. Not imported by `run`."""
from __future__ import annotations

import argparse
import json
import sys

from minicontainer.errors import UsageError


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def parser(verb: str, usage: str, description: str) -> Parser:
    return Parser(prog=f"minicontainer {verb}", usage=f"minicontainer {verb} {usage}",
                  description=description)


def store(root: str | None):
    from minicontainer.runtime.state import StateStore, state_root

    return StateStore(state_root(root))


def print_json(value) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")
