#!/usr/bin/env bash
# `make bench`: install what the benchmarks need, then run them (see bench/run.py).
#   ./scripts/bench.sh [--profile] [bench.run options, e.g. --messages 20000 --repeats 1]
# Runs with the "pypi" environment (paho-mqtt 2.1, as Debian 13 ships); BENCH_PYTHON picks
# another interpreter (e.g. /usr/bin/python3 for Debian 12's paho 1.6.1).
# --profile also installs py-spy into .venvs/bench and profiles one worker (bench/profile.py).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/test-setup.sh
PY=${BENCH_PYTHON:-.venvs/pypi/bin/python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
if [ "${1:-}" = "--profile" ]; then
  shift
  if [ ! -x .venvs/bench/bin/py-spy ]; then
    python3 -m venv .venvs/bench
    .venvs/bench/bin/pip install -q py-spy
  fi
  "$PY" -m bench.profile "$@"
  exit
fi
start=$(date +%s)
"$PY" -m bench.run "$@"
echo "bench: $(( $(date +%s) - start )) s wall"
