"""The runtime directory's typed documents: what is written, what a reader makes of it."""
import dataclasses
import doctest
import json

import pytest

from routemq import documents
from routemq.documents import (MasterState, WorkerHealth, WorkerState, fresh_limit, is_fresh,
                               state_of)
from routemq.metrics import WorkerMetrics

NOW = 1_700_000_000.0


def test_doctests():
    assert doctest.testmod(documents).failed == 0


def written(doc_type) -> set[str]:
    return {f.name for f in dataclasses.fields(doc_type) if "check" in f.metadata}


@pytest.mark.parametrize("doc_type", [WorkerHealth, MasterState])
def test_every_field_but_usable_is_written_and_checked(doc_type):
    fields = {f.name for f in dataclasses.fields(doc_type)}
    assert fields - written(doc_type) <= {"usable"}


def test_the_metrics_a_worker_writes_are_fields_of_its_health():
    assert set(WorkerMetrics().snapshot()) <= written(WorkerHealth)


def full_health(**changes) -> WorkerHealth:
    h = WorkerHealth(
        instance=3, pid=42, client_id="routemq-3", state=WorkerState.WAITING_FOR_BROKER,
        state_since=NOW - 3, connected=False, subscriptions=("$share/g/a",),
        routes_held=("shared:a",), inflight=1, queued=2, reconnects=0, rss_bytes=2**20,
        cpu_seconds=0.5, started_at=NOW - 10, updated_at=NOW, plan_version=4, received=9,
        processed=8, errors=1, unrouted=0, rejected=0, rate=1.25,
        routes={"shared:a": {"processed": 8, "errors": 1, "avg_ms": 1.5, "p50_ms": 1.0,
                             "p99_ms": 3.0, "max_ms": 3.0}})
    return dataclasses.replace(h, **changes)


def test_a_health_file_reads_back_as_written():
    h = full_health()
    text = h.to_json()
    doc = json.loads(text)
    assert set(doc) == written(WorkerHealth) and doc["state"] == "waiting for broker"
    assert '"state":"waiting for broker"' in text  # the value, not the enum's name
    assert WorkerHealth.from_doc(doc, 3, NOW) == (h, [])


def test_master_json_reads_back_as_written():
    m = MasterState(pid=5, hostname="h", group="g", backend="processes", started_at=NOW - 9,
                    updated_at=NOW, plan_version=2, instances=(1, 2), members=(1, 2),
                    handover=False, restarts={"2": 1}, autoscaler=None,
                    load={"rate": 1.0, "cpu_percent": 2.0, "backlog": 0}, warnings=("w",),
                    sessions={"3": {"state": "waiting", "since": NOW, "detail": "x"}},
                    reload={"ok": False, "at": NOW, "error": "e"},
                    rollout={"instance": 1, "step": "out", "done": [], "pending": [2]})
    doc = json.loads(m.to_json())
    assert set(doc) == written(MasterState) and doc["autoscaler"] is None
    assert MasterState.from_doc(doc, NOW) == (m, [])


def test_a_newer_writers_fields_and_states_are_tolerated():
    doc = {**full_health().to_doc(), "state": "pausing", "colour": "red", "gpu": {"x": 1}}
    h, notes = WorkerHealth.from_doc(doc, 3, NOW)
    assert notes == [] and h.state == "pausing" and h.usable and h.fresh(NOW)
    m, notes = MasterState.from_doc({"pid": 5, "updated_at": NOW, "shards": [1]}, NOW)
    assert notes == [] and m.pid == 5


def test_known_states_become_the_enum():
    assert state_of("stuck") is WorkerState.STUCK
    h, _ = WorkerHealth.from_doc({"pid": 1, "updated_at": NOW, "state": "stopping"}, 1, NOW)
    assert h.state is WorkerState.STOPPING and h.leaving


@pytest.mark.parametrize("doc, note", [
    ([1, 2], "workers/3.json: not a JSON object"),
    ({"pid": 1, "updated_at": NOW + 60}, "workers/3.json: updated_at is 60s in the future (more "
                                         "than the 5s allowed for clock skew); ignored"),
])
def test_an_unusable_health_file_is_a_note_and_never_fresh(doc, note):
    h, notes = WorkerHealth.from_doc(doc, 3, NOW)
    assert notes == [note] and h == WorkerHealth.unusable(3) and not h.fresh(NOW)


def test_missing_keys_and_a_wrong_instance_are_notes():
    h, notes = WorkerHealth.from_doc({"instance": 9, "state": "running", "pid": "7"}, 3, NOW)
    assert h.instance == 3 and h.pid is None and h.state is WorkerState.RUNNING
    assert notes == ["workers/3.json: missing updated_at; ignored invalid pid (want an "
                     "integer > 0)", "workers/3.json: says instance 9; the file name wins"]


def test_master_json_that_is_no_object_or_from_the_future_is_unusable():
    assert MasterState.from_doc("x", NOW) == (None, ["master.json: not a JSON object"])
    m, notes = MasterState.from_doc({"pid": 1, "updated_at": NOW + 600}, NOW)
    assert m is None and "600s in the future" in notes[0]


def test_fresh_is_three_missed_writes_and_at_least_five_seconds():
    assert fresh_limit(1.0) == 5.0 and fresh_limit(4.0) == 12.0
    assert is_fresh(NOW - 5, NOW) and not is_fresh(NOW - 5.1, NOW)
    assert is_fresh(NOW - 12, NOW, 4.0) and not is_fresh(None, NOW)
    h = full_health(updated_at=NOW - 6)
    assert not h.fresh(NOW) and h.fresh(NOW, health_interval=2.0)
    assert MasterState(updated_at=NOW - 1).fresh(NOW) and not MasterState().fresh(NOW)
