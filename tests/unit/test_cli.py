"""The `routemq` command against the example application (subprocess, as users run it)."""
import json
import os
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "iot")
# Keep the machine's own /etc/routemq out of these tests.
ISOLATED = tempfile.mkdtemp(prefix="routemq-cli-")
open(os.path.join(ISOLATED, "empty.conf"), "w").close()


def routemq(*args, env=None, cwd=None):
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("MQTT_", "ROUTEMQ_", "WORKER_", "LOG_"))}
    full_env.update(PYTHONPATH=ROOT, ROUTEMQ_CONFIG=os.path.join(ISOLATED, "empty.conf"),
                    ROUTEMQ_CONFIG_DIR=ISOLATED, **(env or {}))
    return subprocess.run([sys.executable, "-m", "routemq", *args], capture_output=True,
                          text=True, env=full_env, cwd=cwd or ROOT, timeout=60)


def test_routes_json_against_example_app():
    r = routemq("routes", "--json", "--app-root", EXAMPLE,
                env={"MQTT_GROUP_NAME": "production_workers"})
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # stdout is pure JSON: logs go to stderr
    by_topic = {x["topic"]: x for x in doc["routes"]}
    sensors = by_topic["sensors/{device_id}/data"]
    assert sensors["subscription"] == "$share/production_workers/sensors/+/data"
    assert (sensors["qos"], sensors["shared"], sensors["worker_count"]) == (1, True, 3)
    assert sensors["handler"].endswith("SensorController.process_data")
    commands = by_topic["devices/{device_id}/commands"]
    assert commands["subscription"] == "devices/+/commands" and not commands["shared"]


def test_routes_table():
    r = routemq("routes", "--app-root", EXAMPLE)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split() == [
        "PATTERN", "FILTER", "SUBSCRIPTION", "QOS", "SHARED", "WORKERS", "HANDLER"]
    assert "$share/routemq/telemetry/bulk" in r.stdout


def test_config_json_shows_sources_and_redacts_secrets(tmp_path):
    conf = tmp_path / "routemq.conf"
    conf.write_text("mqtt_broker = broker.example\nmqtt_port = 8883\n")
    r = routemq("config", "--json", "--config", str(conf), "--keepalive", "45",
                env={"MQTT_PASSWORD": "s3cret-value", "MQTT_PORT": "1884"})
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["mqtt_broker"] == {"value": "broker.example", "source": f"config file {conf}"}
    assert doc["mqtt_port"] == {"value": 1884, "source": "environment MQTT_PORT"}
    assert doc["keepalive"] == {"value": 45, "source": "command line"}
    assert doc["mqtt_password"]["value"] == "********"
    assert "s3cret-value" not in r.stdout + r.stderr


def test_bad_config_value_is_one_line_and_exit_2(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("mqtt_port = abc\n")
    r = routemq("routes", "--config", str(conf), "--app-root", EXAMPLE)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f'routemq: config error: mqtt_port = "abc" in {conf}: not an integer']


def test_unknown_key_names_key_and_file(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("# comment\nmqtt_brokr = x\n")
    r = routemq("config", "--config", str(conf))
    assert r.returncode == 2
    assert "mqtt_brokr" in r.stderr and str(conf) in r.stderr and "unknown key" in r.stderr


def test_missing_application_is_exit_2(tmp_path):
    r = routemq("routes", "--app-root", str(tmp_path))
    assert r.returncode == 2
    assert "router package 'app.routers' not found under" in r.stderr


def test_plan_json_covers_every_instance():
    r = routemq("plan", "--json", "--workers", "4", "--app-root", EXAMPLE)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert sorted(doc["instances"]) == ["1", "2", "3", "4"]
    assert len(doc["routes"]["shared:sensors/{device_id}/data"]) == 3


def test_unknown_command():
    r = routemq("frobnicate")
    assert r.returncode == 2 and "unknown command 'frobnicate'" in r.stderr


@pytest.mark.parametrize("args", [[], ["--help"]])
def test_help(args):
    r = routemq(*args)
    assert r.returncode == 0 and "routemq worker --instance N" in r.stdout


def test_help_lists_check_and_drain():
    assert "routemq check" in routemq("--help").stdout
    r = routemq("worker", "--help")
    assert r.returncode == 0 and "--drain" in r.stdout and "1..64" in r.stdout


def test_runtime_dir_is_made_0755_whatever_the_umask(tmp_path):
    from routemq.cli import runtime_dir_problem

    path = tmp_path / "a" / "run"
    old = os.umask(0)  # world-writable otherwise, and workers would trust any plan in it
    try:
        assert runtime_dir_problem(str(path), create=False) is None and not path.exists()
        assert runtime_dir_problem(str(path)) is None
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777) == (0o755, 0o755)
    path.chmod(0o700)  # an existing directory keeps the mode its owner gave it
    assert runtime_dir_problem(str(path)) is None and path.stat().st_mode & 0o777 == 0o700
    assert list(path.iterdir()) == []  # the write probe leaves nothing behind


def test_runtime_dir_problems(tmp_path):
    from routemq.cli import runtime_dir_problem

    taken = tmp_path / "file"
    taken.write_text("")
    assert runtime_dir_problem(str(taken), create=False) == "exists and is not a directory"
    assert runtime_dir_problem(str(taken / "run")) == "cannot create it: Not a directory"
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "nowhere")
    assert runtime_dir_problem(str(link)) == "exists and is not a directory"


# Modules that stand for a command, and what each must not load: only `routemq worker` (and
# the drainer it runs) needs the MQTT client, the dispatcher and worker.py.
PAHO = ("paho", "routemq.mqtt", "routemq.worker")
LEAN_COMMANDS = {
    "routemq.cli": PAHO,  # status, metrics, plan, check, routes, config
    "routemq.fleet": PAHO,
    "routemq.status_text": PAHO,
    "routemq.prometheus": PAHO,
    "routemq.master": PAHO,  # it starts drainers as processes, it does not drain
    "routemq.run": PAHO,
    "routemq.application": ("routemq.worker",),
}


@pytest.mark.parametrize("module, banned", sorted(LEAN_COMMANDS.items()))
def test_commands_import_only_what_they_use(module, banned):
    """`routemq status` runs as root on a loaded host; the master and `run` only start
    workers as processes: none of them imports worker.py."""
    code = (f"import json, sys, {module}\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {banned!r} "
            f"or m in {banned!r})))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": ROOT}, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []


def test_dead_letters_lists_replays_dry_and_refuses_bad_input(tmp_path):
    from routemq.deadletters import Spool
    from routemq.dispatcher import dead_letter_record
    from routemq.router import Router

    router = Router()
    router.on("orders/{id}", lambda **kw: None, qos=1)

    class Delivery:
        topic, payload, qos = "orders/7", b'{"seq": 7}', 1
    Spool(tmp_path / "dead-letters").append(
        dict(dead_letter_record(router.routes[0], Delivery, "RuntimeError: boom"), attempts=1))
    env = {"ROUTEMQ_STATE_DIR": str(tmp_path)}
    listed = routemq("dead-letters", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)["letters"]
    assert (row["topic"], row["route"], row["error"], row["attempts"], row["preview"]) == \
        ("orders/7", "orders/{id}", "RuntimeError: boom", 1, '{"seq": 7}')
    table = routemq("dead-letters", "--route", "orders/*", env=env)
    assert "orders/7" in table.stdout and "1 dead letter in" in table.stdout
    assert "no dead letters" in routemq("dead-letters", "--route", "x", env=env).stdout
    dry = routemq("dead-letters", "replay", "--dry-run", env=env)
    assert dry.returncode == 0 and "would republish orders/7" in dry.stdout
    unreachable = routemq("dead-letters", "replay", env={**env, "MQTT_PORT": "1"})
    assert unreachable.returncode == 1
    assert len(unreachable.stderr.strip().splitlines()) == 1
    assert "connection refused" in unreachable.stderr
    assert len(Spool(tmp_path / "dead-letters").letters().letters) == 1  # nothing removed
    bad = routemq("dead-letters", "replay", "--limit", "0", env=env)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
