"""`routemq run`: the master's plan seen from the messages, restarts, scaling by hand and by
the autoscaler, all against a real mosquitto with real worker processes."""
import collections
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.integration.broker import publish_many, seq_payloads
from tests.integration.workers import Run, tally

ABC = Path(__file__).resolve().parent / "apps" / "abc"


class Stream:
    """A steady QoS 1 stream in the background: `batch` messages on work/<batch number % 7>
    every `pause` seconds, numbered from 0, until stop()."""

    def __init__(self, broker, batch=50, pause=0.1):
        self.broker, self.batch, self.pause = broker, batch, pause
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            topic = f"work/{self.sent // self.batch % 7}"
            self.sent += publish_many(self.broker, topic, seq_payloads(self.batch, self.sent))
            time.sleep(self.pause)

    def __enter__(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(60)
        return self.sent

    def __exit__(self, *exc):
        self.stop()


def assert_all_once(rows, sent):
    _, per_message = tally(rows)
    seqs = {int(seq) for _, seq in per_message}
    missing = set(range(sent)) - seqs
    assert not missing, f"{len(missing)} of {sent} messages lost, e.g. {sorted(missing)[:10]}"


def status_of(run, processed=0, timeout=10.0):
    """`routemq status --json`: (document, {instance: worker row}, {route: row}), once the
    health files (written every second) count at least `processed` messages."""
    deadline = time.monotonic() + timeout
    while True:
        rc, doc = run.status()
        if doc["overview"]["processed"] >= processed or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    workers = {w["instance"]: w for w in doc["workers"]}
    routes = {r["route"]: r for r in doc["routes"]}
    assert rc == {"healthy": 0, "degraded": 1, "unhealthy": 3}[doc["health"]["status"]]
    return doc, workers, routes


def workers_since(run, route, t0_count):
    """Workers that handled `route` messages after the first `t0_count` records."""
    return {w for w, *_ in run.processed(route)[t0_count:]}


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


def test_run_restarts_a_killed_worker_and_loses_nothing(make_run, broker):
    run = make_run(4).start_run()
    docs = run.wait_settled([1, 2, 3, 4])
    victim = docs[2]["pid"]
    with Stream(broker, batch=200, pause=0.05) as stream:
        deadline = time.monotonic() + 30
        while len(run.processed("work")) < 1000 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(victim, signal.SIGKILL)
        time.sleep(3)
    sent = stream.sent
    rows = run.wait_processed(sent, "work", timeout=90)
    assert_all_once(rows, sent)
    docs = run.wait_settled([1, 2, 3, 4])
    assert docs[2]["pid"] != victim
    assert run.master()["restarts"] == {"2": 1}
    # status: the restart is counted; the survivors' counters match their records
    per_worker, _ = tally(rows)
    survivors = sum(per_worker[i] for i in (1, 3, 4))
    deadline = time.monotonic() + 10
    while True:
        doc, workers, _ = status_of(run)
        counted = sum(workers[i]["processed"] for i in (1, 3, 4))
        if counted >= survivors or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert doc["health"]["status"] == "healthy"
    assert workers[2]["restarts"] == 1 and workers[2]["pid"] == docs[2]["pid"]
    assert [workers[i]["restarts"] for i in (1, 3, 4)] == [0, 0, 0]
    assert [workers[i]["processed"] for i in (1, 3, 4)] == [per_worker[i] for i in (1, 3, 4)]
    assert run.stop_run() == 0


def test_scaling_by_hand_2_4_2_during_a_stream(make_run, broker):
    run = make_run(2).start_run()
    run.wait_settled([1, 2])
    with Stream(broker) as stream:
        time.sleep(1)
        hand = [run.start(3), run.start(4)]  # `routemq worker --instance 3|4`, as an operator
        run.wait_settled([1, 2, 3, 4])
        mark = len(run.processed("work"))
        deadline = time.monotonic() + 10
        while not {3, 4} <= workers_since(run, "work", mark):
            assert time.monotonic() < deadline, "new workers got no messages within 10s"
            time.sleep(0.1)
        doc, workers, routes = status_of(run)
        assert doc["health"]["status"] == "healthy" and sorted(workers) == [1, 2, 3, 4]
        assert routes["shared:work/{id}"]["holding"] == [1, 2, 3, 4]
        for worker in hand:
            assert worker.stop() == 0  # SIGTERM: hand over, drain, leave the plan
        run.wait_settled([1, 2])
        time.sleep(1)
    sent = stream.sent
    rows = run.wait_processed(sent, "work", timeout=60)
    assert_all_once(rows, sent)
    doc, workers, routes = status_of(run)  # the stopped ones are gone, not "dead"
    assert doc["health"]["status"] == "healthy" and sorted(workers) == [1, 2]
    assert routes["shared:work/{id}"]["holding"] == [1, 2]
    assert run.stop_run() == 0


def test_autoscaler_follows_the_load(make_run, broker):
    run = make_run(2, ROUTEMQ_AUTOSCALE="true", MIN_WORKERS="2", MAX_WORKERS="4",
                   ROUTEMQ_TARGET_RATE_PER_WORKER="40", ROUTEMQ_SCALE_INTERVAL="1",
                   ROUTEMQ_SCALE_COOLDOWN="3")
    run.start_run()
    run.wait_settled([1, 2])
    with Stream(broker, batch=50, pause=0.1) as stream:  # ~300 msg/s: 4 workers wanted
        run.wait_settled([1, 2, 3, 4], timeout=60)
        mark = len(run.processed("work"))
        deadline = time.monotonic() + 10
        while not {3, 4} <= workers_since(run, "work", mark):
            assert time.monotonic() < deadline, "new workers got no messages within 10s"
            time.sleep(0.1)
    sent = stream.sent
    run.wait_settled([1, 2], timeout=60)  # idle: back to min_workers
    assert "autoscaler" in run.output() and run.master()["autoscaler"]["target"] == 2
    rows = run.wait_processed(sent, "work", timeout=60)
    assert_all_once(rows, sent)
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
        time.sleep(1.0)
        assert len(notify.times("WATCHDOG=1")) >= 3
        assert any(m.startswith("STATUS=2/2 workers alive; plan generation")
                   for _, m in notify.messages)
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
    rows = run.wait_processed(200, "ordered", timeout=30)
    time.sleep(1)  # a second runner would show up by now
    rows = run.processed("ordered")
    per_worker, per_message = tally(rows)
    assert set(per_worker) == {other} and len(per_message) == 200 and len(rows) == 200
    assert run.stop_run() == 0
