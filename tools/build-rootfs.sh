#!/bin/sh
# Build a minimal root filesystem from Debian's busybox-static package, and nothing else:
# busybox with one symlink per applet, and /etc/passwd, /etc/group, /etc/hosts, /etc/hostname.
#   usage: tools/build-rootfs.sh [DEST]     (default: rootfs/ at the top of the checkout)
# The result is generated, not committed (install.sh runs this). Rebuilding replaces it.
# Nothing but the filesystem goes into DEST: whatever is there is what every container sees
# as its /, so this script and its notes live here, not beside it.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dest=${1:-$(dirname "$here")/rootfs}
cache=${MINICONTAINER_CACHE:-/var/cache/minicontainer}
mkdir -p "$cache/debs"

# apt-get download fetches the .deb without installing it anywhere.
deb=$(ls "$cache"/debs/busybox-static_*.deb 2>/dev/null | head -n 1 || true)
if [ -z "$deb" ]; then
    (cd "$cache/debs" && apt-get -o APT::Sandbox::User=root download busybox-static >/dev/null)
    deb=$(ls "$cache"/debs/busybox-static_*.deb | head -n 1)
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg -x "$deb" "$tmp/pkg"

new="$dest.new.$$"
rm -rf "$new"
mkdir -p "$new"
cd "$new"
mkdir -p bin sbin usr/bin usr/sbin etc proc sys dev tmp root home var/tmp var/log run mnt
chmod 1777 tmp var/tmp
chmod 700 root
cp "$tmp/pkg/bin/busybox" bin/busybox
# One symlink per applet, at the path busybox itself says it belongs.
for applet in $(bin/busybox --list-full); do
    [ -e "$applet" ] || ln -s /bin/busybox "$applet"
done

cat > etc/passwd <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
user:x:1000:1000:user:/home/user:/bin/sh
PASSWD
cat > etc/group <<'GROUP'
root:x:0:
daemon:x:1:
bin:x:2:
tty:x:5:
users:x:100:user
nogroup:x:65534:
user:x:1000:
GROUP
cat > etc/hosts <<'HOSTS'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
HOSTS
echo minicontainer > etc/hostname
mkdir -p home/user && chown 1000:1000 home/user
cd - >/dev/null

rm -rf "$dest.old.$$"
if [ -d "$dest/bin" ]; then
    # Replace only what this script generates.
    for f in "$new"/*; do rm -rf "$dest/$(basename "$f")"; done
fi
mkdir -p "$dest"
cp -a "$new"/. "$dest"/
rm -rf "$new"
echo "rootfs ready: $dest ($(ls "$dest/bin" | wc -l) entries in /bin)"
