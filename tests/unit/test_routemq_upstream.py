"""RouteMQ 0.25's own router, middleware and controller unit tests, run against our package.

scripts/test-setup.sh copies them unchanged from RouteMQ's sdist into
.venvs/routemq-0.25/upstream-tests (a directory with no `routemq` package of its own); here
they run in a pytest of their own whose only `routemq` is ours (PYTHONPATH = this checkout).
"""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = ROOT / ".venvs" / "routemq-0.25" / "upstream-tests"
FILES = ("test_router.py", "test_middleware.py", "test_controller.py")


def test_routemq_025_router_middleware_controller_tests_pass_on_our_package(tmp_path):
    missing = [name for name in FILES if not (UPSTREAM / name).is_file()]
    assert not missing, f"{missing} not in {UPSTREAM}: run scripts/test-setup.sh"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        # -c: RouteMQ's tests under pytest's defaults, not this checkout's pytest.ini.
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", os.devnull,
         "--rootdir", str(tmp_path), *(str(UPSTREAM / name) for name in FILES)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    # Which routemq they imported: ours, not RouteMQ's.
    probe = subprocess.run([sys.executable, "-c", "import routemq; print(routemq.__file__)"],
                           cwd=UPSTREAM, env=env, capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == str(ROOT / "routemq" / "__init__.py")
    assert "17 passed" in done.stdout.splitlines()[-1], done.stdout[-2000:]
