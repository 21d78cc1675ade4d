"""The dashboard built from a fleet snapshot: who is alive, overall health, routes, master."""
import json

import pytest

from routemq.fleet import Snapshot, UnitState
from routemq.plan import Plan
from routemq.status import (build_status, classify, exit_code, freshness_limit, overall_health,
                            render_table, summary_line)

NOW = 2_000_000.0
A, B, C = "shared:a/{id}", "shared:b", "single:c"


def health(instance, pid=None, age=0.5, state="running", routes=(), **extra):
    doc = {"instance": instance, "pid": pid or 1000 + instance, "state": state,
           "connected": True, "updated_at": NOW - age, "started_at": NOW - 100,
           "processed": 10 * instance, "errors": 0, "received": 10 * instance, "rate": 1.0,
           "inflight": 0, "queued": 0, "rss_bytes": 20 * 2**20, "cpu_seconds": 2.0,
           "reconnects": 0, "routes_held": list(routes), "routes": {}}
    doc.update(extra)
    return doc


def snapshot(workers, plan=None, dead=(), master=None, units=None, notes=(), interval=1.0):
    pids = {h["pid"]: h["pid"] not in dead for h in workers.values() if "pid" in h}
    if master:
        pids[master["pid"]] = master["pid"] not in dead
    return Snapshot(runtime_dir="/run/routemq", taken_at=NOW, monotonic=500.0, hostname="h1",
                    group="g", health_interval=interval, plan=plan,
                    plan_source="plan.json" if plan else None, master=master,
                    workers=workers, pids=pids, units=units, notes=list(notes))


PLAN4 = Plan({1: (A, B), 2: (A,), 3: (A, C), 4: (A,)})


def four(**overrides):
    routes = {i: PLAN4.assignments[i] for i in range(1, 5)}
    return {i: overrides.get(i, health(i, routes=routes[i])) for i in range(1, 5)}


@pytest.mark.parametrize("alive, planned, status, code", [
    (10, 10, "healthy", 0), (9, 10, "healthy", 0), (8, 10, "degraded", 1),
    (7, 10, "degraded", 1), (6, 10, "unhealthy", 3), (0, 4, "unhealthy", 3),
    (0, 0, "unhealthy", 3)])
def test_overall_health_thresholds_and_exit_codes(alive, planned, status, code):
    h = overall_health(alive, planned)
    assert h["status"] == status
    assert (h["healthy_workers"], h["total_workers"]) == (alive, planned)
    assert exit_code({"health": h}) == code


def test_freshness_is_three_intervals_but_at_least_five_seconds():
    assert freshness_limit(1.0) == 5.0 and freshness_limit(4.0) == 12.0


@pytest.mark.parametrize("doc, pid_alive, unit, expected", [
    ({"pid": 5, "updated_at": NOW - 1, "state": "running"}, True, None, (True, "running")),
    ({"pid": 5, "updated_at": NOW - 1, "state": "reconnecting"}, True, None,
     (True, "reconnecting")),
    ({"pid": 5, "updated_at": NOW - 1}, False, None, (False, "dead")),
    ({"pid": 5, "updated_at": NOW - 6}, True, None, (False, "stale")),  # hung, or pid reused
    ({}, None, None, (False, "unreadable")),
    (None, None, None, (False, "missing")),
    ({"pid": 5, "updated_at": NOW - 1}, True, UnitState(1, "loaded", "failed", "failed"),
     (False, "failed")),
    (None, None, UnitState(1, "loaded", "activating", "auto-restart"),
     (False, "activating/auto-restart")),
    (None, True, UnitState(1, "loaded", "active", "running", main_pid=5), (False, "starting")),
    ({"pid": 5, "updated_at": NOW - 1, "state": "running"}, True,
     UnitState(1, "loaded", "active", "running", main_pid=5), (True, "running")),
    ({"pid": 4, "updated_at": NOW - 1, "state": "running"}, False,  # restarted by systemd
     UnitState(1, "loaded", "active", "running", main_pid=5), (False, "starting")),
])
def test_classify(doc, pid_alive, unit, expected):
    assert classify(doc, pid_alive, unit, NOW, 1.0) == expected


def test_all_alive_is_healthy_with_every_column():
    workers = four()
    workers[1]["routes"] = {A: {"processed": 30, "errors": 0, "avg_ms": 2.0, "p99_ms": 5.0},
                            B: {"processed": 10, "errors": 0, "avg_ms": 6.0, "p99_ms": 9.0},
                            C: {"processed": 0, "errors": 0, "avg_ms": 0.0, "p99_ms": 0.0}}
    s = build_status(snapshot(workers, PLAN4))
    assert s["health"] == {"status": "healthy", "healthy_workers": 4, "total_workers": 4,
                           "health_percentage": 100.0}
    w1 = s["workers"][0]
    assert (w1["instance"], w1["pid"], w1["alive"], w1["state"], w1["connected"]) == \
        (1, 1001, True, "running", True)
    assert w1["memory_mb"] == 20.0
    assert w1["cpu_percent"] == pytest.approx(2.0 / 99.5 * 100, abs=0.1)  # cpu_seconds / uptime
    assert w1["latency_avg_ms"] == 3.0   # (30 x 2 + 10 x 6) / 40
    assert w1["latency_p99_ms"] == 9.0   # the worst route's
    assert w1["restarts"] is None        # standalone: nobody counts restarts
    assert s["overview"]["processed"] == 100 and s["overview"]["rate"] == 4.0
    assert s["overview"]["shared_routes"] == 2 and s["overview"]["routes"] == 3
    assert all(not r["mismatch"] and not r["uncovered"] for r in s["routes"])
    assert s["warnings"] == []
    json.dumps(s)  # --json must not fail
    assert summary_line(s) == "healthy: 4/4 workers alive (100.0%), 4 msg/s"


def test_one_killed_worker_of_four_is_degraded():
    s = build_status(snapshot(four(), PLAN4, dead={1003}))
    assert s["health"]["status"] == "degraded" and exit_code(s) == 1
    w3 = s["workers"][2]
    assert (w3["alive"], w3["state"], w3["rate"], w3["processed"]) == (False, "dead", 0.0, 30)
    assert "instance 3 is not alive: dead (pid 1003 is gone)" in s["warnings"]
    by_route = {r["route"]: r for r in s["routes"]}
    assert by_route[C]["uncovered"] and by_route[C]["holding"] == []
    assert by_route[A]["holding"] == [1, 2, 4] and not by_route[A]["mismatch"]
    assert any("route single:c is held by no alive worker" in w for w in s["warnings"])


def test_missing_and_stale_instances_make_it_unhealthy():
    workers = four()
    del workers[2]                                   # cleanly stopped: file removed
    workers[4] = health(4, age=30, routes=(A,))      # hung: pid there, file old
    s = build_status(snapshot(workers, PLAN4))
    states = {w["instance"]: w["state"] for w in s["workers"]}
    assert states == {1: "running", 2: "missing", 3: "running", 4: "stale"}
    assert s["health"]["status"] == "unhealthy" and exit_code(s) == 3


def test_plan_mismatch_and_unplanned_instance():
    workers = four()
    workers[2] = health(2, routes=(A, B))        # holds B, which the plan gives to 1 only
    workers[1] = health(1, routes=(A,))          # does not hold B any more
    workers[7] = health(7, routes=(A,))          # started by hand, not (yet) in the plan
    s = build_status(snapshot(workers, PLAN4))
    b = next(r for r in s["routes"] if r["route"] == B)
    assert (b["planned"], b["holding"], b["missing"], b["unexpected"], b["mismatch"]) == \
        ([1], [2], [1], [2], True)
    w7 = s["workers"][-1]
    assert (w7["instance"], w7["planned"], w7["alive"]) == (7, False, True)
    assert s["health"]["total_workers"] == 4 and s["overview"]["running_unplanned"] == 1
    assert "instance 7 is running but not in the plan" in s["warnings"]
    table = render_table(s)
    assert "MISMATCH" in table and "\n7*" in table and "not in the plan" in table


def test_master_section_restarts_and_plan_versions():
    master = {"pid": 50, "hostname": "node-a", "group": "prod", "backend": "processes",
              "started_at": NOW - 3600, "updated_at": NOW - 1, "plan_version": 5,
              "instances": [1, 2], "restarts": {"2": 3},
              "autoscaler": {"enabled": True, "min": 1, "max": 4, "target": 2, "rate": 12.5,
                             "last_action": "scale up to 2", "last_action_at": NOW - 30},
              "warnings": ["route 'x' wants 8 workers but only 2 instances exist; it runs on 2"]}
    workers = {1: health(1, routes=(A,), plan_version=5), 2: health(2, routes=(A,), plan_version=4)}
    s = build_status(snapshot(workers, Plan({1: (A,), 2: (A,)}), master=master))
    assert (s["host"], s["group"], s["backend"], s["plan_source"]) == \
        ("node-a", "prod", "processes", "master.json")
    assert [w["restarts"] for w in s["workers"]] == [0, 3]
    m = s["master"]
    assert (m["alive"], m["plan_version"], m["uptime_s"]) == (True, 5, 3600.0)
    assert "instance 2 applies plan version 4, the master's is 5" in s["warnings"]
    assert any(w.startswith("master: route 'x' wants 8") for w in s["warnings"])
    table = render_table(s)
    assert "master: pid 50 running, backend processes, plan version 5, up 1h0m, updated 1s " \
        "ago" in table
    assert "autoscaler: 1..4 workers, target 2, 12.5 msg/s, last: scale up to 2" in table


def test_a_dead_master_is_reported():
    master = {"pid": 50, "backend": "processes", "updated_at": NOW - 120, "instances": [1]}
    s = build_status(snapshot({1: health(1)}, master=master, dead={50}))
    assert s["master"]["alive"] is False
    assert "master (pid 50) is not running: master.json last updated 120s ago" in s["warnings"]


def test_systemd_units_decide_with_the_health_files():
    units = {1: UnitState(1, "loaded", "active", "running", restarts=2, main_pid=1001,
                          active_since=400.0),
             2: UnitState(2, "loaded", "failed", "failed", restarts=5),
             3: UnitState(3, "loaded", "active", "running", main_pid=2003, active_since=499.0)}
    workers = {1: health(1), 2: health(2)}  # 2: the file its crash left; 3: none yet
    s = build_status(snapshot(workers, Plan({1: (A,), 2: (A,), 3: (A,)}), units=units))
    rows = {w["instance"]: w for w in s["workers"]}
    assert (rows[1]["alive"], rows[1]["restarts"], rows[1]["unit"]["active_for_s"]) == \
        (True, 2, 100.0)
    assert (rows[2]["alive"], rows[2]["state"], rows[2]["restarts"]) == (False, "failed", 5)
    assert (rows[3]["alive"], rows[3]["state"], rows[3]["pid"]) == (False, "starting", 2003)
    assert s["backend"] == "systemd"
    assert s["health"]["status"] == "unhealthy"  # 1 of 3


def test_without_a_plan_the_health_files_say_what_is_planned():
    s = build_status(snapshot({1: health(1), 2: health(2)}))
    assert s["plan_source"] == "health files" and s["health"]["total_workers"] == 2
    assert all(r["planned"] is None for r in s["routes"])


def test_nothing_at_all():
    s = build_status(snapshot({}, notes=["runtime directory /run/routemq does not exist"]))
    assert s["health"]["status"] == "unhealthy" and exit_code(s) == 3
    assert s["warnings"] == ["runtime directory /run/routemq does not exist"]
    assert "no workers planned or running" in render_table(s)
    assert "master: none (standalone workers)" in render_table(s)


def test_table_has_the_dashboard_columns():
    table = render_table(build_status(snapshot(four(), PLAN4, dead={1003})))
    lines = table.splitlines()
    assert lines[0] == "RouteMQ degraded: 3/4 workers alive (75.0%), 3 msg/s, 2 warnings"
    header = next(line for line in lines if line.startswith("INST"))
    for column in ("PID", "ALIVE", "STATE", "RESTARTS", "CONN", "MSG/S", "PROCESSED", "ERRORS",
                   "AVG MS", "P99 MS", "INFLIGHT", "RSS MB", "CPU %", "ROUTES"):
        assert column in header
    row3 = next(line for line in lines if line.startswith("3 "))
    assert row3.split()[:4] == ["3", "1003", "no", "dead"]
    assert "CPU % is the average since the worker started" in table
    routes = {line.split()[0]: line.split()[1:] for line in lines
              if line.startswith(("shared:", "single:"))}
    assert routes == {"shared:a/{id}": ["1,2,3,4", "1,2,4", "3/4"],
                      "shared:b": ["1", "1", "ok"], "single:c": ["3", "-", "NO", "WORKER"]}
