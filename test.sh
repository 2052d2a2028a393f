#!/bin/sh
# Run the whole test suite, as root, on a fresh Debian or Ubuntu machine or an installed one:
# installs whatever is missing first (the same ./install.sh, without its demo run).
#   ./test.sh [PYTEST ARGS...]
set -eu
cd "$(dirname "$0")"
./install.sh --no-demo
exec .venv/bin/python -m pytest -q "$@"
