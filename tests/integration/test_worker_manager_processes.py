"""WorkerManager's child-process back end, and the embedded broker, against a real broker."""
import json
import os
import subprocess

from routemq.embedded import EmbeddedBroker
from routemq.registry import load_router
from routemq.worker_manager import WorkerManager
from tests.helpers import tally, wait_until
from tests.integration.broker import publish_many
from tests.integration.workers import APP, Fleet


def wait_all_running(fleet, pids, timeout=20):
    def states():
        found = {}
        for path in (fleet.runtime / "workers").glob("*.json"):
            try:
                h = json.loads(path.read_text())
            except ValueError:
                continue
            found[h["pid"]] = h["state"]
        return found
    wait_until(lambda: all(states().get(pid) == "running" for pid in pids), timeout,
               f"workers {pids} running", explain=lambda: str(states()))


def test_start_restart_and_stop_workers(broker, tmp_path):
    fleet = Fleet(broker, tmp_path / "fleet", 2)  # for its environment and output reading
    env = fleet.env(0)
    env.pop("TEST_WORKER")  # each child records under its own pid
    manager = WorkerManager(load_router("app.routers", APP), "testgroup",
                            app_root=str(APP), environ=env)
    workers = manager.start_workers(2)
    try:
        assert [w.instance for w in workers] == [1, 2] and all(w.is_alive() for w in workers)
        wait_all_running(fleet, [w.pid for w in workers])
        publish_many(broker, "work/1", 1000)
        rows = fleet.wait_processed(1000, "work", timeout=30)
        per_worker, per_message = tally(rows)
        assert len(per_message) == 1000 and len(per_worker) == 2
        old_pid = workers[0].pid
        workers[0].proc.kill()
        workers[0].join(10)
        assert manager.restart_dead_workers() == [1]
        assert manager.workers[0].pid != old_pid and manager.workers[0].is_alive()
        wait_all_running(fleet, [w.pid for w in manager.workers])
    finally:
        manager.stop_workers()
    assert [w.exitcode for w in manager.workers] == [0, 0]
    assert not list((fleet.runtime / "workers").glob("*.json"))  # removed on a clean stop


def test_the_embedded_broker_keeps_an_offline_sessions_messages(tmp_path):
    """`routemq run`'s private mosquitto (no MQTT_BROKER): a persistent session that is
    offline keeps all of 3,000 QoS 1 messages (mosquitto's default keeps 1,000)."""
    broker = EmbeddedBroker()
    broker.start()
    sub = ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-V", "5", "-q", "1",
           "-c", "-x", "3600", "-i", "offline-1", "-t", "queue/+"]
    try:
        conf = open(os.path.join(broker.directory, "mosquitto.conf")).read().splitlines()
        assert {"max_queued_messages 1000000", "per_listener_settings false",
                "persistence true", "autosave_interval 10"} <= set(conf)
        subprocess.run([*sub, "-W", "1"], capture_output=True, timeout=30)  # subscribe, leave
        assert publish_many(broker, "queue/1", 3000) == 3000
        done = subprocess.run([*sub, "-C", "3000", "-W", "30"], capture_output=True,
                              text=True, timeout=60)
        seqs = {json.loads(line)["seq"] for line in done.stdout.splitlines()}
        assert seqs == set(range(3000)), f"{3000 - len(seqs)} of 3000 dropped"
    finally:
        broker.stop()
