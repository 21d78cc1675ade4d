"""Bad configuration and bad applications, as the real commands meet them: `routemq worker`,
`master`, `run` and `check` end with ONE line on stderr naming the key or file and the reason,
and exit status 2 (RestartPreventExitStatus=2 in the units), never a traceback or exit 0.

No broker is needed: each case must fail before the first connection. A regression that let
one through would connect to nothing and retry for ever; the command's timeout catches it.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASIC = ROOT / "tests" / "integration" / "apps" / "basic"  # routes work/{id} etc., QoS 1
DAEMONS = [["worker", "--instance", "1"], ["master"], ["run", "--workers", "1"]]


def routemq(args: list[str], tmp_path: Path, app_root: Path = BASIC,
            **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m routemq ARGS` with no /etc/routemq, a private runtime directory, and a
    broker address that refuses connections (127.0.0.1:9, discard) if one were ever tried."""
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(("MQTT_", "ROUTEMQ_", "WORKER_", "LOG_"))}
    full.update({"PYTHONPATH": str(ROOT), "ROUTEMQ_CONFIG": os.devnull,
                 "ROUTEMQ_CONFIG_DIR": str(tmp_path / "conf.d"),
                 "ROUTEMQ_APP_ROOT": str(app_root), "ROUTEMQ_RUNTIME_DIR": str(tmp_path / "run"),
                 "MQTT_BROKER": "127.0.0.1", "MQTT_PORT": "9", "ROUTEMQ_LOG_FORMAT": "json",
                 **env})
    return subprocess.run([sys.executable, "-m", "routemq", *args], capture_output=True,
                          text=True, env=full, cwd=tmp_path, timeout=60)


def assert_one_line_exit_2(r: subprocess.CompletedProcess[str], *expected: str) -> str:
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert "Traceback" not in r.stdout + r.stderr
    assert len(lines) == 1, r.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("env, expected", [
    ({"ROUTEMQ_HEALTH_INTERVAL": "1e-6"},
     ['health_interval = "1e-6" in environment ROUTEMQ_HEALTH_INTERVAL', "between 0.1 and 60"]),
    ({"MQTT_BROKER": "broker.example:1883"},
     ['mqtt_broker = "broker.example:1883"', "without a port: use mqtt_port"]),
    ({"ROUTEMQ_DRAIN_TIMEOUT": "1e300"}, ["drain_timeout", "between 0 and 3600"]),
    ({"MAX_WORKERS": "100"}, ["max_workers", "between 1 and 64"]),
])
@pytest.mark.parametrize("daemon", DAEMONS, ids=lambda a: a[0])
def test_bad_values_are_refused_by_every_daemon(tmp_path, daemon, env, expected):
    assert_one_line_exit_2(routemq(daemon, tmp_path, **env), "routemq: config error: ", *expected)


def test_unreadable_tls_and_password_files(tmp_path):
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    r = routemq(["worker", "--instance", "1"], tmp_path, ROUTEMQ_TLS_CA_FILE=str(garbage))
    assert_one_line_exit_2(r, f'tls_ca_file = "{garbage}"', "no PEM CA certificate in it")
    r = routemq(["worker", "--instance", "1"], tmp_path,
                ROUTEMQ_TLS_CERT_FILE=str(tmp_path / "missing.pem"))
    assert_one_line_exit_2(r, "tls_cert_file", "cannot read: No such file or directory")
    r = routemq(["master"], tmp_path, MQTT_PASSWORD_FILE=str(tmp_path))
    assert_one_line_exit_2(r, "mqtt_password_file", "cannot read: Is a directory")


@pytest.mark.parametrize("daemon", DAEMONS, ids=lambda a: a[0])
def test_unusable_runtime_dir(tmp_path, daemon):
    taken = tmp_path / "taken"
    taken.write_text("")
    r = routemq(daemon, tmp_path, ROUTEMQ_RUNTIME_DIR=str(taken))
    assert_one_line_exit_2(r, f'runtime_dir = "{taken}" in environment ROUTEMQ_RUNTIME_DIR',
                    "exists and is not a directory")
    r = routemq(daemon, tmp_path, ROUTEMQ_RUNTIME_DIR=str(taken / "run"))
    assert_one_line_exit_2(r, "runtime_dir", "cannot create it: Not a directory")


def test_router_module_calling_sys_exit_is_exit_2_naming_it(tmp_path):
    """It made the worker exit 0 silently: systemd did not restart it and nothing said why."""
    routers = tmp_path / "app" / "app" / "routers"
    routers.mkdir(parents=True)
    (tmp_path / "app" / "app" / "__init__.py").write_text("")
    (routers / "__init__.py").write_text("")
    (routers / "quits.py").write_text("import sys\nsys.exit(0)\n")
    r = routemq(["worker", "--instance", "1"], tmp_path, tmp_path / "app")
    assert_one_line_exit_2(r, "routemq: application error: ", f"{routers / 'quits.py'}:2",
                    "called sys.exit(0)")


@pytest.mark.parametrize("daemon", DAEMONS, ids=lambda a: a[0])
def test_application_checks_refuse_every_daemon(tmp_path, daemon):
    r = routemq(daemon, tmp_path, ROUTEMQ_SESSION_EXPIRY="0")
    assert_one_line_exit_2(r, "session_expiry = 0 in environment ROUTEMQ_SESSION_EXPIRY",
                    "at every restart", "qos=1")
    r = routemq(daemon, tmp_path, ROUTEMQ_DEAD_LETTER_TOPIC="work/dead")
    assert_one_line_exit_2(r, 'dead_letter_topic = "work/dead"', "route 'work/{id}'",
                    "round and round")


def test_instance_beyond_the_maximum(tmp_path):
    r = routemq(["worker", "--instance", "65"], tmp_path)
    assert_one_line_exit_2(r, "argument --instance: must be between 1 and 64")


def test_check_reports_every_problem_and_exits_2(tmp_path):
    r = routemq(["check"], tmp_path, ROUTEMQ_SESSION_EXPIRY="0",
                ROUTEMQ_DEAD_LETTER_TOPIC="work/dead", ROUTEMQ_DRAIN_TIMEOUT="40")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"application {BASIC}, python ")
    assert lines[1].split() == ["PATTERN", "FILTER", "SUBSCRIPTION", "QOS", "SHARED", "WORKERS",
                                "HANDLER"]
    verdicts = [line.split(":")[0] for line in lines if line.startswith(("error", "warning",
                                                                          "failed", "ok"))]
    assert verdicts == ["error", "error", "warning", "failed"]
    # Counts of the basic application, which other tests may extend.
    assert re.fullmatch(r"failed: \d+ routes \(\d+ shared\), plan for \d+ instances, "
                        r"2 errors, 1 warning", lines[-1]), lines[-1]
    doc = json.loads(routemq(["check", "--json"], tmp_path, ROUTEMQ_SESSION_EXPIRY="0").stdout)
    assert doc["ok"] is False and len(doc["errors"]) == 1 and len(doc["routes"]) > 1


def test_check_passes_what_a_worker_would_run(tmp_path):
    r = routemq(["check"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    line = r.stdout.splitlines()[-1]
    assert "work/{id}" in r.stdout  # the routes, as `routemq routes` shows them
    assert re.fullmatch(r"ok: \d+ routes \(\d+ shared\), plan for \d+ instances, "
                        r"0 errors, 0 warnings", line), line
    # Fewer instances than a route wants: the plan's warning, and still ok.
    r = routemq(["check", "--workers", "2"], tmp_path)
    assert r.returncode == 0 and "but only 2 instances exist" in r.stdout
    assert re.search(r"^ok: .*plan for 2 instances, 0 errors, [1-9]\d* warnings?$", r.stdout,
                     re.M), r.stdout
    assert not (tmp_path / "run").exists()  # check creates nothing
    doc = json.loads(routemq(["check", "--json"], tmp_path).stdout)
    assert doc["ok"] is True and doc["errors"] == doc["warnings"] == []
    assert len(doc["plan"]["instances"]) == doc["instances"] > 1


def test_check_json_on_a_bad_value_is_still_json(tmp_path):
    r = routemq(["check", "--json"], tmp_path, ROUTEMQ_HEALTH_INTERVAL="0")
    assert r.returncode == 2
    assert json.loads(r.stdout) == {"ok": False, "warnings": [], "errors": [
        'health_interval = "0" in environment ROUTEMQ_HEALTH_INTERVAL: must be a finite '
        "number between 0.1 and 60"]}
