"""A worker's behaviour an operator relies on: bad input does not stop it, sd_notify
(READY/WATCHDOG/STOPPING on a real datagram socket), TLS and passwords."""
import json
import os
import signal
import statistics
import time

import pytest

from routemq.plan import Plan
from tests.helpers import wait_until
from tests.integration.broker import publish_each
from tests.integration.conftest import AUTH_PASSWORD, AUTH_USER
from tests.integration.notify_socket import NotifySocket
from tests.integration.workers import Fleet


@pytest.fixture
def fleet(broker, tmp_path):
    f = Fleet(broker, tmp_path / "fleet", 1, ROUTEMQ_MAX_PAYLOAD_BYTES="1000",
              ROUTEMQ_DEAD_LETTER_TOPIC="dead/letters")
    yield f
    f.kill_all()


def test_bad_input_is_logged_counted_and_the_worker_goes_on(fleet, broker, collector):
    dead = collector(broker, [("dead/letters", 1)])
    fleet.start_all()
    publish_each(broker, [
        ("check/raise", b'{"seq": 1}', 1),          # handler raises
        ("check/text", b"not json at all", 1),     # not JSON: the handler gets bytes
        ("check/utf8", b"\xff\xfe\xfd invalid", 1),  # invalid UTF-8: bytes too
        ("check/big", b"x" * 2000, 1),              # over max_payload_bytes
        ("check/ok", b'{"seq": "after"}', 1),       # and the worker keeps going
    ])
    rows = fleet.wait_processed(3, "check", timeout=20)
    assert sorted(r[2] for r in rows) == ["check/ok", "check/text", "check/utf8"]
    assert {r[3] for r in rows if r[2] != "check/ok"} == {"bytes"}
    letters = [json.loads(m.payload) for m in dead.wait_for(2, timeout=20)]
    assert sorted(x["topic"] for x in letters) == ["check/big", "check/raise"]
    assert any("RuntimeError: handler failed on purpose" == x["error"] for x in letters)
    worker = fleet.procs[1]
    health = wait_until(lambda: (worker.health() or {}).get("processed", 0) >= 3 and
                        worker.health(), 10, "3 processed in the health file")
    assert (health["errors"], health["rejected"], health["processed"]) == (1, 1, 3)
    assert health["routes"]["shared:check/{kind}"]["errors"] == 1
    errors = [r for r in worker.log_records() if r["level"] == "ERROR"]
    raised = [r for r in errors if r.get("topic") == "check/raise"]
    assert len(raised) == 1 and raised[0]["route"] == "check/{kind}"
    assert "Traceback" in raised[0]["exc_info"] and "failed on purpose" in raised[0]["exc_info"]
    assert any(r.get("topic") == "check/big" and "max_payload_bytes" in r["message"]
               for r in errors)
    assert worker.proc.poll() is None


def test_sd_notify_ready_watchdog_and_stopping(fleet, broker, tmp_path):
    notify = NotifySocket(tmp_path / "notify.sock")
    try:
        worker = fleet.start(1, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="400000")
        ready_at = notify.wait_for("READY=1")
        assert any(m.startswith("STATUS=running") for _, m in notify.messages)
        # READY came after the SUBACK: a message published now is delivered at once.
        publish_each(broker, [("work/1", b'{"seq": 1}', 1)])
        assert fleet.wait_processed(1, "work", timeout=10)

        def pings_after(t: float, n: int) -> bool:
            return len([p for p in notify.times("WATCHDOG=1") if p > t]) >= n
        wait_until(lambda: pings_after(ready_at, 3), 10, "periodic WATCHDOG=1")
        # A sync handler blocking the loop for 2 s: no WATCHDOG=1 meanwhile.
        publish_each(broker, [("block/2", b'{"seq": 2}', 0)])
        assert fleet.wait_processed(1, "block", timeout=15)
        unblocked = time.monotonic()  # the handler records at the end of its 2 s
        wait_until(lambda: pings_after(unblocked, 3), 10, "WATCHDOG=1 again after the block")
        pings = notify.times("WATCHDOG=1")
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        assert max(gaps) >= 1.8, f"watchdog kept pinging while the loop was blocked: {gaps}"
        assert statistics.median(gaps) < 0.5, f"otherwise every 0.2 s: {gaps}"
        worker.signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1")
        assert worker.wait(30) == 0
    finally:
        notify.close()


def tls_fleet(tls_broker, tmp_path, ca):
    return Fleet(tls_broker, tmp_path / "fleet", 1, MQTT_PORT=str(tls_broker.tls_port),
                 ROUTEMQ_TLS_CA_FILE=str(ca))


def test_tls_with_the_test_ca(tls_broker, tmp_path):
    fleet = tls_fleet(tls_broker, tmp_path, tls_broker.pki.ca_cert)
    try:
        fleet.start_all()
        publish_each(tls_broker, [("work/1", b'{"seq": 7}', 1)])
        assert fleet.wait_processed(1, "work", timeout=10)
        assert "mqtts://" in fleet.procs[1].output()
    finally:
        fleet.kill_all()


def test_tls_with_the_wrong_ca_fails_clearly(tls_broker, tmp_path):
    fleet = tls_fleet(tls_broker, tmp_path, tls_broker.pki.other_ca_cert)
    try:
        worker = fleet.start(1)
        wait_until(lambda: "certificate verify failed" in worker.output(), 15,
                   "the TLS failure in the worker's output")
        warnings = [r for r in worker.log_records() if r["level"] == "WARNING"]
        assert any("TLS handshake failed: certificate verify failed" in r["message"]
                   for r in warnings), worker.output()[-2000:]
        assert (worker.health() or {}).get("state") != "running"
        assert worker.proc.poll() is None  # keeps retrying: the CA may be fixed meanwhile
    finally:
        fleet.kill_all()


def test_password_from_file_never_in_logs_or_ps(auth_broker, tmp_path):
    secret = tmp_path / "mqtt_password"
    secret.write_text(AUTH_PASSWORD + "\n")
    os.chmod(secret, 0o600)
    fleet = Fleet(auth_broker, tmp_path / "fleet", 1, MQTT_USERNAME=AUTH_USER,
                  MQTT_PASSWORD_FILE=str(secret), LOG_LEVEL="DEBUG")
    try:
        fleet.start_all()
        worker = fleet.procs[1]
        with open(f"/proc/{worker.pid}/cmdline", "rb") as f:
            assert AUTH_PASSWORD.encode() not in f.read()
        with open(f"/proc/{worker.pid}/environ", "rb") as f:
            assert AUTH_PASSWORD.encode() not in f.read()
        worker.stop()
        assert AUTH_PASSWORD not in worker.output()
    finally:
        fleet.kill_all()


def test_sighup_reloads_the_plan_and_changes_only_what_changed(broker, tmp_path):
    fleet = Fleet(broker, tmp_path / "fleet", 1)
    plan_path = fleet.runtime / "plan.json"
    fleet.runtime.mkdir(parents=True, exist_ok=True)

    def write_plan(keys):
        doc = {"version": 1, "instances": {"1": sorted(keys)},
               "routes": {k: [1] for k in keys}, "warnings": []}
        Plan.from_json(json.dumps(doc))  # the worker reads exactly this format
        plan_path.write_text(json.dumps(doc))

    write_plan(["shared:work/{id}"])
    try:
        worker = fleet.start(1)
        health = worker.wait_running()
        assert health["subscriptions"] == ["$share/testgroup/work/+"]
        write_plan(["shared:work/{id}", "single:ordered/{id}"])
        worker.signal(signal.SIGHUP)

        def subscriptions() -> list[str] | None:
            return (worker.health() or {}).get("subscriptions")
        wait_until(lambda: subscriptions() == ["$share/testgroup/work/+", "ordered/+"], 10,
                   "the reloaded plan's subscriptions", explain=lambda: str(worker.health()))
        publish_each(broker, [("ordered/5", b'{"seq": 5}', 1), ("work/5", b'{"seq": 6}', 1)])
        assert len(fleet.wait_processed(2, timeout=10)) == 2
        reloads = [r for r in worker.log_records() if "plan reloaded" in r["message"]]
        assert reloads and reloads[-1]["message"] == "plan reloaded: +1 -0 subscriptions"
        write_plan(["single:ordered/{id}"])  # no signal: the worker notices the new file
        wait_until(lambda: subscriptions() == ["ordered/+"], 20, "the new file's subscriptions",
                   explain=lambda: str(worker.health()))
    finally:
        fleet.kill_all()


def test_instance_outside_the_plan_is_a_clear_error(broker, tmp_path):
    fleet = Fleet(broker, tmp_path / "fleet", 2)
    worker = fleet.start(9)
    assert worker.wait(30) == 1
    errors = [r["message"] for r in worker.log_records() if r["level"] == "ERROR"]
    assert any("instance 9 is not in the plan" in m and "workers = 2" in m for m in errors), \
        worker.output()[-2000:]


def test_crashed_worker_leaves_its_health_file(broker, tmp_path):
    fleet = Fleet(broker, tmp_path / "fleet", 1)
    worker = fleet.start(1)
    health = worker.wait_running()
    assert {"pid", "state", "connected", "subscriptions", "received", "processed", "errors",
            "inflight", "routes", "reconnects", "rss_bytes", "cpu_seconds", "started_at",
            "updated_at"} <= set(health)
    worker.kill()
    assert worker.health()["pid"] == health["pid"]  # stale, for the master to notice
