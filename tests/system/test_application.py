"""An application as teams ship them, under the booted systemd (trixie and bookworm): its
own dependency in a venv (a wheel built here, installed with pip --no-index), handler code
that uses SQLite, temporary files, subprocesses, process pools, sockets, ctypes and os.nice
under the shipped hardening, a new version reloaded during a QoS 1 stream and a broken one
refused, a venv that cannot work failing once without a restart loop, a message that kills
its worker spooled after two deaths (and the restarts stopping), a stop of the target
that waits for the workers, and a project made by RouteMQ 0.25's `routemq new` as it is.

The tests run in file order on one machine per suite, as an operator's session would.
"""
from __future__ import annotations

from pathlib import Path

import json
import threading

import pytest

from build_wheel import build_wheel
from machine import Machine
from tests.integration.test_routemq_project import routemq_new
from system_helpers import DEB_IN_MACHINE, Journal, health_writes, publish, show, status, \
    unit_state, wait_until

HERE = Path(__file__).resolve().parent
APP = HERE / "venvapp" / "app"
WORKERS = [f"routemq-worker@{i}.service" for i in range(1, 5)]
UNITS = ["routemq-master.service", *WORKERS]
VENV = "/srv/routemq/.venv"
CONF_D = "/etc/routemq/conf.d"
ROUTES = "/srv/routemq/app/routers/ordinary.py"
V2_ADDS = """

async def added(n, payload, client):
    log.info("added route handled", extra={"n": n, "version": VERSION})


router.on("added/{n}", added, qos=1)
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(HERE / "tinydep", tmp_path_factory.mktemp("wheel"))


def test_install_the_package_and_the_applications_venv(machine: Machine, wheel: Path) -> None:
    """The README's recipe: apt install, the application in /srv/routemq, its venv with
    Debian's packages visible, its requirements installed with pip."""
    m = machine
    m.run("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q",
          "--no-install-recommends", DEB_IN_MACHINE, timeout=300)
    m.put(APP, "/srv/routemq/app")
    m.write(f"{CONF_D}/10-test.conf", "mqtt_broker = 127.0.0.1\n")
    m.put(wheel, f"/root/{wheel.name}")
    # Without the venv the application cannot be imported: check says where and exits 2.
    no_venv = m.sh("cd /srv/routemq && routemq check", user="routemq", check=False)
    assert no_venv.returncode == 2 and "No module named 'tinydep'" in no_venv.stdout, no_venv
    m.run("python3", "-m", "venv", "--system-site-packages", VENV, timeout=180)
    installed = m.run(f"{VENV}/bin/pip", "install", "--no-index", f"/root/{wheel.name}")
    assert "Successfully installed tinydep-1.0" in installed.stdout, installed.stdout
    check = m.sh("cd /srv/routemq && routemq check", user="routemq", check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"python {VENV}/bin/python (venv {VENV})" in check.stdout, check.stdout
    assert check.stdout.splitlines()[-1].startswith("ok: 4 routes (2 shared), plan for 4 ")


def test_four_workers_handle_messages_with_the_venvs_package(machine: Machine) -> None:
    m = machine
    m.run("systemctl", "daemon-reload")  # the generator asks the application: 4 instances
    m.run("systemctl", "enable", "--now", "routemq.target", timeout=120)
    # The workers are ordered after the target (so that stopping it waits for them): the
    # target is reached first, and they become active once subscribed.
    wait_until(lambda: all(unit_state(m, u) == "active" for u in UNITS), 90,
               "master and workers active")
    publish(m, "venv/b1", 400)
    journal = Journal(m)
    got = journal.wait_processed("b1", range(1, 401), 90)
    assert sorted(got) == [1, 2, 3, 4], {w: len(s) for w, s in got.items()}
    records = [r for _, r in journal.records("-u", "routemq-worker@*")
               if r.get("message") == "processed" and r.get("batch") == "b1"]
    assert {r["prefix"] for r in records} == {VENV}
    assert all(r["doubled"] == 2 * r["seq"] for r in records)


def test_ordinary_handler_code_survives_the_hardening(machine: Machine) -> None:
    m = machine
    publish(m, "ordinary/1", 1)

    def checked() -> list[dict]:
        return [r for _, r in Journal(m).records("-u", "routemq-worker@*")
                if r.get("message") == "ordinary code checked"]
    [record] = wait_until(checked, 60, "the ordinary-code handler's record")
    assert record["results"] == {name: "ok" for name in record["results"]}, record["results"]
    assert len(record["results"]) == 9
    assert record["state_directory"] == "/var/lib/routemq"
    assert m.run("stat", "-c", "%U %a", "/var/lib/routemq", "/var/lib/routemq/app.db"
                 ).stdout.split() == ["routemq", "750", "routemq", "644"]
    assert all(show(m, u, "NRestarts")["NRestarts"] == "0" for u in UNITS)
    assert {u: unit_state(m, u) for u in UNITS} == {u: "active" for u in UNITS}
    # systemd's "Main process exited, code=killed, status=31/SYS" had a worker been killed.
    journal = m.run("journalctl", "--no-pager", "-o", "cat").stdout
    assert "status=31/SYS" not in journal and "SIGSYS" not in journal


def pids(m: Machine) -> dict[str, str]:
    return {u: show(m, u, "MainPID")["MainPID"] for u in WORKERS}


def reload_settled(m: Machine) -> dict | None:
    """The master's last reload, once it finished (no rolling restart in progress)."""
    master = status(m)["master"] or {}
    return master["reload"] if master.get("reload") and not master.get("rollout") else None


def test_reload_during_a_stream_loses_nothing_and_serves_the_new_route(
        machine: Machine) -> None:
    """`systemctl reload routemq.target` with a new version of the application while 2,000
    QoS 1 messages flow over a shared and a non-shared route."""
    m = machine
    before = pids(m)
    results: dict[str, dict] = {}

    def stream(topic: str) -> None:  # 1,000 messages over ~20 s, acknowledged by the broker
        results[topic] = publish(m, topic, 1000, rate=50)
    threads = [threading.Thread(target=stream, args=(t,)) for t in ("venv/r1", "single/r1")]
    for t in threads:
        t.start()
    journal = Journal(m)
    wait_until(lambda: len(journal.processed("r1")) >= 2, 30, "the stream started")
    v1 = m.run("cat", ROUTES).stdout
    m.write(ROUTES, v1.replace('VERSION = "v1"', 'VERSION = "v2"') + V2_ADDS)
    m.run("systemctl", "reload", "routemq.target")
    for t in threads:
        t.join(300)
    done = wait_until(lambda: reload_settled(m), 240, "the rolling restart",
                      explain=lambda: json.dumps(status(m)["master"]))
    assert done["ok"] is True, done
    assert sorted(results) == ["single/r1", "venv/r1"], results  # both streams finished
    for topic, got in results.items():
        assert got["sent"] == got["acked"] == 1000, (topic, got)
        assert got["reasons"].get("16", 0) == 0, (topic, got)  # no "no matching subscribers"
    seen = journal.wait_processed("r1", range(1, 1001), 120)
    by_route = {}
    for _, r in journal.records("-u", "routemq-worker@*"):
        if r.get("message") == "processed" and r.get("batch") == "r1":
            by_route.setdefault(r["version"], set()).add(int(r["seq"]))
    assert by_route.get("v2"), f"nothing handled by v2: {sorted(seen)}"
    after = pids(m)
    assert all(after[u] != before[u] for u in WORKERS), (before, after)
    assert all(show(m, u, "NRestarts")["NRestarts"] == "0" for u in UNITS)
    publish(m, "added/1", 1)
    wait_until(lambda: [r for _, r in Journal(m).records("-u", "routemq-worker@*")
                        if r.get("message") == "added route handled"], 60,
               "the route v2 added, handled")


def test_a_reload_that_cannot_import_keeps_the_running_version(machine: Machine) -> None:
    m = machine
    before = pids(m)
    good = m.run("cat", ROUTES).stdout
    m.write(ROUTES, good + "\ndef broken(:\n")
    try:
        m.run("systemctl", "reload", "routemq.target")
        def said() -> dict | None:
            doc = status(m)
            return doc if any("the last reload failed" in r
                              for r in doc["health"]["reasons"]) else None
        doc = wait_until(said, 60, "status saying the reload failed")
        assert doc["health"]["status"] == "degraded", doc["health"]
        assert "SyntaxError" in doc["master"]["reload"]["error"]
        log = m.run("journalctl", "--no-pager", "-o", "cat", "-u", "routemq-master").stdout
        assert "reload failed, the running version stays" in log
        health_writes(m, range(1, 5), 2)
        assert pids(m) == before
        assert all(unit_state(m, u) == "active" for u in UNITS)
    finally:
        m.write(ROUTES, good)


def test_a_venv_that_cannot_work_fails_once_without_restart_loop(machine: Machine) -> None:
    m = machine
    unit = "routemq-worker@6.service"
    m.write(f"{CONF_D}/99-venv.conf", "venv = /srv/routemq/no-such-venv\n")
    try:
        assert m.run("systemctl", "start", unit, check=False, timeout=60).returncode != 0
        health_writes(m, range(1, 5), 3)  # RestartSec=1: a restart loop shows by now
        props = show(m, unit, "ActiveState", "ExecMainStatus", "NRestarts")
        assert props == {"ActiveState": "failed", "ExecMainStatus": "2", "NRestarts": "0"}, props
        log = m.run("journalctl", "--no-pager", "-o", "cat", "-u", unit).stdout
        errors = [line for line in log.splitlines() if "config error" in line]
        assert len(errors) == 1 and "venv /srv/routemq/no-such-venv" in errors[0] \
            and "no such directory" in errors[0], log
        assert all(unit_state(m, u) == "active" for u in WORKERS)  # the others run on
    finally:
        m.run("rm", "-f", f"{CONF_D}/99-venv.conf")
        m.run("systemctl", "reset-failed", unit, check=False)


def restarts(m: Machine) -> dict[str, int]:
    return {u: int(show(m, u, "NRestarts")["NRestarts"]) for u in WORKERS}


def test_a_message_that_kills_its_worker_is_spooled_and_the_restarts_stop(
        machine: Machine) -> None:
    """Message 7 of poison/p1 makes its worker exit: systemd restarts it, the broker delivers
    the message again, it exits again; at the second death the restarted worker spools the
    message (poison_threshold 2) and acknowledges it, and the unit stays active."""
    m = machine
    before = restarts(m)

    def letters() -> list[dict]:
        out = m.run("routemq", "dead-letters", "--json", "--route", "poison/*").stdout
        return json.loads(out)["letters"]
    publish(m, "poison/p1", 40)
    [letter] = wait_until(letters, 120, "the poison message in the spool",
                          explain=lambda: m.run("journalctl", "--no-pager", "-o", "cat",
                                                "-n", "60").stdout)
    assert json.loads(letter["preview"]) == {"seq": 7}, letter
    assert letter["error"].startswith("poison: its worker process died 2 times"), letter
    journal = Journal(m)
    journal.wait_processed("p1", [n for n in range(1, 41) if n != 7], 120)
    wait_until(lambda: all(unit_state(m, u) == "active" for u in WORKERS), 60,
               "every worker active")
    after = restarts(m)
    assert sum(after.values()) - sum(before.values()) == 2, (before, after)
    # the restarts stopped: the next batch is handled with no further death
    publish(m, "poison/p2", 40, start=8)  # seq 7 of p2 would be another poison message
    journal.wait_processed("p2", range(8, 48), 120)
    assert restarts(m) == after
    assert 7 not in set().union(*journal.processed("p1").values())


def test_stopping_the_target_returns_after_every_worker_drained(machine: Machine) -> None:
    m = machine
    m.run("systemctl", "stop", "routemq.target", timeout=180)
    # Not waited for: when `systemctl stop` returns, every worker has stopped.
    assert {u: unit_state(m, u) for u in WORKERS} == {u: "inactive" for u in WORKERS}
    log = m.run("journalctl", "--no-pager", "-o", "cat", "-u", "routemq-worker@*").stdout
    assert log.count("stopped: processed") >= 4, log[-3000:]


def test_a_routemq_project_runs_unchanged_under_the_units(
        machine: Machine, tmp_path_factory: pytest.TempPathFactory) -> None:
    """What RouteMQ 0.25's `routemq new` writes (app/, .env with MQTT_BROKER=localhost),
    copied to the application root as it is, under routemq.target."""
    m = machine
    project = routemq_new(tmp_path_factory.mktemp("project"), "demo")
    m.run("systemctl", "stop", "routemq.target", timeout=180)
    m.run("rm", "-rf", "/srv/routemq/app", f"{CONF_D}/10-test.conf")
    m.put(project, "/srv/routemq")
    m.run("systemctl", "daemon-reload")
    m.run("systemctl", "start", "routemq.target", timeout=120)
    wait_until(lambda: unit_state(m, "routemq-worker@1.service") == "active", 90,
               "the project's worker active", explain=lambda: m.run(
                   "journalctl", "--no-pager", "-o", "cat", "-n", "40", "-u", "routemq-*").stdout)
    m.run("mosquitto_pub", "-q", "1", "-t", "devices/message/dev42", "-m", '{"t": 21}')
    wait_until(lambda: "Received message for device dev42" in m.run(
        "journalctl", "--no-pager", "-o", "cat", "-u", "routemq-worker@1").stdout, 60,
        "the generated handler's output in the journal")
    config = json.loads(m.sh("cd /srv/routemq && routemq config --json", user="routemq").stdout)
    assert config["mqtt_group_name"]["source"].startswith("env file /srv/routemq/.env line")
