"""Shared test configuration: the repository root is importable as `routemq`."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# Daemons started by the tests keep handlers' files in a directory of the test run, not in
# /var/lib/routemq or ~/.local/state/routemq: $STATE_DIRECTORY is what systemd would set.
if "STATE_DIRECTORY" not in os.environ:
    import tempfile

    os.environ["STATE_DIRECTORY"] = tempfile.mkdtemp(prefix="routemq-test-state-")
