#!/bin/sh
# Install minicontainer on a Debian or Ubuntu machine, as root, from nothing:
# Debian packages, a virtual environment in ./.venv with the package and its dependencies
# (its cffi module compiled here, once), the default ./rootfs, `minicontainer` on PATH.
# Then run a container to show it works (skip that with --no-demo).
# Every step is skipped when already done, so running it again is quick.
set -eu
cd "$(dirname "$0")"
top=$(pwd)

if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (sudo ./install.sh)" >&2
    exit 1
fi

# Build and run-time needs: Python with venv and headers, a C compiler for the cffi module and
# python-prctl (libcap headers), libseccomp (the seccomp filter, linked into the cffi module),
# iproute2 for the network tests, QEMU for `minicontainer vm`.
packages="python3 python3-venv python3-dev gcc libc6-dev libffi-dev libcap-dev libseccomp-dev iproute2 nftables procps ca-certificates qemu-system-x86"
packages="$packages ${MINICONTAINER_EXTRA_PACKAGES:-}"
missing=""
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# tools/build-rootfs.sh and the VM mode fetch .debs with apt-get download: they need package lists.
if [ -z "$missing" ] && ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
    apt-get update -qq
fi
if [ -n "$missing" ]; then
    echo "install.sh: apt-get install$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# The virtual environment, rebuilt when the package's build inputs change.
stamp=".venv/.minicontainer-build"
inputs=$(cat pyproject.toml setup.py minicontainer/kernel/_build.py minicontainer/kernel/native.c | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$inputs" ]; then
    echo "install.sh: creating .venv and installing minicontainer"
    rm -rf .venv
    /usr/bin/python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[test]'
    echo "$inputs" > "$stamp"
fi

[ -x rootfs/bin/busybox ] || tools/build-rootfs.sh

# Byte-compile the package: with PYTHONDONTWRITEBYTECODE set (as on some machines), Python
# would otherwise recompile every module at every container start (~8 ms).
.venv/bin/python -m compileall -q minicontainer

# `minicontainer` on root's PATH: the launcher (minicontainer/launcher.py) starts the venv's
# interpreter with -S (no site module: about 3 ms less per start) and imports this checkout.
if setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$top/.venv/bin/python"; then
    .venv/bin/python -m minicontainer.launcher /usr/local/bin/minicontainer "$top"
else
    # A checkout other users cannot enter (a home directory of mode 700): the kernel would
    # refuse them the interpreter with the shell's "Permission denied". A shell launcher
    # gives them minicontainer's own answer instead (about 1 ms more per start for root).
    launcher=$(.venv/bin/python -m minicontainer.launcher --code "$top")
    cat > /usr/local/bin/minicontainer <<LAUNCHER
#!/bin/sh
[ -x "$top/.venv/bin/python" ] || {
    echo "minicontainer: needs root: $top is not reachable for you; try 'sudo minicontainer ...'" >&2
    exit 125
}
exec "$top/.venv/bin/python" -S -c "$launcher" "\$@"
LAUNCHER
fi
chmod 755 /usr/local/bin/minicontainer

if [ "${1:-}" != "--no-demo" ]; then
    echo "install.sh: minicontainer run ./rootfs /bin/echo ..."
    minicontainer run ./rootfs /bin/sh -c 'echo "hello from a container: pid $$, hostname $(hostname), kernel $(uname -r)"'
fi
