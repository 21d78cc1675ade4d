#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine (run as root).
#   - Debian packages: the broker, openssl (test CA) and Debian 12's own Python stack
#     (python3-paho-mqtt 1.6.1 ...), which is test environment "deb".
#   - A venv with the pinned PyPI versions (paho-mqtt 2.x ...): test environment "pypi".
# Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(mosquitto mosquitto-clients openssl iproute2 procps
          python3 python3-venv python3-pytest python3-hypothesis
          python3-paho-mqtt python3-sdnotify python3-pythonjsonlogger python3-configargparse
          # make deb and the system stage (booted Debian 12/13 under systemd-nspawn):
          debhelper dh-python python3-all python3-setuptools lintian fakeroot
          mmdebstrap systemd-container util-linux)

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "test-setup: apt-get install ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
fi

VENV=.venvs/pypi
PY=$(command -v python3.11 || command -v python3)
stamp="$VENV/.requirements.sha"
want=$(sha256sum requirements/pypi.txt | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "test-setup: venv $VENV from $PY"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q -r requirements/pypi.txt
  echo "$want" > "$stamp"
fi

# RouteMQ 0.25 (PyPI), for the compatibility tests only; see requirements/routemq-0.25.txt
# for why it has a venv of its own and --ignore-requires-python. Its unit tests come from
# its sdist: three files copied flat, so their directory holds no `routemq` package.
RMQ=.venvs/routemq-0.25
RMQ_SDIST=routemq-0.25.0
stamp="$RMQ/.requirements.sha"
want=$(sha256sum requirements/routemq-0.25.txt | cut -d' ' -f1)
if [ ! -x "$RMQ/bin/routemq" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "test-setup: venv $RMQ (RouteMQ 0.25 for the compatibility tests)"
  rm -rf "$RMQ"
  "$PY" -m venv "$RMQ"
  "$RMQ/bin/pip" install -q --ignore-requires-python -r requirements/routemq-0.25.txt
  "$RMQ/bin/pip" download -q --no-deps --no-binary :all: --ignore-requires-python \
    "routemq==${RMQ_SDIST#routemq-}" -d "$RMQ/sdist"
  mkdir -p "$RMQ/upstream-tests"
  tar -xzf "$RMQ/sdist/$RMQ_SDIST.tar.gz" -C "$RMQ/upstream-tests" --strip-components=3 \
    "$RMQ_SDIST/tests/unit/test_router.py" "$RMQ_SDIST/tests/unit/test_middleware.py" \
    "$RMQ_SDIST/tests/unit/test_controller.py"
  echo "$want" > "$stamp"
fi
echo "test-setup: ready"
