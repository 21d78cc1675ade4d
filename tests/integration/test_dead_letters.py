"""Dead letters under `routemq run` with 2 workers: an always-failing QoS 1 route with
retries=1 runs each message twice, then spools it; `routemq dead-letters` lists them,
`status` counts them, `replay` runs each again (with its MQTT 5 properties) and empties the
spool."""
import json
from pathlib import Path

from routemq.deadletters import Spool
from routemq.message import publish_properties
from tests.helpers import routes_by_key, wait_until
from tests.integration.broker import AckedPublisher, publish_many
from tests.integration.workers import Fleet, Run

APP = Path(__file__).resolve().parent / "apps" / "deadletters"
N = 40


def runs_per_seq(run, route="dl"):
    counts: dict[str, int] = {}
    for row in run.processed(route):
        counts[row.seq] = counts.get(row.seq, 0) + 1
    return counts


def test_failed_messages_are_spooled_listed_and_replayed(broker, tmp_path):
    state = tmp_path / "state"
    run = Run(broker, tmp_path / "run", 2, app=APP, ROUTEMQ_STATE_DIR=str(state))
    spool = Spool(state / "dead-letters")
    try:
        run.start_run()
        run.wait_settled([1, 2])
        publish_many(broker, [(f"dl/{i % 4}", json.dumps({"seq": i})) for i in range(N - 1)])
        publisher = AckedPublisher(broker.host, broker.port).start()
        try:
            publisher.send("dl/props", json.dumps({"seq": N - 1}), 1, properties=(
                publish_properties([("trace", "t-1"), ("tenant", "acme")])))
        finally:
            publisher.stop()
        wait_until(lambda: len(spool.letters().letters) >= N, 60, f"{N} dead letters spooled",
                   abort=run.running(), explain=lambda: f"{len(spool.letters().letters)}")
        assert sorted(runs_per_seq(run).values()) == [2] * N  # each ran twice, then spooled

        listed = run.routemq("dead-letters", "--json")
        assert listed.returncode == 0, listed.stderr
        letters = json.loads(listed.stdout)["letters"]
        assert len(letters) == N
        assert {json.loads(r["preview"])["seq"] for r in letters} == set(range(N))
        assert {(r["route"], r["qos"], r["attempts"]) for r in letters} == {("dl/{id}", 1, 2)}
        assert all("fails on purpose" in r["error"] for r in letters)
        assert len({r["worker"] for r in letters}) == 2  # spooled by both workers
        status, _ = run.status()
        assert status["dead_letters"]["routes"] == {"dl/{id}": N}

        def figures():
            doc, _ = run.status()
            row = routes_by_key(doc)["shared:dl/{id}"]
            return row["retries"], row["errors"], row["retrying"]
        wait_until(lambda: figures() == (N, N, 0), 30, "status counting retries and errors",
                   abort=run.running(), explain=lambda: str(figures()))
        metrics = run.routemq("metrics").stdout
        assert f'route="dl/{{id}}"}} {N}' in metrics
        assert "routemq_route_retries_total{" in metrics

        (run.out / "replay-ok").touch()  # the handler succeeds from now on
        replayed = run.routemq("dead-letters", "replay")
        assert replayed.returncode == 0, replayed.stderr
        assert f"{N} dead letters replayed, 0 skipped" in replayed.stdout
        wait_until(lambda: sorted(runs_per_seq(run).values()) == [3] * N, 60,
                   "each message run a third time", abort=run.running(),
                   explain=lambda: str(runs_per_seq(run)))
        # the replayed copy carried the properties it arrived with
        props = [row.topic for row in run.processed("dl-props")]
        assert props == ["trace=t-1,tenant=acme"] * 3, props
        assert spool.letters().letters == []
        status, _ = run.status()
        assert status["dead_letters"]["routes"] == {}
        assert run.stop_run() == 0
    finally:
        run.cleanup()


def test_a_spool_that_cannot_be_written_loses_nothing(broker, tmp_path):
    """The letter cannot be written (here: a file where the spool directory should be): the
    worker acknowledges nothing, exits 1, and the broker delivers the message again to the
    next start, which spools it."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "dead-letters").write_text("in the way")
    fleet = Fleet(broker, tmp_path / "fleet", 1, ROUTEMQ_APP_ROOT=str(APP),
                  ROUTEMQ_STATE_DIR=str(state))
    try:
        worker = fleet.start(1)
        worker.wait_running()
        publish_many(broker, [("dl/1", json.dumps({"seq": 1}))])
        assert worker.wait(30) == 1
        assert "cannot write dead letters" in worker.output()
        (state / "dead-letters").unlink()
        fleet.start(1).wait_running()
        spool = Spool(state / "dead-letters")
        wait_until(lambda: len(spool.letters().letters) == 1, 30, "the letter spooled",
                   explain=worker.output)
        assert spool.letters().letters[0].record["topic"] == "dl/1"
        assert len(fleet.processed("dl")) == 4  # ran twice (one retry) per start
        assert worker.stop() == 0
    finally:
        fleet.cleanup()
