#!/usr/bin/env bash
# `make run`: the product on its embedded default, in the foreground.
#   - installs the broker and Debian's python3 libraries if missing,
#   - starts a private mosquitto on a free 127.0.0.1 port (unless MQTT_BROKER is set),
#   - runs the example application's workers (instances 1..WORKER_COUNT, default: the plan's).
# Ctrl-C (or SIGTERM) drains the workers and stops the broker.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

need=()
for p in mosquitto python3 python3-paho-mqtt python3-sdnotify python3-pythonjsonlogger python3-configargparse; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

PY=/usr/bin/python3
export PYTHONPATH="$ROOT" ROUTEMQ_APP_ROOT="${ROUTEMQ_APP_ROOT:-$ROOT/examples/iot}"
RUN=$(mktemp -d /tmp/routemq-run.XXXXXX)
export ROUTEMQ_RUNTIME_DIR="$RUN/runtime"
pids=()      # workers
broker=""    # the private mosquitto, stopped after the workers have drained
cleanup() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "$broker" ]; then kill -TERM "$broker" 2>/dev/null || true; wait "$broker" 2>/dev/null || true; fi
  rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

if [ -z "${MQTT_BROKER:-}" ]; then
  port=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  printf 'user %s\nlistener %s 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\n' "$(id -un)" "$port" "$RUN" > "$RUN/mosquitto.conf"
  # Its own session: Ctrl-C on the terminal must not stop the broker before the workers drain.
  setsid /usr/sbin/mosquitto -c "$RUN/mosquitto.conf" >"$RUN/mosquitto.log" 2>&1 &
  broker=$!
  export MQTT_BROKER=127.0.0.1 MQTT_PORT=$port
  echo "make run: started a private mosquitto on 127.0.0.1:$port (embedded default)"
fi

n=$($PY -m routemq plan --json 2>/dev/null | $PY -c 'import json,sys; print(len(json.load(sys.stdin)["instances"]))')
echo "make run: example application $ROUTEMQ_APP_ROOT, $n workers; try:"
echo "  mosquitto_pub -h ${MQTT_BROKER} -p ${MQTT_PORT:-1883} -t sensors/42/data -m '{\"value\": 21.5}' -q 1"
for i in $(seq 1 "$n"); do
  $PY -m routemq worker --instance "$i" &
  pids+=($!)
done
wait -n "${pids[@]}" || true
