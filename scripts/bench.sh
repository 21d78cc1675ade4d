#!/usr/bin/env bash
# `make bench`: install what the benchmarks need, then run them (see bench/run.py).
#   ./scripts/bench.sh [--profile] [bench.run options, e.g. --messages 20000 --repeats 1
#                                   --kinds routemq,paho]
# Runs with the "pypi" environment (paho-mqtt 2.1, as Debian 13 ships); BENCH_PYTHON picks
# another interpreter (e.g. /usr/bin/python3 for Debian 12's paho 1.6.1).
# .venvs/bench (requirements/bench.txt: FastStream 0.7.8 MQTT for the "faststream" kind, and
# py-spy) is a venv of its own so the test suite's .venvs/pypi never sees FastStream.
# --profile profiles one worker with py-spy (bench/profile.py).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/test-setup.sh
PY=${BENCH_PYTHON:-.venvs/pypi/bin/python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1

BENCH_VENV=.venvs/bench
stamp="$BENCH_VENV/.requirements.sha"
want=$(sha256sum requirements/bench.txt | cut -d' ' -f1)
if [ ! -x "$BENCH_VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bench: venv $BENCH_VENV from requirements/bench.txt"
  rm -rf "$BENCH_VENV"
  python3 -m venv "$BENCH_VENV"
  # A failed install is not fatal: the "faststream" runs then report it in their cells and
  # the other kinds still run. No stamp, so the next run tries again.
  if "$BENCH_VENV/bin/pip" install -q -r requirements/bench.txt; then
    echo "$want" > "$stamp"
  else
    echo "bench: installing requirements/bench.txt failed; FastStream runs will fail" >&2
  fi
fi

if [ "${1:-}" = "--profile" ]; then
  shift
  "$PY" -m bench.profile "$@"
  exit
fi
start=$(date +%s)
"$PY" -m bench.run "$@"
echo "bench: $(( $(date +%s) - start )) s wall"
