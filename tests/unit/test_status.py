"""The dashboard built from a fleet snapshot: who is alive, overall health, routes, master."""
import doctest
import json

import pytest

import routemq.status
from routemq.documents import MasterState, WorkerHealth
from routemq.fleet import Snapshot, UnitState
from routemq.plan import Plan
from routemq.status import build_status, classify, exit_code, overall_health
from routemq.prometheus import render_metrics
from routemq.status_text import render_table, summary_line

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


def snapshot(workers, plan=None, dead=(), master=None, units=None, notes=(), interval=1.0,
             source=None):
    """A plan without a master is the standalone workers' (computed from the configuration):
    a plan.json would be a master's, which must then be running. The documents go through
    their readers' checks, whose notes join `notes` (as routemq.fleet does)."""
    pids = {h["pid"]: h["pid"] not in dead for h in workers.values() if "pid" in h}
    if master and "pid" in master:
        pids[master["pid"]] = master["pid"] not in dead
    source = source or (None if plan is None else "plan.json" if master else "standalone")
    notes = list(notes)
    checked = {}
    for i, doc in workers.items():
        checked[i], found = WorkerHealth.from_doc(doc, i, NOW)
        notes += found
    if master is not None:
        master, found = MasterState.from_doc(master, NOW)
        notes += found
    return Snapshot(runtime_dir="/run/routemq", taken_at=NOW, monotonic=500.0, hostname="h1",
                    group="g", health_interval=interval, plan=plan, plan_source=source,
                    master=master, workers=checked, pids=pids, units=units, notes=notes)


def master_doc(**extra):
    doc = {"pid": 50, "backend": "processes", "started_at": NOW - 600, "updated_at": NOW - 1,
           "plan_version": 1, "instances": [1, 2, 3, 4]}
    doc.update(extra)
    return doc


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
    health = None if doc is None else WorkerHealth.from_doc(doc, 1, NOW)[0]
    assert classify(health, pid_alive, unit, NOW, 1.0) == expected


def test_all_alive_is_healthy_with_every_column():
    workers = four()
    workers[1]["routes"] = {A: {"processed": 30, "errors": 0, "avg_ms": 2.0, "p99_ms": 5.0},
                            B: {"processed": 10, "errors": 0, "avg_ms": 6.0, "p99_ms": 9.0},
                            C: {"processed": 0, "errors": 0, "avg_ms": 0.0, "p99_ms": 0.0}}
    s = build_status(snapshot(workers, PLAN4))
    assert s["health"] == {"status": "healthy", "healthy_workers": 4, "total_workers": 4,
                           "health_percentage": 100.0, "reasons": []}
    assert exit_code(s) == 0
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
    assert s["warnings"] == [] and s["sessions"] == [] and s["master_expected"] is None
    json.dumps(s)  # --json must not fail
    assert summary_line(s) == "healthy: 4/4 workers healthy (100.0%), 4 msg/s"


def test_one_killed_worker_of_four_is_degraded():
    s = build_status(snapshot(four(), PLAN4, dead={1002}))
    assert s["health"]["status"] == "degraded" and exit_code(s) == 1
    assert s["health"]["reasons"] == ["instance 2 is not alive: dead (pid 1002 is gone)"]
    w2 = s["workers"][1]
    assert (w2["alive"], w2["state"], w2["rate"], w2["processed"], w2["healthy"]) == \
        (False, "dead", 0.0, 20, False)
    assert s["warnings"] == s["health"]["reasons"]


def test_a_route_its_only_owner_left_is_unhealthy():
    s = build_status(snapshot(four(), PLAN4, dead={1003}))  # 3 alone holds single:c
    assert s["health"]["status"] == "unhealthy" and exit_code(s) == 3
    assert s["health"]["reasons"] == [
        "route single:c is held by no alive, connected worker (planned on 3)",
        "instance 3 is not alive: dead (pid 1003 is gone)"]
    by_route = {r["route"]: r for r in s["routes"]}
    assert by_route[C]["uncovered"] and by_route[C]["holding"] == []
    assert by_route[A]["holding"] == by_route[A]["serving"] == [1, 2, 4]
    assert not by_route[A]["mismatch"] and not by_route[A]["uncovered"]


def test_one_instance_down_of_ten_is_still_degraded():
    plan = Plan({i: (A,) for i in range(1, 11)})
    workers = {i: health(i, routes=(A,)) for i in range(1, 11)}
    s = build_status(snapshot(workers, plan, dead={1010}))
    assert s["health"]["health_percentage"] == 90.0  # the guide's "healthy" line
    assert s["health"]["status"] == "degraded" and exit_code(s) == 1
    assert s["health"]["reasons"] == ["instance 10 is not alive: dead (pid 1010 is gone)"]


def test_missing_and_stale_instances_make_it_unhealthy():
    workers = four()
    del workers[2]                                   # cleanly stopped: file removed
    workers[4] = health(4, age=30, routes=(A,))      # hung: pid there, file old
    s = build_status(snapshot(workers, PLAN4))
    states = {w["instance"]: w["state"] for w in s["workers"]}
    assert states == {1: "running", 2: "missing", 3: "running", 4: "stale"}
    assert s["health"]["status"] == "unhealthy" and exit_code(s) == 3
    assert s["health"]["reasons"] == [
        "only 2 of 4 planned workers are healthy (50.0%; unhealthy below 70%)",
        "instance 2 is not alive: missing (no health file)",
        "instance 4 is not alive: stale (health file not updated for 30.0s)"]


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
    assert s["health"]["status"] == "healthy" and s["master_expected"] == "master.json exists"
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


def test_a_dead_master_is_unhealthy():
    master = {"pid": 50, "backend": "processes", "updated_at": NOW - 120, "instances": [1]}
    s = build_status(snapshot({1: health(1)}, master=master, dead={50}))
    assert (s["master"]["alive"], s["master"]["state"]) == (False, "dead")
    assert s["health"]["status"] == "unhealthy" and exit_code(s) == 3
    assert s["health"]["reasons"] == [
        "master (pid 50) is not running: master.json last updated 120s ago"]
    assert "master: pid 50 NOT RUNNING" in render_table(s)


def test_a_hung_master_is_unhealthy():
    master = {"pid": 50, "backend": "processes", "updated_at": NOW - 30, "instances": [1]}
    s = build_status(snapshot({1: health(1)}, master=master))  # pid there, file old
    assert (s["master"]["state"], exit_code(s)) == ("stale", 3)
    assert s["health"]["reasons"] == [
        "master (pid 50) is not responding: master.json last updated 30s ago"]
    assert "master: pid 50 NOT RESPONDING" in render_table(s)


@pytest.mark.parametrize("source, units, why", [
    ("plan.json", None, "plan.json exists"),
    ("standalone", {1: UnitState(1, "loaded", "active", "running", main_pid=1001)},
     "routemq-worker@ units exist")])
def test_a_master_is_expected_without_master_json(source, units, why):
    s = build_status(snapshot({1: health(1, routes=(A,))}, Plan({1: (A,)}), units=units,
                              source=source))
    assert s["master_expected"] == why and s["master"] is None
    assert s["health"]["reasons"] == [f"no master is running: {why} but there is no "
                                      f"master.json"]
    assert exit_code(s) == 3
    assert f"master: NOT RUNNING ({why}; no master.json)" in render_table(s)


def test_systemd_units_decide_with_the_health_files():
    units = {1: UnitState(1, "loaded", "active", "running", restarts=2, main_pid=1001,
                          active_since=400.0),
             2: UnitState(2, "loaded", "failed", "failed", restarts=5),
             3: UnitState(3, "loaded", "active", "running", main_pid=2003, active_since=499.0)}
    workers = {1: health(1, routes=(A,)), 2: health(2)}  # 2: the file its crash left; 3: none yet
    s = build_status(snapshot(workers, Plan({1: (A,), 2: (A,), 3: (A,)}), units=units))
    rows = {w["instance"]: w for w in s["workers"]}
    assert (rows[1]["alive"], rows[1]["restarts"], rows[1]["unit"]["active_for_s"]) == \
        (True, 2, 100.0)
    assert (rows[2]["alive"], rows[2]["state"], rows[2]["restarts"]) == (False, "failed", 5)
    assert (rows[3]["alive"], rows[3]["state"], rows[3]["pid"]) == (False, "starting", 2003)
    assert s["backend"] == "systemd"
    # 3 is ready (systemd says active) for 1 s, its first health file is still to come.
    assert (rows[3]["healthy"], rows[3]["state_for_s"]) == (True, 1.0)
    assert "instance 3 is starting (starting for 1s)" in s["warnings"]
    assert s["health"]["status"] == "unhealthy" and exit_code(s) == 3
    assert s["health"]["reasons"] == [  # the master says why; 2 of 3 (< 70 %) goes unsaid
        "no master is running: routemq-worker@ units exist but there is no master.json",
        "instance 2 is not alive: failed"]


def test_without_a_plan_the_health_files_say_what_is_planned():
    s = build_status(snapshot({1: health(1), 2: health(2)}))
    assert s["plan_source"] == "health files" and s["health"]["total_workers"] == 2
    assert all(r["planned"] is None for r in s["routes"])


def test_nothing_at_all():
    s = build_status(snapshot({}, notes=["runtime directory /run/routemq does not exist"]))
    assert s["health"]["status"] == "unhealthy" and exit_code(s) == 3
    assert s["health"]["reasons"] == ["no worker is planned or running"]
    assert s["warnings"] == ["no worker is planned or running",
                             "runtime directory /run/routemq does not exist"]
    assert "no workers planned or running" in render_table(s)
    assert "master: none (standalone workers)" in render_table(s)


def test_table_has_the_dashboard_columns():
    table = render_table(build_status(snapshot(four(), PLAN4, dead={1003})))
    lines = table.splitlines()
    assert lines[:3] == [
        "RouteMQ unhealthy: 3/4 workers healthy (75.0%), 3 msg/s, 2 warnings",
        "  - route single:c is held by no alive, connected worker (planned on 3)",
        "  - instance 3 is not alive: dead (pid 1003 is gone)"]
    assert "warnings:" not in table  # both are reasons, said once at the top
    header = next(line for line in lines if line.startswith("INST"))
    for column in ("PID", "ALIVE", "STATE", "RESTARTS", "CONN", "MSG/S", "PROCESSED", "ERRORS",
                   "AVG MS", "P99 MS", "INFLIGHT", "RSS MB", "CPU %", "ROUTES"):
        assert column in header
    row3 = next(line for line in lines if line.startswith("3 "))
    assert row3.split()[:4] == ["3", "1003", "no", "dead"]
    assert "CPU % is the average since the worker started" in table
    routes = {line.split()[0]: line.split()[1:] for line in lines
              if line.startswith(("shared:", "single:"))}
    assert routes == {"shared:a/{id}": ["1,2,3,4", "1,2,4", "0", "0", "0", "0", "3/4"],
                      "shared:b": ["1", "1", "0", "0", "0", "0", "ok"],
                      "single:c": ["3", "-", "0", "0", "0", "0", "NO", "WORKER"]}


def test_routes_sum_the_workers_figures_retries_included():
    workers = four()
    workers[1]["routes"] = {A: {"processed": 30, "errors": 1, "retries": 4, "retrying": 2}}
    workers[2]["routes"] = {A: {"processed": 5, "errors": 0, "retries": 1, "retrying": 0}}
    s = build_status(snapshot(workers, PLAN4))
    row = next(r for r in s["routes"] if r["route"] == A)
    assert (row["processed"], row["errors"], row["retries"], row["retrying"]) == (35, 1, 5, 2)
    line = next(line for line in render_table(s).splitlines() if line.startswith(A))
    assert line.split()[3:7] == ["35", "1", "5", "2"]
    metrics = render_metrics(s).splitlines()
    retries = [m for m in metrics if m.startswith("routemq_route_retries_total{")]
    assert any('worker="1"' in m and m.endswith(" 4") for m in retries), retries
    assert any(m.startswith("routemq_route_retrying{") and 'worker="1"' in m
               and m.endswith(" 2") for m in metrics)


# --- health is what an operator means: each rule --------------------------------------------

def test_the_module_examples_hold():
    assert doctest.testmod(routemq.status).failed == 0


def test_no_worker_connected_is_unhealthy_even_when_all_are_alive():
    workers = {i: health(i, routes=PLAN4.assignments[i], connected=False,
                         state="waiting for broker") for i in range(1, 5)}
    s = build_status(snapshot(workers, PLAN4))
    assert s["overview"]["alive_workers"] == 4 and s["overview"]["connected_workers"] == 0
    assert s["health"]["healthy_workers"] == 0
    assert s["health"]["status"] == "unhealthy" and exit_code(s) == 3
    # One line for the broker, one per instance: the routes and the share follow from it.
    assert s["health"]["reasons"] == ["no worker is connected to the broker"] + [
        f"instance {i} is not connected to the broker (waiting for broker)" for i in range(1, 5)]
    assert all(r["uncovered"] for r in s["routes"])
    assert {r["route"]: _route_cell(render_table(s), r["route"]) for r in s["routes"]} == \
        {A: "DISCONNECTED", B: "DISCONNECTED", C: "DISCONNECTED"}


def test_a_route_whose_holders_are_all_disconnected_is_unhealthy():
    workers = four()
    workers[1] = health(1, routes=(A, B), connected=False, state="reconnecting")
    s = build_status(snapshot(workers, PLAN4))  # B is on 1 only; A on 2, 3 and 4 as well
    assert s["health"]["status"] == "unhealthy" and exit_code(s) == 3
    assert s["health"]["reasons"] == [
        "route shared:b is held by no alive, connected worker (planned on 1; held by 1, not "
        "connected to the broker)",
        "instance 1 is not connected to the broker (reconnecting)"]
    assert _route_cell(render_table(s), B) == "DISCONNECTED"
    assert _route_cell(render_table(s), A) == "3/4"


def _route_cell(table, route):
    return next(line.split()[-1] for line in table.splitlines() if line.startswith(route))


@pytest.mark.parametrize("connected", [False, None, "yes", 1])
def test_only_a_worker_that_says_connected_true_is_connected(connected):
    workers = four()
    workers[2]["connected"] = connected
    s = build_status(snapshot(workers, PLAN4))
    assert s["workers"][1]["connected"] is False and not s["workers"][1]["healthy"]
    assert s["health"]["status"] == "degraded" and exit_code(s) == 1
    assert s["health"]["reasons"] == [
        "instance 2 is not connected to the broker (running)"]


@pytest.mark.parametrize("state, reason", [
    ("reconnecting", "instance 2 is not connected to the broker (reconnecting)"),
    ("stuck", "instance 2 has a handler stuck past handler_timeout"),
    ("draining", "instance 2 is draining, not running"),
    ("joining", "instance 2 is still joining after 1m40s"),  # started 100 s ago
])
def test_an_alive_instance_not_at_work_degrades(state, reason):
    workers = four()
    workers[2] = health(2, routes=(A,), state=state, connected=state in ("stuck", "draining"))
    s = build_status(snapshot(workers, PLAN4))
    assert s["workers"][1]["alive"] and not s["workers"][1]["healthy"]
    assert s["health"]["status"] == "degraded" and exit_code(s) == 1
    assert s["health"]["reasons"] == [reason]


@pytest.mark.parametrize("extra, healthy", [
    ({"started_at": NOW - 5}, True),                          # joining for 5 s: starting
    ({"started_at": NOW - 31}, False),                        # past STARTUP_GRACE
    ({"started_at": NOW - 300, "state_since": NOW - 3}, True),  # the worker's own clock
    ({"started_at": None}, False),                            # since when: unknown
])
def test_a_starting_instance_has_a_grace_period(extra, healthy):
    workers = four()
    workers[4] = health(4, routes=(A,), state="joining", connected=False, **extra)
    s = build_status(snapshot(workers, PLAN4))
    assert s["workers"][3]["healthy"] is healthy
    assert s["health"]["status"] == ("healthy" if healthy else "degraded")
    if healthy:
        assert any(w.startswith("instance 4 is starting (joining for ") for w in s["warnings"])
    else:
        assert s["health"]["reasons"][0].startswith("instance 4 is still joining")


def test_an_instance_outside_the_plan_warns_but_does_not_decide():
    workers = four()
    workers[7] = health(7, connected=False, state="reconnecting")
    s = build_status(snapshot(workers, PLAN4))
    assert s["health"]["status"] == "healthy" and s["health"]["reasons"] == []
    assert s["warnings"] == ["instance 7 is running but not in the plan",
                             "instance 7 is not connected to the broker (reconnecting)"]


SESSION = {"state": "draining", "since": NOW - 12, "detail": "resumed instance 2's session"}


def test_an_undrained_session_is_unhealthy_with_its_reason():
    master = master_doc(sessions={"2": dict(SESSION), "5": {"state": "failed",
                                                           "since": NOW - 75}})
    s = build_status(snapshot(four(), PLAN4, master=master))
    assert s["health"]["status"] == "unhealthy" and exit_code(s) == 3
    assert s["health"]["reasons"] == [
        "instance 2 is out of the plan but its broker session has not been drained "
        "(draining for 12s: resumed instance 2's session)",
        "instance 5 is out of the plan but its broker session has not been drained "
        "(failed for 1m15s)"]
    assert s["sessions"][0] == {"instance": 2, "state": "draining", "since": NOW - 12,
                                "age_s": 12.0, "detail": "resumed instance 2's session"}
    assert s["overview"]["undrained_sessions"] == 2
    table = render_table(s).splitlines()
    assert table[1].startswith("  - instance 2 is out of the plan")
    at = table.index("broker sessions not drained yet (instances out of the plan):")
    assert table[at + 2].split()[:3] == ["2", "draining", "12s"]
    assert table[at + 3].split() == ["5", "failed", "1m15s", "-"]


@pytest.mark.parametrize("sessions, reasons, warning", [
    (None, [], None),                                 # an older master: no key
    ({}, [], None),
    ({"3": "junk"}, ["instance 3 is out of the plan but its broker session has not been "
                     "drained (unknown)"],            # unreadable entry: still a session
     "master.json: sessions: 3: not an object"),
    ({"3": {"state": 7, "since": "soon", "detail": "a\nb" + "x" * 300}},
     ["instance 3 is out of the plan but its broker session has not been drained (unknown: "
      "a)"], "master.json: sessions: 3: ignored invalid state (want a string), since (want a "
             "number >= 0)"),
    (["2"], [], "master.json: ignored invalid sessions (want an object)"),
])
def test_sessions_from_any_master_json(sessions, reasons, warning):
    master = master_doc() if sessions is None else master_doc(sessions=sessions)
    s = build_status(snapshot(four(), PLAN4, master=master))
    assert s["health"]["reasons"] == reasons
    assert s["health"]["status"] == ("unhealthy" if reasons else "healthy")
    assert (warning in s["warnings"]) if warning else s["warnings"] == reasons
    json.dumps(s)


def test_a_dead_master_and_a_stranded_session_come_first_and_once():
    master = master_doc(updated_at=NOW - 60, sessions={"4": dict(SESSION)})
    workers = four()
    del workers[4]
    s = build_status(snapshot(workers, PLAN4, master=master, dead={50}))
    assert s["health"]["reasons"] == [
        "master (pid 50) is not running: master.json last updated 60s ago",
        "instance 4 is out of the plan but its broker session has not been drained "
        "(draining for 12s: resumed instance 2's session)",
        "instance 4 is not alive: missing (no health file)"]
    assert len(s["warnings"]) == len(set(s["warnings"]))
    doc = json.loads(json.dumps(s))
    assert doc["health"]["reasons"] == s["health"]["reasons"]


def test_the_masters_copy_of_a_plan_warning_is_said_once():
    warning = "route 'x' wants 8 workers but only 1 instances exist; it runs on 1"
    s = build_status(snapshot({1: health(1, routes=(A,))}, Plan({1: (A,)}, warnings=(warning,)),
                              master=master_doc(instances=[1], warnings=[warning])))
    assert s["warnings"] == [warning] and s["health"]["status"] == "healthy"


def test_a_failed_reload_is_degraded_and_a_rollout_is_said():
    master = {"pid": 50, "backend": "systemd", "updated_at": NOW - 1, "instances": [1],
              "reload": {"ok": False, "at": NOW - 5, "error": "router module x.py: SyntaxError"},
              "rollout": {"instance": 2, "step": "stop", "done": [1], "pending": [3]}}
    s = build_status(snapshot({1: health(1)}, master=master))
    assert s["health"]["status"] == "degraded" and exit_code(s) == 1
    assert s["health"]["reasons"] == ["the last reload failed, the previous version keeps "
                                      "running: router module x.py: SyntaxError"]
    assert "reload in progress: restarting instance 2 (step stop); done [1], next [3]" in \
        s["warnings"]
    assert ", reload in progress" in render_table(s)
    master["reload"] = {"ok": True, "at": NOW - 5, "routes": 3}
    assert build_status(snapshot({1: health(1)}, master=master))["health"]["status"] == \
        "healthy"


def test_dead_letter_counts_per_route():
    snap = snapshot({1: health(1, routes=(A,))}, plan=Plan({1: (A,)}))
    snap.dead_letter_spool, snap.dead_letters = "/var/lib/routemq/dead-letters", {
        "b": 1, "a/{id}": 3}
    status = build_status(snap)
    assert status["dead_letters"] == {"spool": "/var/lib/routemq/dead-letters",
                                      "routes": {"a/{id}": 3, "b": 1}}
    assert status["overview"]["dead_letters"] == 4
    json.dumps(status)
    text = render_table(status)
    assert "dead letters in /var/lib/routemq/dead-letters" in text
    assert any(line.split() == ["a/{id}", "3"] for line in text.splitlines())
    snap.dead_letters = {}
    assert "dead letters" not in render_table(build_status(snap))
