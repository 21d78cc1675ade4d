"""How a worker and a drainer end, against a real mosquitto: a handler that ignores its
cancellation cannot hold a stop up, and the drainer empties and ends a dead instance's
broker session (routemq.drain)."""
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.broker import publish_many, publish_spread
from tests.integration.workers import ROOT, Fleet

STUBBORN = Path(__file__).resolve().parent / "apps" / "stubborn"


def test_a_handler_that_swallows_cancellation_cannot_hold_the_stop_up(broker, tmp_path):
    fleet = Fleet(broker, tmp_path / "fleet", 1, ROUTEMQ_APP_ROOT=str(STUBBORN),
                  ROUTEMQ_DRAIN_TIMEOUT="1")
    try:
        worker = fleet.start(1)
        worker.wait_running()
        publish_many(broker, [("stubborn/1", '{"seq": 1}')], qos=1)
        assert fleet.wait_processed(1, "stubborn", timeout=15)
        stopped_at = time.monotonic()
        worker.signal(15)
        assert worker.wait(30) == 0
        # drain_timeout (1 s) + the cancel grace (2 s) + disconnecting: not "never"
        assert time.monotonic() - stopped_at < 10, "the stop waited for the stubborn handler"
        assert "ignored cancellation" in worker.output()
        # never acknowledged: the broker delivers it again to the same session
        fleet.start(1).wait_running()
        rows = fleet.wait_processed(2, "stubborn", timeout=15, distinct=False)
        assert len(rows) == 2, rows
    finally:
        fleet.kill_all()


def drain(fleet, instance):
    return subprocess.run([sys.executable, "-m", "routemq", "worker", "--instance",
                           str(instance), "--drain"], env=fleet.env(instance),
                          cwd=str(ROOT), capture_output=True, text=True, timeout=120)


def test_the_drainer_hands_over_a_dead_instances_queue_and_ends_its_session(fleet_factory,
                                                                            broker):
    fleet = fleet_factory(2, TEST_SLOW="0.0005")
    fleet.start_all()
    fleet.procs[2].kill()  # its session keeps its subscriptions and collects its share
    marker = fleet.runtime / "workers" / "2.session"
    assert marker.exists()
    n = 2000
    publish_spread(broker, "work", n)
    # Instance 1 gets its share; the dead session holds the rest, for nobody.
    fleet.procs[1].wait_idle()
    assert len({r.seq for r in fleet.processed("work")}) < n
    done = drain(fleet, 2)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "broker session" in done.stdout and "ended" in done.stdout
    rows = fleet.wait_processed(n, "work", timeout=30)
    assert len({r[3] for r in rows}) == n, f"{n - len({r[3] for r in rows})} lost"
    assert not marker.exists()
    # the session is gone: unsubscribed and ended, so the broker keeps nothing for it
    again = drain(fleet, 2)
    assert again.returncode == 0 and "draining the broker session" not in again.stdout, \
        again.stdout[-3000:] + again.stderr[-3000:]
    fleet.start(2).wait_running()
    restarted = fleet.procs[2].output().split("worker 2 starting")[-1]
    assert "session present: False" in restarted, restarted


def test_the_drainer_leaves_a_running_instance_alone(fleet_factory, broker):
    fleet = fleet_factory(1)
    fleet.start_all()
    done = drain(fleet, 1)
    assert done.returncode == 75, done.stdout + done.stderr
    assert fleet.procs[1].proc.poll() is None
    assert (fleet.runtime / "workers" / "1.session").exists()
