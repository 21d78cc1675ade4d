"""`routemq status` and `routemq metrics` against real workers on a real mosquitto.

Standalone workers (no master): `routemq status` takes instances 1..WORKER_COUNT as planned,
so a cleanly stopped worker shows as missing, not as gone from the fleet. Under `routemq run`,
the master's master.json adds the plan version, the back end and the restart counts.
Health is what an operator means: a worker that is alive but not connected to the broker is
not healthy, and a fleet with no connected worker is unhealthy (exit 3), with the reasons.
"""
import collections
import json
import os
import signal
import subprocess
import sys

import pytest

from tests.helpers import exited, wait_until, workers_by_instance
from tests.integration.broker import publish_many
from tests.integration.workers import Fleet, Run
from tests.unit.test_prometheus import parse_exposition

WORK = "shared:work/{id}"
ORDERED = "single:ordered/{id}"  # not shared: one instance holds it


@pytest.fixture
def fleet(broker, tmp_path):
    f = Fleet(broker, tmp_path / "fleet", 4)
    yield f
    for p in f.procs.values():
        p.signal(signal.SIGCONT)  # a stopped process would ignore the SIGKILL's reaping wait
    f.kill_all()


def test_status_and_metrics_count_what_the_workers_processed(fleet, broker):
    fleet.start_all()
    doc, code = fleet.status()
    assert code == 0, doc["warnings"]
    assert doc["health"] == {"status": "healthy", "healthy_workers": 4, "total_workers": 4,
                             "health_percentage": 100.0, "reasons": []}
    rows = workers_by_instance(doc)
    for i in range(1, 5):
        assert (rows[i]["pid"], rows[i]["alive"], rows[i]["state"], rows[i]["connected"]) == \
            (fleet.procs[i].pid, True, "running", True)
        assert rows[i]["memory_mb"] > 1 and WORK in rows[i]["routes_held"]
    work = next(r for r in doc["routes"] if r["route"] == WORK)
    assert work["planned"] == work["holding"] == [1, 2, 3, 4] and not work["mismatch"]

    total = 300  # 6 topics x 50: the broker spreads them over the four members
    publish_many(broker, [(f"work/{k}", json.dumps({"seq": n})) for k in range(6)
                          for n in range(50)])
    processed = fleet.wait_processed(total, "work", timeout=60)
    per_worker = collections.Counter(r[0] for r in processed)
    assert sum(per_worker.values()) == total  # each message once: nothing crashed
    # Health files are rewritten about once a second: wait until they caught up.
    doc, code = fleet.wait_status(lambda d: d["overview"]["processed"] >= total,
                                  f"{total} processed in the health files")
    assert code == 0 and doc["overview"]["processed"] == total
    rows = workers_by_instance(doc)
    assert {i: rows[i]["routes"].get(WORK, {}).get("processed", 0) for i in rows} == \
        {i: per_worker.get(i, 0) for i in range(1, 5)}
    assert all(rows[i]["processed"] == per_worker.get(i, 0) for i in rows)
    assert any(rows[i]["latency_avg_ms"] is not None for i in rows)

    r = fleet.routemq("metrics")
    assert r.returncode == 0, r.stderr
    families = parse_exposition(r.stdout)
    up = {s[0]["worker"]: s[1] for s in families["routemq_worker_up"]["samples"]}
    assert up == {"1": 1, "2": 1, "3": 1, "4": 1}
    by_route = {s[0]["worker"]: s[1]
                for s in families["routemq_route_messages_processed_total"]["samples"]
                if s[0]["route"] == WORK}
    assert {int(i): int(v) for i, v in by_route.items() if v} == \
        {i: n for i, n in per_worker.items() if n}
    assert sum(by_route.values()) == total
    assert families["routemq_workers_alive"]["samples"][0][1] == 4
    assert all(s[0]["group"] == "testgroup" for s in families["routemq_workers_alive"]["samples"])


def test_status_follows_a_hung_a_killed_and_a_stopped_worker(fleet):
    fleet.start_all()
    doc, code = fleet.status()
    assert code == 0 and doc["health"]["healthy_workers"] == 4
    # The route that is not shared has one owner; the other three share routes only.
    owner, = next(r["holding"] for r in doc["routes"] if r["route"] == ORDERED)
    hung, killed, stopped = [i for i in range(1, 5) if i != owner]

    # Hung: SIGSTOP freezes a worker, its pid stays but its health file ages.
    fleet.procs[hung].signal(signal.SIGSTOP)
    doc, code = fleet.wait_status(lambda d: not workers_by_instance(d)[hung]["alive"],
                                  f"stopped instance {hung} not alive")
    assert workers_by_instance(doc)[hung]["state"] == "stale" and code == 1
    assert doc["health"]["reasons"][0].startswith(f"instance {hung} is not alive: stale")
    fleet.procs[hung].signal(signal.SIGCONT)
    doc, code = fleet.wait_status(lambda d: d["health"]["healthy_workers"] == 4,
                                  "4 healthy workers again")
    assert code == 0, doc["warnings"]

    # kill -9 leaves the health file behind: the pid is gone, so the worker is dead.
    pid = fleet.procs[killed].pid
    fleet.procs[killed].kill()
    doc, code = fleet.status()
    row = workers_by_instance(doc)[killed]
    assert (row["alive"], row["state"], row["pid"]) == (False, "dead", pid)
    assert doc["health"]["status"] == "degraded" and code == 1
    reason = f"instance {killed} is not alive: dead (pid {pid} is gone)"
    assert doc["health"]["reasons"] == [reason]
    table = fleet.routemq("status")
    assert table.returncode == 1
    heading, first_reason = table.stdout.splitlines()[:2]
    assert heading.startswith("RouteMQ degraded: 3/4 workers healthy (75.0%)")
    assert first_reason == f"  - {reason}"
    assert [line.split()[:4] for line in table.stdout.splitlines()
            if line.startswith(f"{killed} ")] == [[str(killed), str(pid), "no", "dead"]]

    # A clean stop removes the health file: the planned instance is missing, and 2 of 4
    # healthy is below the 70 % of RouteMQ's shared-subscriptions guide.
    assert fleet.procs[stopped].stop() == 0
    assert not os.path.exists(fleet.runtime / "workers" / f"{stopped}.json")
    doc, code = fleet.status()
    assert workers_by_instance(doc)[stopped]["state"] == "missing"
    assert doc["health"]["status"] == "unhealthy" and code == 3
    assert doc["health"]["reasons"][0] == \
        "only 2 of 4 planned workers are healthy (50.0%; unhealthy below 70%)"
    families = parse_exposition(fleet.routemq("metrics").stdout)
    assert families["routemq_workers_alive"]["samples"][0][1] == 2
    assert families["routemq_fleet_healthy"]["samples"][0][1] == 0
    status = {s[0]["status"]: s[1] for s in families["routemq_fleet_status"]["samples"]}
    assert status == {"healthy": 0, "degraded": 0, "unhealthy": 1}

    # The owner of the route that is not shared dies: nobody handles that route.
    fleet.procs[owner].kill()
    doc, code = fleet.status()
    assert code == 3
    assert f"route {ORDERED} is held by no alive, connected worker (planned on {owner})" in \
        doc["health"]["reasons"]

    fleet.stop_all()
    doc, code = fleet.status()
    assert code == 3 and doc["health"]["healthy_workers"] == 0


def test_status_is_unhealthy_while_the_broker_is_away(broker, tmp_path):
    """The workers stay alive (process there, health file fresh) but lose the broker:
    nothing is handled, so status says unhealthy and why; healthy again once it is back."""
    fleet = Fleet(broker, tmp_path / "fleet", 2)
    try:
        fleet.start_all()
        doc, code = fleet.status()
        assert code == 0, doc["health"]["reasons"]

        broker.stop()
        doc, code = fleet.wait_status(lambda d: d["overview"]["connected_workers"] == 0,
                                      "no connected worker")
        assert code == 3 and doc["health"]["status"] == "unhealthy"
        rows = workers_by_instance(doc)
        assert all(rows[i]["alive"] and not rows[i]["connected"] for i in (1, 2)), rows
        reasons = doc["health"]["reasons"]
        assert reasons[0] == "no worker is connected to the broker"
        for i in (1, 2):
            assert f"instance {i} is not connected to the broker ({rows[i]['state']})" in \
                reasons
        table = fleet.routemq("status")
        assert table.returncode == 3
        assert table.stdout.splitlines()[1] == "  - no worker is connected to the broker"
        families = parse_exposition(fleet.routemq("metrics").stdout)
        assert families["routemq_workers_alive"]["samples"][0][1] == 2
        assert families["routemq_workers_connected"]["samples"][0][1] == 0
        assert families["routemq_fleet_health_ratio"]["samples"][0][1] == 0
        assert families["routemq_fleet_healthy"]["samples"][0][1] == 0

        broker.start()  # same port, same persistence: the workers reconnect by themselves
        doc, code = fleet.wait_status(lambda d: d["health"]["status"] == "healthy",
                                      "healthy again", timeout=60)
        assert code == 0, doc["health"]["reasons"]
        assert doc["health"]["reasons"] == [] and doc["overview"]["connected_workers"] == 2
    finally:
        fleet.kill_all()


def test_status_under_routemq_run_shows_the_master_and_restarts(broker, tmp_path):
    textfiles = tmp_path / "node-exporter"  # where the master writes routemq.prom
    run = Run(broker, tmp_path / "run", 3, ROUTEMQ_METRICS_TEXTFILE_DIR=str(textfiles))
    try:
        run.start_run()
        run.wait_settled([1, 2, 3])
        master = run.master()
        doc, code = run.status()
        assert code == 0, doc["warnings"]
        assert (doc["plan_source"], doc["backend"]) == ("master.json", "processes")
        m = doc["master"]
        assert (m["alive"], m["pid"], m["plan_version"], m["instances"]) == \
            (True, master["pid"], master["plan_version"], [1, 2, 3])
        assert [(w["instance"], w["alive"], w["restarts"], w["plan_version"])
                for w in doc["workers"]] == [(i, True, 0, master["plan_version"])
                                             for i in (1, 2, 3)]
        # The test application asks for 4 workers on its shared routes: the plan says so, once.
        assert sorted(doc["warnings"]) == [
            f"route 'shared:{r}' wants 4 workers but only 3 instances exist; it runs on 3"
            for r in ("block/{seconds}", "check/{kind}", "slow/{id}", "work/{id}")]

        victim = run.healths()[2]["pid"]
        os.kill(victim, signal.SIGKILL)  # the process back end restarts it and counts it
        doc, code = run.wait_status(lambda d: workers_by_instance(d)[2]["restarts"] == 1
                                    and workers_by_instance(d)[2]["alive"],
                                    "instance 2 restarted once and alive", timeout=40)
        w2 = workers_by_instance(doc)[2]
        assert (w2["restarts"], w2["alive"]) == (1, True) and w2["pid"] != victim
        assert code == 0
        families = parse_exposition(run.routemq("metrics").stdout)
        restarts = {s[0]["worker"]: s[1]
                    for s in families["routemq_worker_restarts_total"]["samples"]}
        assert restarts == {"1": 0, "2": 1, "3": 0}
        assert families["routemq_master_up"]["samples"][0][1] == 1
        assert families["routemq_master_plan_version"]["samples"][0][1] == \
            run.master()["plan_version"]

        # The master's textfile for node-exporter: the same metrics, kept current.
        def textfile() -> tuple[dict, int]:
            families = parse_exposition((textfiles / "routemq.prom").read_text())
            return ({s[0]["worker"]: s[1]
                     for s in families["routemq_worker_restarts_total"]["samples"]},
                    families["routemq_workers_alive"]["samples"][0][1])
        wait_until(lambda: textfile()[0].get("2") == 1 and textfile()[1] == 3, 10,
                   "the textfile counting the restart", explain=lambda: str(textfile()))
        restarts, alive = textfile()
        assert restarts == {"1": 0, "2": 1, "3": 0} and alive == 3
        assert os.listdir(textfiles) == ["routemq.prom"]

        assert run.stop_run() == 0
        doc, code = run.status()
        assert code == 3 and doc["master"] is None and doc["health"]["healthy_workers"] == 0
    finally:
        run.stop_all()
        run.kill_run()


def test_status_is_unhealthy_while_the_master_is_dead(broker, tmp_path):
    """The systemd shape (`routemq master` alone, the workers started by hand): the master
    killed with -9 leaves master.json and plan.json behind and the workers running; nothing
    re-plans or drains meanwhile, so status is unhealthy and names the master."""
    run = Run(broker, tmp_path / "fleet", 2)

    def start_master() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "routemq", "master"],
                                env=run.env(0, TEST_WORKER=""), cwd=str(run.dir),
                                stdout=open(tmp_path / "master.log", "ab"),
                                stderr=subprocess.STDOUT)

    master = start_master()
    try:
        wait_until((run.runtime / "plan.json").exists, 20, "the master's plan.json",
                   abort=exited(master, "routemq master", (tmp_path / "master.log").read_text))
        for i in (1, 2):
            run.start(i)
        run.wait_settled([1, 2])
        doc, code = run.status()
        assert code == 0, doc["health"]["reasons"]

        master.kill()
        master.wait(10)
        doc, code = run.status()
        assert code == 3 and doc["health"]["status"] == "unhealthy"
        assert doc["master"]["alive"] is False and doc["master"]["state"] == "dead"
        assert doc["health"]["reasons"][0].startswith(
            f"master (pid {master.pid}) is not running: master.json last updated ")
        assert all(w["alive"] and w["connected"] for w in doc["workers"])  # only the master
        families = parse_exposition(run.routemq("metrics").stdout)
        assert families["routemq_master_up"]["samples"][0][1] == 0
        assert families["routemq_fleet_healthy"]["samples"][0][1] == 0

        master = start_master()  # systemd's Restart=: the fleet is whole again
        doc, code = run.wait_status(lambda d: d["health"]["status"] == "healthy",
                                    "healthy with the master back", timeout=30)
        assert code == 0, doc["health"]["reasons"]
    finally:
        if master.poll() is None:
            master.terminate()
            master.wait(30)
        run.kill_all()
