#!/usr/bin/env bash
# Run the whole test suite in both Python environments, then the system stage.
#   deb : /usr/bin/python3 with Debian 12's packages (paho-mqtt 1.6.1, python-json-logger 2.0)
#   pypi: .venvs/pypi with the pinned PyPI versions (paho-mqtt 2.x, python-json-logger 3.x)
# Prints one closing line "N passed, N failed" summed over every stage.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
out=$(mktemp -d)
rc=0
stage() {  # stage NAME PYTHON ARGS...
  local name=$1 py=$2; shift 2
  echo "=== stage $name ($("$py" -c 'import sys, paho.mqtt as m; print(sys.version.split()[0], "paho", getattr(m, "__version__", "?"))'))"
  "$py" -m pytest -p no:cacheprovider --junitxml="$out/$name.xml" "$@" || rc=1
}
stage deb /usr/bin/python3 tests/unit tests/integration "$@"
stage pypi .venvs/pypi/bin/python tests/unit tests/integration "$@"
if [ -n "$(ls tests/system/test_*.py 2>/dev/null)" ]; then
  stage system .venvs/pypi/bin/python tests/system "$@"
fi
/usr/bin/python3 - "$out" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
p = f = s = 0
for x in glob.glob(sys.argv[1] + "/*.xml"):
    for suite in ET.parse(x).getroot().iter("testsuite"):
        t, e, fl, sk = (int(suite.get(k, 0)) for k in ("tests", "errors", "failures", "skipped"))
        p += t - e - fl - sk; f += e + fl; s += sk
print(f"{p} passed, {f} failed, {s} skipped")
PY
rm -rf "$out"
exit $rc
