#!/usr/bin/env bash
# nspawn-image.sh SUITE... - build (once) the cached Debian rootfs the system tests boot.
#
#   /var/cache/routemq-test/rootfs-<suite>/   minbase + systemd + mosquitto + polkitd, with the
#                                             .deb's Python dependencies downloaded but NOT
#                                             installed, so `apt install ./routemq_*.deb` inside
#                                             a container without network resolves them from
#                                             the archive's metadata and .debs.
# A rootfs is rebuilt when missing, when its recipe (this file) changed, or with REBUILD=1.
# Builds are atomic (built in <dir>.tmp, then renamed), so an interrupted build is not reused.
# Environment: CACHE_DIR (default /var/cache/routemq-test), MIRROR (default: the host's apt
# mirror, else deb.debian.org).
set -euo pipefail

CACHE_DIR=${CACHE_DIR:-/var/cache/routemq-test}
REBUILD=${REBUILD:-0}
# Installed in the image: what a Debian host running routemq would have besides the package.
BASE_PKGS=systemd,systemd-sysv,dbus,polkitd,procps,mosquitto,mosquitto-clients,python3,python3-venv,ca-certificates
# The .deb's runtime dependencies: downloaded only, so installing the .deb really pulls them.
DEP_PKGS="python3-paho-mqtt python3-sdnotify python3-pythonjsonlogger python3-configargparse"

[ "$(id -u)" = 0 ] || { echo "nspawn-image.sh: must run as root" >&2; exit 2; }
[ $# -ge 1 ] || { echo "usage: nspawn-image.sh SUITE..." >&2; exit 2; }
command -v mmdebstrap >/dev/null || { echo "nspawn-image.sh: mmdebstrap missing (scripts/test-setup.sh installs it)" >&2; exit 2; }

if [ -z "${MIRROR:-}" ]; then  # the mirror apt already uses (the only archive reachable here)
  MIRROR=$(awk '/^URIs:/{for(i=2;i<=NF;i++) if ($i !~ /security/) {print $i; exit}}' \
           /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 || true)
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
fi

recipe=$(cat "$0" | sha256sum | cut -c1-16)
mkdir -p "$CACHE_DIR"
for suite in "$@"; do
  root=$CACHE_DIR/rootfs-$suite
  if [ "$REBUILD" != 1 ] && [ "$(cat "$root/.routemq-recipe" 2>/dev/null)" = "$recipe" ]; then
    echo "nspawn-image: $suite cached ($root)"
    continue
  fi
  echo "nspawn-image: building $suite from $MIRROR"
  t0=$(date +%s)
  rm -rf "$root.tmp"
  mmdebstrap --quiet --variant=minbase --include="$BASE_PKGS" \
    --skip=cleanup/apt/lists --skip=cleanup/apt/cache \
    --customize-hook="chroot \"\$1\" apt-get -qq install --download-only -y $DEP_PKGS" \
    --customize-hook='echo routemq-test > "$1/etc/hostname"' \
    "$suite" "$root.tmp" "$MIRROR"
  echo "$recipe" > "$root.tmp/.routemq-recipe"
  rm -rf "$root"
  mv "$root.tmp" "$root"
  echo "nspawn-image: $suite built in $(( $(date +%s) - t0 )) s, $(du -sh "$root" | cut -f1)"
done
