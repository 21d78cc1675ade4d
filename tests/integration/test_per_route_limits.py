"""Per-route max_inflight under `routemq run` with 2 workers, against a real mosquitto: the
route limited to 1 never runs two handlers at once on a worker, while the other route, on the
same workers, runs several at a time."""
from __future__ import annotations

from pathlib import Path

from tests.integration.broker import Mosquitto, publish_many
from tests.integration.workers import Run

APP = Path(__file__).resolve().parent / "apps" / "limits"


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The largest number of (start, end) intervals that overlap at one moment."""
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    now = peak = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


def test_a_route_limited_to_one_runs_one_at_a_time_beside_another(make_run, broker: Mosquitto
                                                                   ) -> None:
    run: Run = make_run(2, app=APP).start_run()
    run.wait_settled([1, 2])
    publish_many(broker, [(f"one/{i % 4}", f'{{"seq": {i}}}') for i in range(40)] +
                 [(f"many/{i % 4}", f'{{"seq": {100 + i}}}') for i in range(40)], qos=1)
    run.wait_handled(set(range(40)) | set(range(100, 140)), 60)
    peaks: dict[str, list[int]] = {"one": [], "many": []}
    for path in sorted(run.out.glob("*.intervals")):  # the master's (it imports) is empty
        rows = [line.split() for line in path.read_text().splitlines()]
        if not rows:
            continue
        for name in peaks:
            peaks[name].append(most_at_once([(float(s), float(e)) for n, s, e in rows
                                             if n == name]))
    assert len(peaks["one"]) == 2, peaks  # both workers ran both routes
    assert max(peaks["one"]) == 1, peaks
    assert max(peaks["many"]) > 1, peaks
    assert run.stop_run() == 0
