"""Retries with backoff under `routemq run` with 2 workers, against a real mosquitto: a
handler failing its first two attempts succeeds on the third for every message, none
dead-lettered; a kill -9 while messages wait in backoff loses none."""
import json
import os
import signal
from pathlib import Path

from routemq.deadletters import Spool
from tests.helpers import routes_by_key, wait_until
from tests.integration.broker import publish_many
from tests.integration.workers import Run

APP = Path(__file__).resolve().parent / "apps" / "retries"


def attempts_per_seq(run, route: str) -> dict[str, list[str]]:
    """seq -> the attempt routes recorded for it ("flaky1", "flaky2", ...), sorted."""
    seen: dict[str, list[str]] = {}
    for row in run.processed():
        if row.route.startswith(route):
            seen.setdefault(row.seq, []).append(row.route)
    return {seq: sorted(routes) for seq, routes in seen.items()}


def test_each_message_succeeds_on_its_third_attempt_none_dead_lettered(broker, tmp_path):
    n = 200
    state = tmp_path / "state"
    run = Run(broker, tmp_path / "run", 2, app=APP, ROUTEMQ_STATE_DIR=str(state))
    try:
        run.start_run()
        run.wait_settled([1, 2])
        publish_many(broker, [(f"flaky/{i % 8}", json.dumps({"seq": i})) for i in range(n)])
        want = {str(i): ["flaky1", "flaky2", "flaky3"] for i in range(n)}
        wait_until(lambda: attempts_per_seq(run, "flaky") == want, 90,
                   "every message run three times", abort=run.running(),
                   explain=lambda: f"{len(attempts_per_seq(run, 'flaky'))} seen")
        wait_until(lambda: _route(run, "shared:flaky/{id}").get("processed") == n, 30,
                   "status counting every message processed", abort=run.running(),
                   explain=lambda: str(_route(run, "shared:flaky/{id}")))
        row = _route(run, "shared:flaky/{id}")
        assert (row["errors"], row["retries"], row["retrying"]) == (0, 2 * n, 0)
        assert Spool(state / "dead-letters").letters().letters == []
        workers = {r.worker for r in run.processed() if r.route == "flaky3"}
        assert len(workers) == 2  # both workers took a share
        assert run.stop_run() == 0
    finally:
        run.cleanup()


def _route(run, key: str) -> dict:
    status, _ = run.status()
    return routes_by_key(status).get(key, {})


def test_a_kill_during_backoff_loses_nothing(broker, tmp_path):
    """Every message fails its first attempt and waits 5 s; worker 1 is killed (-9) while
    its share waits. The broker delivers that share again to the restarted worker, which
    runs it from attempt 1: every message ends with a successful second attempt."""
    n = 60
    run = Run(broker, tmp_path / "run", 2, app=APP, TEST_BACKOFF="5")
    try:
        run.start_run()
        run.wait_settled([1, 2])
        publish_many(broker, [(f"backoff/{i % 4}", json.dumps({"seq": i})) for i in range(n)])
        wait_until(lambda: len({r.seq for r in run.processed("backoff1")}) == n, 30,
                   "every message's first attempt", abort=run.running())
        victim = run.healths()[1]["pid"]
        mine = {r.seq for r in run.processed("backoff1") if r.worker == 1}
        assert mine and not any(r.worker == 1 for r in run.processed("backoff2")), \
            "worker 1's messages must still be waiting in backoff"
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: {r.seq for r in run.processed("backoff2")} == {str(i) for i in
                                                                          range(n)}, 90,
                   "every message's successful attempt", abort=run.running(),
                   explain=lambda: f"{len({r.seq for r in run.processed('backoff2')})} of {n}")
        # worker 1's share ran again from attempt 1 after the restart
        again = [r.seq for r in run.processed("backoff1") if r.seq in mine]
        assert len(again) >= 2 * len(mine)
        assert run.stop_run() == 0
    finally:
        run.cleanup()
