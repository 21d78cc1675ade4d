"""An application with its own dependencies, in a venv as the README makes it
(`python3 -m venv --system-site-packages`), found as <app_root>/.venv or named by `venv`.

Debian's /usr/bin/python3 makes the venv and runs routemq (as the units do), whichever
interpreter runs pytest: a venv belongs to the Python that made it. The dependency is a module
placed in the venv's site-packages only (the system stage installs a real wheel with pip).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers import exited, wait_until
from tests.integration.broker import Mosquitto, publish_each
from tests.integration.test_config_errors import assert_one_line_exit_2

ROOT = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"
ROUTER = """\
import json, os, sys
import tinydep  # installed in the venv only

from routemq.router import Router

router = Router()


@router.on("orders/{id}", qos=1)
def order(id, payload, client):
    with open(os.environ["TEST_OUT"], "a") as out:
        out.write(json.dumps({"id": id, "doubled": tinydep.double(payload["n"]),
                              "prefix": sys.prefix,
                              "state": os.environ.get("STATE_DIRECTORY")}) + "\\n")
"""


def site_packages(venv: Path) -> Path:
    out = subprocess.run([str(venv / "bin" / "python"), "-c",
                          "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def make_venv(path: Path, *flags: str) -> Path:
    subprocess.run([PYTHON, "-m", "venv", "--without-pip", *flags, str(path)], check=True)
    return path


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """An application root whose router imports `tinydep`, with a working .venv holding it."""
    root = tmp_path / "app-root"
    (root / "app" / "routers").mkdir(parents=True)
    for init in ("app/__init__.py", "app/routers/__init__.py"):
        (root / init).write_text("")
    (root / "app" / "routers" / "orders.py").write_text(ROUTER)
    venv = make_venv(root / ".venv", "--system-site-packages")
    (site_packages(venv) / "tinydep.py").write_text("def double(n):\n    return 2 * n\n")
    return root


def routemq(app: Path, *args: str, module: bool = True, **env: str) -> subprocess.Popen[str]:
    """`python3 -m routemq ARGS` in the application root (`python3 ARGS` if not module)."""
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(("MQTT_", "ROUTEMQ_", "WORKER_", "LOG_"))}
    full.update({"PYTHONPATH": str(ROOT), "ROUTEMQ_CONFIG": os.devnull,
                 "ROUTEMQ_CONFIG_DIR": str(app.parent / "conf.d"),
                 "ROUTEMQ_RUNTIME_DIR": str(app.parent / "run"), "MQTT_BROKER": "127.0.0.1",
                 "MQTT_PORT": "9", "TEST_OUT": str(app.parent / "out.jsonl"), **env})
    return subprocess.Popen([PYTHON, *(["-m", "routemq"] if module else []), *args], cwd=app, env=full, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def running(health: Path) -> bool:
    try:
        return json.loads(health.read_text()).get("state") == "running"
    except (OSError, ValueError):
        return False


def finished(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_check_loads_the_application_under_its_venv(app: Path) -> None:
    r = finished(routemq(app, "check"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"(venv {app / '.venv'})" in r.stdout
    assert "orders/{id}" in r.stdout and r.stdout.splitlines()[-1].startswith("ok: 1 route ")


def test_without_the_venv_check_names_the_import_and_its_line(app: Path) -> None:
    (app / ".venv").rename(app / "elsewhere")
    r = finished(routemq(app, "check"))
    assert r.returncode == 2
    assert "No module named 'tinydep'" in r.stdout and "orders.py:2)" in r.stdout, r.stdout


def test_a_worker_under_run_handles_messages_with_the_venv_dependency(
        app: Path, broker: Mosquitto) -> None:
    proc = routemq(app, "run", "--workers", "1", MQTT_PORT=str(broker.port),
                   ROUTEMQ_CLIENT_ID_PREFIX=f"venv{broker.port}")
    out = app.parent / "out.jsonl"
    try:
        wait_until(lambda: running(app.parent / "run" / "workers" / "1.json"), 30,
                   "worker 1 running", abort=exited(proc, "routemq run", lambda: ""))
        publish_each(broker, [("orders/7", json.dumps({"n": 21}), 1)])
        wait_until(lambda: out.exists() and out.read_text().strip(), 30, "the handler's record",
                   abort=exited(proc, "routemq run", lambda: ""))
    finally:
        proc.send_signal(signal.SIGTERM)
        r = finished(proc)
    record = json.loads(out.read_text().splitlines()[0])
    assert record["doubled"] == 42 and record["id"] == "7"
    assert os.path.realpath(record["prefix"]) == os.path.realpath(app / ".venv")
    assert record["state"] == os.environ["STATE_DIRECTORY"]  # what systemd would set
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("daemon", [["worker", "--instance", "1"], ["run"], ["check"]],
                         ids=lambda a: a[0])
def test_a_venv_that_cannot_work_is_one_line_and_exit_2(app: Path, tmp_path: Path,
                                                        daemon: list[str]) -> None:
    r = finished(routemq(app, *daemon, ROUTEMQ_VENV=str(tmp_path / "nowhere")))
    assert_one_line_exit_2(r, f"venv {tmp_path / 'nowhere'}", "no such directory")
    make_venv(tmp_path / "isolated")  # no --system-site-packages: no paho
    r = finished(routemq(app, *daemon, ROUTEMQ_VENV=str(tmp_path / "isolated")))
    assert_one_line_exit_2(r, "made without --system-site-packages")


def test_a_venv_whose_own_routemq_hides_ours_is_refused(app: Path) -> None:
    """`pip install routemq` in the venv installs another project of that name (RouteMQ on
    PyPI): the venv's interpreter must not run it in place of the package that is installed."""
    other = site_packages(app / ".venv") / "routemq"
    other.mkdir()
    (other / "__init__.py").write_text("")
    (other / "cli.py").write_text("def main():\n    return 0\n")
    # Our routemq on the parent's sys.path only (as Debian's dist-packages is for /usr/bin/
    # routemq), not on PYTHONPATH, which would put it ahead of the venv's in the child too.
    launch = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from routemq.cli import main; " \
             "sys.exit(main())"
    r = finished(routemq(app, "-c", launch, "worker", "--instance", "1", PYTHONPATH="",
                         module=False))
    assert_one_line_exit_2(r, "its own package 'routemq'", "hides the installed")

