#!/usr/bin/env bash
# `make run`: the product on its embedded default, in the foreground:
#   - installs the broker and Debian's python3 libraries if missing,
#   - `routemq run`: the master, the example application's workers (restarted if they die)
#     and, unless MQTT_BROKER is set, a private mosquitto on a free 127.0.0.1 port.
# Ctrl-C (or SIGTERM) drains the workers, then stops the broker.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

need=()
for p in mosquitto mosquitto-clients python3 python3-paho-mqtt python3-sdnotify python3-pythonjsonlogger python3-configargparse; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

export PYTHONPATH="$ROOT" ROUTEMQ_APP_ROOT="${ROUTEMQ_APP_ROOT:-$ROOT/examples/iot}"
# A runtime directory of its own, so it never meets an installed systemd fleet's /run/routemq.
export ROUTEMQ_RUNTIME_DIR="${ROUTEMQ_RUNTIME_DIR:-/tmp/routemq-make-run}"
echo "make run: example application $ROUTEMQ_APP_ROOT; in another terminal:"
echo "  ROUTEMQ_RUNTIME_DIR=$ROUTEMQ_RUNTIME_DIR PYTHONPATH=$ROOT ROUTEMQ_APP_ROOT=$ROUTEMQ_APP_ROOT /usr/bin/python3 -m routemq status"
exec /usr/bin/python3 -m routemq run "$@"
