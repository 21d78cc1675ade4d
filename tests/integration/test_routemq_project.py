"""The project RouteMQ 0.25's `routemq new` generates runs unchanged under our `routemq run`.

The generator is RouteMQ 0.25 itself, from PyPI, in .venvs/routemq-0.25 (scripts/test-setup.sh;
requirements/routemq-0.25.txt says why it has a venv of its own): the project is whatever it
writes today, never a hand-written copy. Nothing in it is edited: its controller extends
routemq.controller.Controller, its middleware reads `context['client']._client_id`, and its
settings are in its .env (MQTT_BROKER=localhost, MQTT_PORT=1883, ...), which the real
environment overrides here to reach the test broker.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import wait_until
from tests.integration.broker import Mosquitto
from tests.integration.workers import ROOT, Run

ROUTEMQ_025 = ROOT / ".venvs" / "routemq-0.25" / "bin" / "routemq"


def routemq_new(directory: Path, name: str) -> Path:
    """`routemq new <name>` of RouteMQ 0.25 in `directory`; the project's path."""
    assert ROUTEMQ_025.exists(), f"{ROUTEMQ_025} missing: run scripts/test-setup.sh"
    # Without PYTHONPATH: this checkout's `routemq` must not shadow RouteMQ's own here.
    env = {k: v for k, v in os.environ.items()
           if k != "PYTHONPATH" and not k.startswith(("MQTT_", "ROUTEMQ_"))}
    done = subprocess.run([str(ROUTEMQ_025), "new", name, "--yes", "--no-input"], cwd=directory,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return directory / name


class ProjectRun(Run):
    """`routemq run` as a RouteMQ user starts it: from the project's directory, with no
    application root, group name or log level given (they come from the cwd and the .env)."""

    def __init__(self, broker: Mosquitto, directory: Path, project: Path) -> None:
        super().__init__(broker, directory, 1, app=project)
        self.project = project

    def env(self, instance: int, **extra: str) -> dict[str, str]:
        env = super().env(instance, **extra)
        for name in ("ROUTEMQ_APP_ROOT", "MQTT_GROUP_NAME", "LOG_LEVEL"):
            del env[name]
        return env

    def routemq_here(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "routemq", *args], env=self.env(0),
                              cwd=self.project, capture_output=True, text=True, timeout=60)

    def start_here(self) -> "ProjectRun":
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "routemq", "run"],
                                         env=self.env(0, TEST_WORKER=""), cwd=self.project,
                                         stdout=out, stderr=subprocess.STDOUT)
        return self


def test_routemq_new_project_handles_a_qos1_message_under_routemq_run(broker, publisher,
                                                                      tmp_path):
    project = routemq_new(tmp_path, "demo")
    controller = (project / "app" / "controllers" / "example_controller.py").read_text()
    assert "from routemq.controller import Controller" in controller
    assert "MQTT_BROKER=localhost" in (project / ".env").read_text()

    run = ProjectRun(broker, tmp_path / "run", project)
    try:
        config = run.routemq_here("config", "--json")
        assert config.returncode == 0, config.stderr
        settings = json.loads(config.stdout)
        # The .env is read, below the real environment (which names the test broker).
        assert settings["mqtt_group_name"] == {
            "value": "routemq_group",
            "source": f"env file {project / '.env'} line 6 (MQTT_GROUP_NAME)"}
        assert settings["mqtt_port"] == {"value": broker.port,
                                         "source": "environment MQTT_PORT"}

        run.start_here()
        run.wait_settled([1])
        publisher(broker.host, broker.port).send("devices/message/dev42", '{"t": 21}', qos=1)
        # The generated controller prints, the generated middleware logs the paho client id.
        handled = "Received message for device dev42\nPayload: {'t': 21}"
        wait_until(lambda: handled in run.output(), 30, "the generated handler ran",
                   abort=run.running(), explain=lambda: run.output()[-4000:])
        incoming = [r["message"] for r in map(json.loads, re.findall(r"^\{.*\}$", run.output(),
                                                                      re.M))
                    if r.get("logger") == "routemq.middleware"]
        assert re.fullmatch(r"\[INCOMING\] Topic: devices/message/dev42, "
                            rf"Client: b't{broker.port}-.+-1'", incoming[0]), incoming
        assert incoming[1].startswith("[COMPLETED] Topic: devices/message/dev42"), incoming
        wait_until(lambda: run.healths().get(1, {}).get("processed") == 1, 10,
                   "the worker counted the message handled", explain=lambda: str(run.healths()))
        assert run.stop_run() == 0
        assert "worker 1 stopped: processed 1, errors 0" in run.output()
    finally:
        run.cleanup()
