"""A message that kills its worker, under `routemq run` with 2 workers and a real mosquitto:
after poison_threshold (2) deaths it is in the dead-letter spool, acknowledged, never run
again; the messages in flight beside it are handled, none of them spooled; the restarts
stop."""
import json
from pathlib import Path

from routemq.deadletters import Spool
from tests.helpers import wait_until, workers_by_instance
from tests.integration.broker import publish_many
from tests.integration.workers import Run

APP = Path(__file__).resolve().parent / "apps" / "poison"


def test_a_message_that_kills_its_worker_is_spooled_after_two_deaths(broker, tmp_path):
    state = tmp_path / "state"
    run = Run(broker, tmp_path / "run", 2, app=APP, ROUTEMQ_STATE_DIR=str(state))
    spool = Spool(state / "dead-letters")

    def restarts() -> int:
        doc, _ = run.status()
        return sum(w.get("restarts") or 0 for w in workers_by_instance(doc).values())

    def handled() -> set[int]:
        return {int(r.seq) for r in run.processed("p")}
    try:
        run.start_run()
        run.wait_settled([1, 2])
        publish_many(broker, [(f"p/{i % 4}", json.dumps({"seq": i})) for i in range(40)])
        wait_until(lambda: len(spool.letters().letters) == 1, 90, "the poison message spooled",
                   abort=run.running(), explain=lambda: run.output()[-3000:])
        [letter] = spool.letters().letters
        assert json.loads(letter.record["payload"]) == {"seq": 13}
        assert letter.record["error"].startswith("poison: its worker process died 2 times")
        others = set(range(40)) - {13}
        wait_until(lambda: handled() >= others, 60, "every other message handled",
                   abort=run.running(), explain=lambda: str(sorted(others - handled())))
        assert 13 not in handled()
        run.wait_settled([1, 2])
        assert restarts() == 2
        # the restarts stopped: a second batch is handled with no further death
        publish_many(broker, [(f"p/{i % 4}", json.dumps({"seq": i})) for i in range(100, 140)])
        wait_until(lambda: handled() >= set(range(100, 140)), 60, "the second batch handled",
                   abort=run.running())
        assert restarts() == 2 and len(spool.letters().letters) == 1
        assert run.stop_run() == 0
    finally:
        run.cleanup()
