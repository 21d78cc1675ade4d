"""`routemq run`: the master's plan seen from the messages, restarts, scaling by hand and by
the autoscaler, all against a real mosquitto with real worker processes."""
import collections
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers import (assert_all_handled, routes_by_key, tally, wait_until,
                           workers_by_instance)
from tests.integration.broker import publish_many
from tests.integration.workers import AckedStream, Run

ABC = Path(__file__).resolve().parent / "apps" / "abc"


def work_stream(publisher, broker, rate: float) -> AckedStream:
    """A QoS 1 stream of `rate` messages a second on work/0..4, numbered from 0."""
    return AckedStream(publisher(broker.host, broker.port), ["work"], rate)


def status_of(run, processed=0):
    """`routemq status --json`: (document, {instance: worker row}, {route: row}), once the
    health files (written every second) count at least `processed` messages."""
    doc, _ = run.wait_status(lambda d: d["overview"]["processed"] >= processed,
                             f"{processed} processed in the health files")
    return doc, workers_by_instance(doc), routes_by_key(doc)


def wait_all_handled(run, acked, timeout):
    """Every acknowledged message of the stream handled within `timeout` seconds."""
    rows = run.wait_handled(acked, timeout)
    assert_all_handled(rows, acked)
    return rows


def test_plan_seen_from_the_messages(make_run, broker):
    """A (shared, 1 worker), B (shared, 3), C (not shared) on 4 instances."""
    run = make_run(4, app=ABC).start_run()
    run.wait_settled([1, 2, 3, 4])
    pairs = []
    for seq in range(600):
        pairs += [(f"a/{seq % 5}", seq), (f"b/{seq % 5}", seq)]
    publish_many(broker, [(t, f'{{"seq":{s}}}') for t, s in sorted(pairs, key=lambda p: p[0])])
    publish_many(broker, "c/1", 600)  # one publisher, so this is the order to keep
    rows = run.wait_processed(1800, timeout=60)
    by_route = collections.defaultdict(list)
    for worker, route, topic, seq in rows:
        by_route[route].append((worker, int(seq)))
    for route, want in (("a", 1), ("b", 3), ("c", 1)):
        workers = {w for w, _ in by_route[route]}
        assert len(workers) == want, (route, collections.Counter(w for w, _ in by_route[route]))
        assert sorted(s for _, s in by_route[route]) == list(range(600)), route
    assert [s for _, s in by_route["c"]] == list(range(600))  # in publish order
    # and `routemq status` says what happened
    doc, workers, routes = status_of(run, processed=1800)
    assert doc["health"]["status"] == "healthy" and sorted(workers) == [1, 2, 3, 4]
    assert all(w["alive"] and w["state"] == "running" for w in workers.values())
    assert sum(w["processed"] for w in workers.values()) == 1800
    for key, route, want in (("shared:a/{id}", "a", 1), ("shared:b/{id}", "b", 3),
                             ("single:c/{id}", "c", 1)):
        assert len(routes[key]["holding"]) == want and not routes[key]["mismatch"]
        assert set(routes[key]["holding"]) == {w for w, _ in by_route[route]}
    assert run.stop_run() == 0
    assert not run.healths() and not (run.runtime / "master.json").exists()


def test_run_restarts_a_killed_worker_and_loses_nothing(make_run, broker, publisher):
    run = make_run(4).start_run()
    docs = run.wait_settled([1, 2, 3, 4])
    victim = docs[2]["pid"]
    with work_stream(publisher, broker, rate=500) as stream:
        run.wait_more_handled(1000, timeout=30)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: run.master().get("restarts") == {"2": 1}, 30,
                   "routemq run restarting worker 2", abort=run.running())
        run.wait_more_handled(100, [2])  # the stream goes on through the restart
    acked = stream.stop()
    rows = wait_all_handled(run, acked, timeout=90)
    docs = run.wait_settled([1, 2, 3, 4])
    assert docs[2]["pid"] != victim
    assert run.master()["restarts"] == {"2": 1}
    # status: the restart is counted; the survivors' counters match their records
    per_worker, _ = tally(rows)
    survivors = sum(per_worker[i] for i in (1, 3, 4))
    doc, _ = run.wait_status(lambda d: sum(workers_by_instance(d)[i]["processed"]
                                           for i in (1, 3, 4)) >= survivors,
                             f"the survivors' {survivors} messages in the health files")
    workers = workers_by_instance(doc)
    assert doc["health"]["status"] == "healthy"
    assert workers[2]["restarts"] == 1 and workers[2]["pid"] == docs[2]["pid"]
    assert [workers[i]["restarts"] for i in (1, 3, 4)] == [0, 0, 0]
    assert [workers[i]["processed"] for i in (1, 3, 4)] == [per_worker[i] for i in (1, 3, 4)]
    assert run.stop_run() == 0


def test_scaling_by_hand_2_4_2_during_a_stream(make_run, broker, publisher):
    run = make_run(2).start_run()
    run.wait_settled([1, 2])
    with work_stream(publisher, broker, rate=300) as stream:
        run.wait_more_handled(100)
        hand = [run.start(3), run.start(4)]  # `routemq worker --instance 3|4`, as an operator
        run.wait_settled([1, 2, 3, 4])
        run.wait_more_handled(1, [3, 4], timeout=10)  # the new workers get messages
        doc, workers, routes = status_of(run)
        assert doc["health"]["status"] == "healthy" and sorted(workers) == [1, 2, 3, 4]
        assert routes["shared:work/{id}"]["holding"] == [1, 2, 3, 4]
        for worker in hand:
            assert worker.stop() == 0  # SIGTERM: hand over, drain, leave the plan
        run.wait_settled([1, 2])
        run.wait_more_handled(100, [1, 2])  # the stream goes on, on the two
    wait_all_handled(run, stream.stop(), timeout=60)
    doc, workers, routes = status_of(run)  # the stopped ones are gone, not "dead"
    assert doc["health"]["status"] == "healthy" and sorted(workers) == [1, 2]
    assert routes["shared:work/{id}"]["holding"] == [1, 2]
    assert run.stop_run() == 0


def test_autoscaler_follows_the_load(make_run, broker, publisher):
    run = make_run(2, ROUTEMQ_AUTOSCALE="true", MIN_WORKERS="2", MAX_WORKERS="4",
                   ROUTEMQ_TARGET_RATE_PER_WORKER="40", ROUTEMQ_SCALE_INTERVAL="1",
                   ROUTEMQ_SCALE_COOLDOWN="3")
    run.start_run()
    run.wait_settled([1, 2])
    with work_stream(publisher, broker, rate=300) as stream:  # 4 workers wanted
        run.wait_settled([1, 2, 3, 4], timeout=60)
        run.wait_more_handled(1, [3, 4], timeout=10)  # the new workers get messages
    acked = stream.stop()
    run.wait_settled([1, 2], timeout=60)  # idle: back to min_workers
    assert "autoscaler" in run.output() and run.master()["autoscaler"]["target"] == 2
    wait_all_handled(run, acked, timeout=60)
    doc, workers, _ = status_of(run)
    assert sorted(workers) == [1, 2] and doc["health"]["status"] == "healthy"
    assert run.stop_run() == 0


def test_master_alone_as_systemd_runs_it(broker, tmp_path):
    """`routemq master` and `routemq worker` started separately, as the units are: READY=1
    once the plan is written, STATUS=, watchdog pings, SIGHUP reload, SIGTERM stop."""
    from tests.integration.notify_socket import NotifySocket
    run = Run(broker, tmp_path / "fleet", 2)
    notify = NotifySocket(tmp_path / "notify.sock")
    env = run.env(0, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="600000")
    master = subprocess.Popen([sys.executable, "-m", "routemq", "master"], env=env,
                              stdout=open(tmp_path / "master.log", "wb"),
                              stderr=subprocess.STDOUT)
    try:
        notify.wait_for("READY=1")
        assert (run.runtime / "plan.json").exists()
        for i in (1, 2):
            run.start(i)
        run.wait_settled([1, 2])
        wait_until(lambda: len(notify.times("WATCHDOG=1")) >= 3, 10, "3 WATCHDOG=1")
        wait_until(lambda: any(m.startswith("STATUS=2/2 workers alive; plan generation")
                               for _, m in notify.messages), 10, "STATUS=2/2 workers alive",
                   explain=lambda: str(notify.messages[-10:]))
        master.send_signal(signal.SIGHUP)
        notify.wait_for("RELOADING=1")
        master.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1")
        assert master.wait(20) == 0
        assert not (run.runtime / "master.json").exists()
        assert (run.runtime / "plan.json").exists()  # workers keep running on it
        publish_many(broker, "work/1", 100)
        assert len(run.wait_processed(100, "work", timeout=20)) >= 100
    finally:
        if master.poll() is None:
            master.kill()
        run.stop_all()
        notify.close()


def test_a_second_master_on_the_same_runtime_directory_is_refused(make_run, broker):
    run = make_run(1).start_run()
    run.wait_settled([1])
    second = subprocess.run([sys.executable, "-m", "routemq", "master"], env=run.env(0),
                            capture_output=True, text=True, timeout=30)
    assert second.returncode == 1 and "another master" in second.stdout + second.stderr
    run.wait_settled([1])  # the first one is untouched
    assert run.stop_run() == 0


def test_a_route_that_moved_away_while_an_instance_was_down_is_not_run_twice(make_run, broker):
    """The instance's persistent session still holds the plain subscription of a route the
    master moved while it was stopped; after its restart only the route's owner runs it."""
    run = make_run(2).start_run()
    run.wait_settled([1, 2])
    [owner] = [i for i, d in run.healths().items() if "single:ordered/{id}" in d["routes_held"]]
    other = 3 - owner
    run.stop_instance(owner)  # a clean stop: hand over, drain, exit
    docs = run.wait_settled([other])
    assert "single:ordered/{id}" in docs[other]["routes_held"]
    run.start(owner)  # by hand, same client id: its session comes back with the old filter
    docs = run.wait_settled([1, 2])
    assert "single:ordered/{id}" not in docs[owner]["routes_held"]
    publish_many(broker, "ordered/1", 200)
    run.wait_processed(200, "ordered", timeout=30)
    run.wait_health_writes([1, 2], 2)  # time passes in both: a second runner shows by then
    rows = run.processed("ordered")
    per_worker, per_message = tally(rows)
    assert set(per_worker) == {other} and len(per_message) == 200 and len(rows) == 200
    assert run.stop_run() == 0
