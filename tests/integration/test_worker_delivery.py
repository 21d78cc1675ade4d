"""Workers against a real mosquitto: shares, at-least-once across kill -9, broker restarts
and SIGTERM drains. Counted from the messages the handlers recorded, not from the plan."""
import signal
import threading

import pytest

from tests.helpers import tally, wait_until
from tests.integration.broker import publish_spread


def stream_until(fleet, broker, route, n, processed):
    """Publish n messages in the background; return once `processed` were handled."""
    publisher = threading.Thread(target=publish_spread, args=(broker, route, n))
    publisher.start()
    wait_until(lambda: len(fleet.processed(route)) >= processed, 30,
               f"{processed} {route} messages handled", interval=0.02)
    return publisher


@pytest.mark.parametrize("workers", [2, 4])
def test_workers_split_qos1_stream_without_loss_or_duplicates(fleet_factory, broker, workers):
    fleet = fleet_factory(workers)
    fleet.start_all()
    n = 10_000
    publish_spread(broker, "work", n)
    rows = fleet.wait_processed(n, "work")
    per_worker, per_message = tally(rows)
    assert len(per_message) == n, f"lost {n - len(per_message)} messages"
    assert max(per_message.values()) == 1, "duplicates without any failure"
    assert sorted(per_worker) == list(range(1, workers + 1)), per_worker
    assert min(per_worker.values()) > n / workers / 4, f"uneven shares: {per_worker}"
    fleet.stop_all()
    assert all(p.proc.returncode == 0 for p in fleet.procs.values())


def test_kill_9_mid_stream_then_restart_loses_nothing(fleet_factory, broker):
    fleet = fleet_factory(2, TEST_SLOW="0.0005")
    fleet.start_all()
    n = 20_000
    publisher = stream_until(fleet, broker, "slow", n, n // 5)
    victim = fleet.procs[2]
    victim.kill()  # kill -9 in the middle of the stream
    fleet.wait_more_handled(200, [1], route="slow")  # the stream goes on without it
    fleet.start(2).wait_running()  # same instance number: same client id and session
    publisher.join()
    rows = fleet.wait_processed(n, "slow", timeout=120)
    per_worker, per_message = tally(rows)
    missing = n - len(per_message)
    duplicates = sum(c - 1 for c in per_message.values())
    print(f"kill -9: processed {len(rows)} deliveries, {duplicates} duplicates, "
          f"{missing} missing; per worker {dict(per_worker)}")
    assert missing == 0
    assert per_worker[2] > 0 and per_worker[1] > 0


def wait_reconnected(fleet, timeout=30):
    def reconnected(h):
        return h.get("reconnects", 0) >= 1 and h.get("connected") and h.get("state") == "running"
    wait_until(lambda: all(reconnected(p.health() or {}) for p in fleet.procs.values()), timeout,
               "every worker reconnected", interval=0.05,
               explain=lambda: str({p.instance: p.health() for p in fleet.procs.values()}))


def test_broker_restart_mid_stream_loses_nothing(fleet_factory, broker):
    fleet = fleet_factory(2, TEST_SLOW="0.01", ROUTEMQ_MAX_INFLIGHT="4")
    fleet.start_all()
    publish_spread(broker, "slow", 3000, start=0)
    in_flight = 3000 - len(fleet.processed("slow"))
    broker.stop()  # persistence on: sessions, queued and in-flight messages are saved
    broker.start()
    # mosquitto 2.0.x does not restore *shared* subscriptions from its database (plain ones
    # it does), so a message published before the workers resubscribed has no subscriber
    # at the broker; the workers must reconnect and resubscribe by themselves.
    wait_reconnected(fleet)
    publish_spread(broker, "slow", 3000, start=3000)
    rows = fleet.wait_processed(6000, "slow", timeout=90)
    _, per_message = tally(rows)
    print(f"broker restart: {in_flight} messages queued or in flight at the stop")
    assert in_flight > 0  # the restart really happened mid-stream
    assert len(per_message) == 6000


def test_sigterm_handles_what_the_broker_had_queued_for_the_stopping_worker(fleet_factory,
                                                                          broker):
    """Slow handlers and a small in-flight window make the broker queue most of a burst in
    each worker's session. A standalone worker stopped then unsubscribes its share, yet the
    broker still delivers what it had queued for it: the worker handles that too (nobody
    else will) instead of leaving it in its session."""
    fleet = fleet_factory(2, TEST_SLOW="0.05", ROUTEMQ_MAX_INFLIGHT="4")
    fleet.start_all()
    n = 600
    publish_spread(broker, "slow", n)  # all acknowledged: queued in the two sessions
    wait_until(lambda: len(fleet.processed("slow")) >= 20, 30, "the first messages handled")
    stopping = fleet.procs[1]
    stopping.signal(signal.SIGTERM)
    assert stopping.wait(60) == 0
    rows = fleet.wait_processed(n, "slow", timeout=120)
    per_worker, per_message = tally(rows)
    assert len(per_message) == n, f"lost {n - len(per_message)}"
    assert per_worker[1] > 20 and per_worker[2] > 20, per_worker


def test_sigterm_drains_in_flight_and_the_rest_goes_to_the_other_worker(fleet_factory, broker):
    fleet = fleet_factory(2, TEST_SLOW="0.01")
    fleet.start_all()
    n = 4000
    publisher = stream_until(fleet, broker, "slow", n, 200)
    stopping = fleet.procs[1]
    stopping.signal(signal.SIGTERM)
    assert stopping.wait(60) == 0
    done_by_1 = sum(1 for r in fleet.processed("slow") if r[0] == 1)
    publisher.join()
    rows = fleet.wait_processed(n, "slow", timeout=120)
    per_worker, per_message = tally(rows)
    assert len(per_message) == n, f"lost {n - len(per_message)}"
    assert per_worker[1] == done_by_1  # nothing after the stop went to worker 1
    assert per_worker[2] > per_worker[1]
    assert fleet.procs[1].health() is None  # health file removed on a clean stop
    drained = [r for r in stopping.log_records() if "stopped" in r.get("message", "")]
    assert drained, stopping.output()[-2000:]
