"""Nothing lost in the product's own routine operations (issue 10): a join, the autoscaler
going up and down, a health file removed once, a dead instance planned out, a 30 s SIGSTOP
under `routemq run`'s own broker.

Each test counts the publisher's ACKNOWLEDGED messages (QoS 1, PUBACK received: see
AckedPublisher) against what the handlers recorded, and wants every one of them handled at
least once (duplicates are allowed and reported). The handlers of the `moves` application take
200 ms and max_inflight bounds each worker's concurrency, so deliveries are in flight, and
queued at the broker, whenever the plan changes.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import pytest

from tests.helpers import handled_seqs, lost, wait_until
from tests.integration.broker import AckedPublisher, Mosquitto
from tests.integration.workers import AckedStream, EmbeddedRun, Fleet, Run, cmdline

MOVES = Path(__file__).resolve().parent / "apps" / "moves"
SHARED = [f"m{n}" for n in range(6)] + ["pair"]
ALL = SHARED + ["plain"]
# 200 ms a message, at most 8 at a time: a worker handles 40 messages/s at most, so a stream
# above that queues at the broker for the route's owner (where a move used to lose it).
SLOW = {"TEST_SLOW": "0.2", "ROUTEMQ_MAX_INFLIGHT": "8"}
# Messages at once on top of a light stream: the queue a plan change meets. A worker reads
# ahead up to its dispatcher's high water (256 waiting), so well over 2 x 256 of them wait at
# the broker, in the owners' sessions.
BURST = 1200
UNROUTED = "no route held by this worker"


@pytest.fixture
def embedded_run(tmp_path: Path) -> Iterator[EmbeddedRun]:
    """`routemq run --workers 2` of the moves application, with its own private broker."""
    run = EmbeddedRun(tmp_path / "embedded", 2, app=MOVES,
                      **{**SLOW, "ROUTEMQ_MAX_INFLIGHT": "64"})  # 320/s a worker
    yield run
    run.cleanup()


def unrouted_lines(fleet: Fleet) -> int:
    """Log lines of the run and its workers that acked a delivery as unrouted."""
    return sum(path.read_text(errors="replace").count(UNROUTED)
               for path in fleet.dir.glob("*.stdout"))


def assert_none_lost(fleet: Fleet, publisher: AckedPublisher, acked: set[int],
                     timeout: float, note: str = "") -> None:
    """Every acknowledged message handled within `timeout` seconds from now."""
    assert len(acked) > 500, f"only {len(acked)} of {publisher.sent} messages acknowledged"
    rows = fleet.wait_handled(acked, timeout)
    missing, account = lost(rows, acked, publisher.topics())
    assert not missing, (f"{account}; {unrouted_lines(fleet)} '{UNROUTED}' log lines; "
                         f"PUBACK reason codes {publisher.reasons}. {note}")


def slow_run(make_run: Callable[..., Run], workers: int, **config: str) -> Run:
    run = make_run(workers, app=MOVES, **{**SLOW, **config}).start_run()
    run.wait_settled(range(1, workers + 1))
    return run


def test_a_join_during_a_stream_loses_nothing(make_run, broker: Mosquitto, publisher):
    run = slow_run(make_run, 2)
    pub = publisher(broker.host, broker.port)
    with AckedStream(pub, ALL, rate=40) as stream:
        wait_until(lambda: len(run.processed()) >= 100, 20, "the stream handled")
        stream.burst(BURST)
        run.start(3)  # `routemq worker --instance 3` by hand, as an operator
        docs = run.wait_settled([1, 2, 3])
        assert docs[3]["routes_held"], "no route moved to the new instance"
        run.wait_more_handled(200, [3])
    acked = stream.stop()
    assert_none_lost(run, pub, acked, timeout=60,
                     note=f"routes moved to instance 3: {docs[3]['routes_held']}")
    assert run.stop_run() == 0


def test_autoscaler_up_and_down_during_a_stream_loses_nothing(make_run, broker: Mosquitto,
                                                               publisher):
    run = slow_run(make_run, 2, ROUTEMQ_AUTOSCALE="true", MIN_WORKERS="2", MAX_WORKERS="4",
                   ROUTEMQ_TARGET_RATE_PER_WORKER="15", ROUTEMQ_SCALE_INTERVAL="1",
                   ROUTEMQ_SCALE_COOLDOWN="3")
    pub = publisher(broker.host, broker.port)
    # Heavy: a burst and a stream at what 2 workers handle (80/s, calling for 4 at 15/s
    # each): the routes that move to the new instances have a queue at the broker.
    with AckedStream(pub, ALL, rate=80) as stream:
        stream.burst(BURST)
        run.wait_settled([1, 2, 3, 4], timeout=60)
        run.wait_more_handled(50, [3, 4])
        stream.rate = 20  # light (20/15 after the cpu factor: 2), yet still in flight
        run.wait_settled([1, 2], timeout=60)
        run.wait_more_handled(60)  # after the scale-down
    acked = stream.stop()
    assert "autoscaler" in run.output() and run.master()["autoscaler"]["target"] == 2
    assert_none_lost(run, pub, acked, timeout=60)
    assert run.stop_run() == 0


def test_a_health_file_removed_once_loses_nothing(make_run, broker: Mosquitto, publisher):
    run = slow_run(make_run, 2)
    pub = publisher(broker.host, broker.port)
    generation = run.master()["plan_version"]
    with AckedStream(pub, ALL, rate=40) as stream:
        wait_until(lambda: len(run.processed()) >= 100, 20, "the stream handled")
        stream.burst(BURST)
        health = run.runtime / "workers" / "1.json"
        health.unlink()
        wait_until(health.exists, 10, "worker 1 to rewrite its health file")
        run.wait_settled([1, 2])
        run.wait_more_handled(300)
        run.wait_settled([1, 2])
    acked = stream.stop()
    assert_none_lost(run, pub, acked, timeout=60, note="plan generation "
                     f"{generation} -> {run.master()['plan_version']}")
    assert run.stop_run() == 0


class Sample(NamedTuple):
    """`routemq status` seen at `at` seconds after a kill."""

    at: float
    health: str
    stranded: int  # acknowledged messages older than LAG that no handler has recorded
    sessions: dict[str, object]  # master.json's undrained sessions: instance -> state


def spans(samples: list[Sample]) -> str:
    """Runs of samples alike (health, stranded or not, sessions) as one line each."""
    runs: list[list] = []
    for s in samples:
        key = (s.health, bool(s.stranded), s.sessions)
        if runs and runs[-1][0] == key:
            runs[-1][2], runs[-1][3] = s.at, max(runs[-1][3], s.stranded)
        else:
            runs.append([key, s.at, s.at, s.stranded])
    return "; ".join(f"{a}-{b}s {k[0]}, {n} stranded, sessions {k[2]}"
                     for k, a, b, n in runs)


PLAN_OUT_BOUND = 90.0  # seconds from a kill -9 to every queued message handled (README)
LAG = 5.0  # a message older than this and not handled is stranded (the stream's lag is < 1 s)


def test_a_dead_instance_planned_out_strands_nothing(make_run, broker: Mosquitto, publisher):
    """The systemd shape: `routemq master` alone, workers 1 and 2 as their own processes;
    worker 2 is killed and stays dead (a failed unit)."""
    run = make_run(2, app=MOVES, **{**SLOW, "ROUTEMQ_MAX_INFLIGHT": "16"}).start_master()
    wait_until((run.runtime / "plan.json").exists, 20, "the master's plan",
               abort=run.running())
    for i in (1, 2):
        run.start(i)
    run.wait_settled([1, 2])
    pub = publisher(broker.host, broker.port)
    samples: list[Sample] = []

    def sample(killed_at: float) -> None:
        """`routemq status --json` about once a second, with what was stranded around the
        call: acknowledged, older than LAG, and handled neither before nor after it."""
        start = time.monotonic()
        old = pub.acked(before=start - LAG)
        doc, _ = run.status()
        stranded = old - handled_seqs(run.processed())
        sessions = run.master().get("sessions") or {}
        samples.append(Sample(round(start - killed_at, 1), doc["health"]["status"],
                              len(stranded), {k: v.get("state") for k, v in sessions.items()}))
        time.sleep(max(0.0, start + 1.0 - time.monotonic()))

    try:  # 50/s: what one worker handles (80/s) with room; worker 2's share waits for it
        with AckedStream(pub, ALL, rate=50) as stream:
            wait_until(lambda: len(run.processed()) >= 150, 20, "the stream handled")
            run.procs[2].kill()
            killed_at = time.monotonic()
            while time.monotonic() < killed_at + 30:  # past the plan-out (~20 s)
                sample(killed_at)
        acked = stream.stop()
        while (not acked <= handled_seqs(run.processed())
               and time.monotonic() < killed_at + PLAN_OUT_BOUND):
            sample(killed_at)
        assert_none_lost(run, pub, acked, timeout=max(0.0, killed_at + PLAN_OUT_BOUND -
                                                      time.monotonic()),
                         note=f"{PLAN_OUT_BOUND:.0f}s after the kill; status: "
                              f"{spans(samples)}")
        assert any(s.stranded for s in samples), f"nothing seen stranded: {spans(samples)}"
        lies = [s for s in samples if (s.stranded or s.sessions) and s.health == "healthy"]
        assert not lies, f"status said healthy with messages stranded: {spans(lies)}"
        # and once drained, the session is no longer reported (status can be healthy again)
        wait_until(lambda: not run.master().get("sessions"),
                   max(1.0, killed_at + PLAN_OUT_BOUND - time.monotonic()),
                   "master.json to list no undrained session",
                   explain=lambda: f"it lists {run.master().get('sessions')}")
    finally:
        if run.proc is not None and run.proc.poll() is None:
            run.proc.send_signal(signal.SIGTERM)  # the master ends its drain child, if any
            with contextlib.suppress(subprocess.TimeoutExpired):
                run.proc.wait(30)  # else the fixture's clean-up kills it


def test_a_30s_sigstop_under_the_embedded_broker_loses_nothing(embedded_run: EmbeddedRun,
                                                               publisher):
    """30 s is past `routemq run`'s stall watchdog (10 s): the worker may be killed and
    restarted meanwhile; either way its session queued well over mosquitto's default 1,000."""
    run = embedded_run.start_run()
    address = run.wait_broker()
    docs = run.wait_settled([1, 2])
    # The victim holds the plain route, so both kinds of queue grow at the broker.
    [victim] = [i for i, d in docs.items() if "single:plain/{id}" in d["routes_held"]]
    pid = docs[victim]["pid"]
    pub = publisher(address.host, address.port)
    # 2 shared : 1 plain; about 6,600 shared and 3,300 plain in all.
    with AckedStream(pub, SHARED * 2 + ["plain"] * 7, rate=300) as stream:
        wait_until(lambda: len(run.processed()) >= 300, 20, "the stream handled")
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(30)  # the scenario: the stream goes on, the stopped session's queue grows
        finally:
            # A stall watchdog may have replaced it meanwhile: wake only our worker.
            if "routemq" in cmdline(pid) and "worker" in cmdline(pid):
                os.kill(pid, signal.SIGCONT)
        run.wait_more_handled(100, [victim], timeout=30)
    acked = stream.stop()
    assert_none_lost(run, pub, acked, timeout=90,
                     note=f"instance {victim} (pid {pid}) stopped for 30 s")
    assert run.stop_run() == 0
