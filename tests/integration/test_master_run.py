"""`routemq run`: the master's plan seen from the messages, restarts, scaling by hand and by
the autoscaler, all against a real mosquitto with real worker processes."""
import collections
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.integration.broker import publish_many, seq_payloads
from tests.integration.workers import Run, tally

ABC = Path(__file__).resolve().parent / "apps" / "abc"


@pytest.fixture
def make_run(broker, tmp_path):
    runs = []

    def make(workers, **kwargs):
        run = Run(broker, tmp_path / f"run{len(runs)}", workers, **kwargs)
        runs.append(run)
        return run
    yield make
    for run in runs:
        run.stop_all()
        run.kill_run()


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
    # and what the plan says matches what happened
    plan_routes = run.master()
    assert plan_routes["members"] == [1, 2, 3, 4]
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
        for worker in hand:
            assert worker.stop() == 0  # SIGTERM: hand over, drain, leave the plan
        run.wait_settled([1, 2])
        time.sleep(1)
    sent = stream.sent
    rows = run.wait_processed(sent, "work", timeout=60)
    assert_all_once(rows, sent)
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
    assert run.stop_run() == 0
