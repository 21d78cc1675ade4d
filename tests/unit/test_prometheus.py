"""Prometheus text format 0.0.4: escaping, family layout, and the dashboard's metrics.

`parse_exposition` is a strict reader of the format (it fails on anything a Prometheus
server would reject or that breaks the conventions we promise); the integration test uses
it on the real `routemq metrics` output too.
"""
import math
import os
import re
import stat

import pytest

from routemq.documents import MasterState, WorkerHealth
from routemq.fleet import Snapshot
from routemq.plan import Plan
from routemq.prometheus import (Exposition, TEXTFILE_NAME, escape_help, escape_label_value,
                                format_value, render_metrics, write_textfile)
from routemq.status import build_status

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_VALUE = r'"(?:[^"\\\n]|\\\\|\\"|\\n)*"'
LABELS = rf"\{{(?:[a-zA-Z_][a-zA-Z0-9_]*={LABEL_VALUE}(?:,[a-zA-Z_][a-zA-Z0-9_]*={LABEL_VALUE})*)?\}}"
VALUE = r"(?:[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|NaN|[+-]Inf)"
SAMPLE_RE = re.compile(rf"^({NAME})({LABELS})? ({VALUE})$")
HELP_RE = re.compile(rf"^# HELP ({NAME}) ((?:[^\\\n]|\\\\|\\n)*)$")
TYPE_RE = re.compile(rf"^# TYPE ({NAME}) (counter|gauge|untyped|summary|histogram)$")
PAIR_RE = re.compile(rf'([a-zA-Z_][a-zA-Z0-9_]*)=({LABEL_VALUE})')


def _unescape(quoted: str) -> str:
    return re.sub(r'\\(.)', lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), quoted[1:-1])


def parse_exposition(text: str) -> dict:
    """{name: {"help", "type", "samples": [(labels dict, float)]}}; AssertionError on any
    line that breaks the format or our conventions (routemq_ prefix, HELP then TYPE before
    the samples, one block per family, counters named *_total, no duplicate series)."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families: dict = {}
    current = None
    seen_series = set()
    for n, line in enumerate(text.splitlines(), 1):
        if m := HELP_RE.match(line):
            name = m.group(1)
            assert name not in families, f"line {n}: family {name} appears twice"
            families[name] = {"help": m.group(2), "type": None, "samples": []}
            current = name
        elif m := TYPE_RE.match(line):
            assert m.group(1) == current and families[current]["type"] is None, \
                f"line {n}: TYPE must follow its HELP: {line!r}"
            families[current]["type"] = m.group(2)
        elif m := SAMPLE_RE.match(line):
            name = m.group(1)
            assert name == current and families[name]["type"], \
                f"line {n}: sample outside its family block: {line!r}"
            labels = {k: _unescape(v) for k, v in PAIR_RE.findall(m.group(2) or "")}
            series = (name, tuple(sorted(labels.items())))
            assert series not in seen_series, f"line {n}: duplicate series {line!r}"
            seen_series.add(series)
            families[name]["samples"].append((labels, float(m.group(3))))
        else:
            raise AssertionError(f"line {n} is not valid exposition format: {line!r}")
    for name, fam in families.items():
        assert name.startswith("routemq_"), name
        assert fam["samples"], f"{name}: HELP/TYPE without samples"
        assert (fam["type"] == "counter") == name.endswith("_total"), name
    return families


def test_escaping():
    assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    assert escape_help('say "hi"\\\nnext') == 'say "hi"\\\\\\nnext'
    assert escape_label_value(3) == "3"


@pytest.mark.parametrize("value, text", [
    (True, "1"), (False, "0"), (7, "7"), (0.25, "0.25"), (1e-05, "1e-05"),
    (math.nan, "NaN"), (math.inf, "+Inf"), (-math.inf, "-Inf")])
def test_format_value(value, text):
    assert format_value(value) == text


def test_exposition_groups_samples_and_skips_unknown_values():
    exp = Exposition()
    exp.add("routemq_a_total", "counter", "A.", [({"instance": 1}, 3)])
    exp.add("routemq_b", "gauge", "B.", [({"instance": 1}, None)])  # unknown: no family at all
    exp.add("routemq_a_total", "counter", "A.", [({"instance": 2}, 4)])  # same family, later
    assert exp.text() == ('# HELP routemq_a_total A.\n# TYPE routemq_a_total counter\n'
                          'routemq_a_total{instance="1"} 3\nroutemq_a_total{instance="2"} 4\n')
    assert Exposition().text() == ""


@pytest.mark.parametrize("call", [
    lambda e: e.add("routemq_x", "counter", "counter without _total", []),
    lambda e: e.add("bad-name", "gauge", "", []),
    lambda e: e.add("routemq_x", "histogramish", "", []),
    lambda e: e.add("routemq_x", "gauge", "", [({"bad-label": 1}, 1)]).text(),
    lambda e: e.add("routemq_x", "gauge", "", []).add("routemq_x", "untyped", "", []),
])
def test_exposition_rejects_what_prometheus_would(call):
    with pytest.raises(ValueError):
        call(Exposition())


NOW = 1_000_000.0
ODD_ROUTE = 'shared:a"b\\c/{id}'


def worker(instance: int, doc: dict) -> WorkerHealth:
    """A health file as its reader makes it (the test's documents are all valid)."""
    health, notes = WorkerHealth.from_doc(doc, instance, NOW)
    assert notes == []
    return health


def master_state(doc: dict) -> MasterState:
    master, notes = MasterState.from_doc(doc, NOW)
    assert notes == [] and master is not None
    return master


def fleet_status() -> dict:
    """Two planned instances (one alive, one dead), a master with an autoscaler."""
    h1 = {"instance": 1, "pid": 101, "state": "running", "connected": True, "updated_at": NOW,
          "started_at": NOW - 50, "processed": 40, "errors": 2, "received": 42, "unrouted": 0,
          "rejected": 0, "reconnects": 1, "rate": 3.5, "inflight": 1, "queued": 0,
          "rss_bytes": 52428800, "cpu_seconds": 5.0, "routes_held": [ODD_ROUTE],
          "plan_version": 3,
          "routes": {ODD_ROUTE: {"processed": 40, "errors": 2, "avg_ms": 2.0, "p50_ms": 1.5,
                                 "p99_ms": 9.0, "max_ms": 12.0},
                     "single:idle": {"processed": 0, "errors": 0, "avg_ms": 0.0,
                                     "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}}}
    h2 = {**h1, "instance": 2, "pid": 102, "updated_at": NOW - 100}
    master = {"pid": 100, "hostname": "host\nA", "group": "g1", "backend": "processes",
              "started_at": NOW - 500, "updated_at": NOW, "plan_version": 3, "instances": [1, 2],
              "restarts": {"1": 0, "2": 4}, "warnings": [],
              "autoscaler": {"enabled": True, "min": 1, "max": 4, "target": 2, "rate": 3.5,
                             "last_action": "none", "last_action_at": NOW - 60}}
    snap = Snapshot(runtime_dir="/run/routemq", taken_at=NOW, monotonic=10.0, hostname="h",
                    plan=Plan({1: (ODD_ROUTE,), 2: (ODD_ROUTE,)}), plan_source="plan.json",
                    master=master_state(master), workers={1: worker(1, h1), 2: worker(2, h2)},
                    pids={100: True, 101: True, 102: False})
    return build_status(snap)


def test_render_metrics_is_valid_and_complete():
    families = parse_exposition(render_metrics(fleet_status()))
    value = sample_of(families)

    base = {"host": "host\nA", "group": "g1"}  # escaped on the wire, intact once parsed
    assert all(s[0]["host"] == "host\nA" and s[0]["group"] == "g1"
               for f in families.values() for s in f["samples"])
    assert value("routemq_workers_planned", **base) == 2
    assert value("routemq_workers_alive") == 1
    assert value("routemq_workers_connected") == 1
    assert value("routemq_workers_healthy") == 1
    assert value("routemq_fleet_health_ratio") == 0.5
    assert value("routemq_fleet_healthy") == 0
    assert value("routemq_fleet_status", status="unhealthy") == 1
    assert value("routemq_fleet_status", status="healthy") == 0
    assert value("routemq_fleet_health_reasons") == 2  # 1 of 2 healthy; instance 2 is dead
    assert value("routemq_broker_sessions_undrained") == 0
    assert "routemq_broker_session_undrained_seconds" not in families
    assert value("routemq_worker_up", worker=1) == 1
    assert value("routemq_worker_up", worker=2) == 0
    assert value("routemq_worker_healthy", worker=1) == 1
    assert value("routemq_worker_healthy", worker=2) == 0
    assert value("routemq_worker_restarts_total", worker=2) == 4
    assert value("routemq_worker_messages_processed_total", worker=1) == 40
    assert value("routemq_worker_handler_errors_total", worker=1) == 2
    assert value("routemq_worker_messages_per_second", worker=1) == 3.5
    assert value("routemq_worker_messages_per_second", worker=2) == 0  # dead: no load
    assert value("routemq_worker_resident_memory_bytes", worker=1) == 52428800
    assert value("routemq_worker_cpu_seconds_total", worker=1) == 5.0
    assert value("routemq_route_messages_processed_total", worker=1, route=ODD_ROUTE) == 40
    assert value("routemq_route_latency_seconds", worker=1, route=ODD_ROUTE,
                 quantile="0.99") == 0.009
    assert value("routemq_route_latency_average_seconds", worker=1, route=ODD_ROUTE) == 0.002
    # A route with no message yet has counts but no latency figures.
    assert value("routemq_route_messages_processed_total", worker=1, route="single:idle") == 0
    assert not [s for s in families["routemq_route_latency_seconds"]["samples"]
                if s[0]["route"] == "single:idle"]
    assert value("routemq_route_instances_planned", route=ODD_ROUTE) == 2
    assert value("routemq_route_instances_holding", route=ODD_ROUTE) == 1
    assert value("routemq_route_instances_serving", route=ODD_ROUTE) == 1
    assert value("routemq_master_up") == 1
    assert value("routemq_master_plan_version") == 3
    assert value("routemq_autoscaler_target_workers") == 2
    assert value("routemq_autoscaler_enabled") == 1


def sample_of(families):
    """value(name, **labels): the one sample of `name` with those labels."""
    def value(name, **labels):
        found = [v for lab, v in families[name]["samples"]
                 if all(lab.get(k) == str(x) for k, x in labels.items())]
        assert len(found) == 1, (name, labels, families.get(name))
        return found[0]
    return value


def test_no_connected_worker_and_an_undrained_session_in_metrics():
    # The broker is gone: worker 1 is alive, not connected; instance 3, planned out, still
    # has its session at the broker.
    status = build_status(Snapshot(
        runtime_dir="/run/routemq", taken_at=NOW, monotonic=10.0, hostname="h",
        plan=Plan({1: (ODD_ROUTE,)}), plan_source="plan.json",
        master=master_state({"pid": 100, "updated_at": NOW, "instances": [1], "sessions": {
            "3": {"state": "draining", "since": NOW - 12, "detail": "x"}}}),
        workers={1: worker(1, {"pid": 101, "updated_at": NOW, "state": "reconnecting",
                               "connected": False, "routes_held": [ODD_ROUTE]})},
        pids={100: True, 101: True}))
    value = sample_of(parse_exposition(render_metrics(status)))
    assert (value("routemq_workers_alive"), value("routemq_workers_connected")) == (1, 0)
    assert value("routemq_fleet_health_ratio") == 0  # alive is not enough
    assert value("routemq_fleet_healthy") == 0
    assert value("routemq_fleet_status", status="unhealthy") == 1
    assert value("routemq_route_instances_holding", route=ODD_ROUTE) == 1
    assert value("routemq_route_instances_serving", route=ODD_ROUTE) == 0
    assert value("routemq_broker_sessions_undrained") == 1
    assert value("routemq_broker_session_undrained_seconds", worker=3, state="draining") == 12
    # the session, the broker, instance 1
    assert value("routemq_fleet_health_reasons") == len(status["health"]["reasons"]) == 3


@pytest.mark.parametrize("source, expected_up", [("plan.json", 0), ("standalone", None)])
def test_master_up_is_zero_when_a_master_is_expected_but_absent(source, expected_up):
    snap = Snapshot(runtime_dir="/x", taken_at=NOW, monotonic=0.0, hostname="h",
                    plan=Plan({1: ()}), plan_source=source,
                    workers={1: worker(1, {"pid": 7, "updated_at": NOW, "state": "running",
                                           "connected": True})}, pids={7: True})
    families = parse_exposition(render_metrics(build_status(snap)))
    if expected_up is None:
        assert "routemq_master_up" not in families
        assert families["routemq_fleet_healthy"]["samples"][0][1] == 1
    else:
        assert families["routemq_master_up"]["samples"][0][1] == expected_up
        assert families["routemq_fleet_healthy"]["samples"][0][1] == 0


def test_render_metrics_of_an_empty_fleet():
    snap = Snapshot(runtime_dir="/x", taken_at=NOW, monotonic=0.0, hostname="h")
    families = parse_exposition(render_metrics(build_status(snap)))
    assert families["routemq_workers_planned"]["samples"][0][1] == 0
    assert "routemq_master_up" not in families and "routemq_worker_up" not in families


def test_write_textfile_is_atomic_and_world_readable(tmp_path):
    (tmp_path / TEXTFILE_NAME).write_text("old\n")
    path = write_textfile(str(tmp_path), "routemq_x 1\n")
    assert path == str(tmp_path / TEXTFILE_NAME)
    assert open(path).read() == "routemq_x 1\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(tmp_path) == [TEXTFILE_NAME]  # no temporary left behind


@pytest.mark.parametrize("bad", [
    'routemq_x{a="b"c"} 1\n',                                  # unescaped quote
    "# HELP routemq_x X.\nroutemq_x 1\n",                       # sample before TYPE
    "# HELP routemq_x X.\n# TYPE routemq_x gauge\nroutemq_x one\n",
    "# HELP routemq_x X.\n# TYPE routemq_x counter\nroutemq_x 1\n",  # counter not *_total
    "# HELP x X.\n# TYPE x gauge\nx 1\n",                        # no routemq_ prefix
])
def test_the_strict_parser_rejects_broken_text(bad):
    with pytest.raises(AssertionError):
        parse_exposition(bad)


def test_dead_letters_per_route():
    snap = Snapshot(runtime_dir="/run/routemq", taken_at=NOW, monotonic=10.0, hostname="h",
                    dead_letters={ODD_ROUTE: 2, "b": 1})
    families = parse_exposition(render_metrics(build_status(snap)))
    samples = {s[0]["route"]: s[1] for s in families["routemq_dead_letters"]["samples"]}
    assert samples == {ODD_ROUTE: 2.0, "b": 1.0}
    assert families["routemq_dead_letters"]["type"] == "gauge"
