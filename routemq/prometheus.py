"""Prometheus text exposition format 0.0.4, from the dashboard dict of routemq.status.

    text = render_metrics(build_status(read_fleet(runtime_dir)))   # `routemq metrics`
    write_textfile("/var/lib/prometheus/node-exporter", text)   # node-exporter's textfile dir

Every family gets its # HELP and # TYPE lines and all its samples together; names start with
``routemq_``; counters end in ``_total``; labels are ``host`` and ``group`` on every sample,
plus ``worker`` (the worker's instance number: not ``instance``, which Prometheus sets to the
scrape target itself) and ``route`` (the route key, e.g.
``shared:sensors/{device_id}/data``) where they apply. Label values are escaped (backslash,
double quote, newline), so any route pattern is safe.

    >>> print(Exposition().add("routemq_x", "gauge", "An example.", [({"route": 'a"b'}, 1)])
    ...       .text(), end="")
    # HELP routemq_x An example.
    # TYPE routemq_x gauge
    routemq_x{route="a\\"b"} 1
"""
from __future__ import annotations

import math
import os
import re
from typing import Any, Iterable, Mapping

from routemq.runtime import write_text_atomic

TEXTFILE_NAME = "routemq.prom"
TYPES = ("counter", "gauge", "untyped")
_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

Labels = Mapping[str, Any]


def escape_label_value(value: Any) -> str:
    r"""A label value as the format wants it: \ -> \\, " -> \", newline -> \n."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    r"""HELP text: \ -> \\, newline -> \n (quotes stay as they are)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float | int | bool) -> str:
    """1 / 0 for booleans, integers as they are, floats as Go's ParseFloat reads them."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class Exposition:
    """Collects metric families, then prints them in the order they were added."""

    def __init__(self) -> None:
        self._families: dict[str, tuple[str, str, list[tuple[Labels, Any]]]] = {}

    def add(self, name: str, kind: str, help_text: str,
            samples: Iterable[tuple[Labels, Any]]) -> Exposition:
        """Add samples to family ``name``; samples whose value is None are left out."""
        if not _NAME_RE.match(name) or kind not in TYPES:
            raise ValueError(f"bad metric name or type: {name!r} {kind!r}")
        if kind == "counter" and not name.endswith("_total"):
            raise ValueError(f"counter {name!r} must end in _total")
        family = self._families.setdefault(name, (kind, help_text, []))
        if family[0] != kind:
            raise ValueError(f"metric {name!r} added as {family[0]} and as {kind}")
        for labels, value in samples:
            if isinstance(value, (int, float)):  # None (unknown) and anything else: no sample
                family[2].append((labels, value))
        return self

    def text(self) -> str:
        out = []
        for name, (kind, help_text, samples) in self._families.items():
            if not samples:
                continue
            out.append(f"# HELP {name} {escape_help(help_text)}")
            out.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                out.append(f"{name}{_labels(labels)} {format_value(value)}")
        return "\n".join(out) + "\n" if out else ""


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    for key in labels:
        if not _LABEL_RE.match(key) or key.startswith("__"):
            raise ValueError(f"bad label name {key!r}")
    return "{" + ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items()) + "}"


# (name, type, help, key in the dashboard's worker row); one sample per worker with a value.
WORKER_METRICS = (
    ("routemq_worker_up", "gauge",
     "1 when the worker's process exists and its health file is fresh (under systemd: and "
     "its unit is active).", "alive"),
    ("routemq_worker_planned", "gauge", "1 when the instance is in the current plan.", "planned"),
    ("routemq_worker_connected", "gauge", "1 when the worker is connected to the broker.",
     "connected"),
    ("routemq_worker_healthy", "gauge",
     "1 when the worker is alive, connected and running (or starting, within its grace "
     "period).", "healthy"),
    ("routemq_worker_restarts_total", "counter",
     "Restarts of the instance (systemd's NRestarts, or the master's count).", "restarts"),
    ("routemq_worker_messages_received_total", "counter",
     "Messages delivered to the worker by the broker.", "received"),
    ("routemq_worker_messages_processed_total", "counter",
     "Messages whose handler returned without an error.", "processed"),
    ("routemq_worker_handler_errors_total", "counter",
     "Messages whose handler raised or timed out.", "errors"),
    ("routemq_worker_messages_unrouted_total", "counter",
     "Messages that matched no route held by the worker.", "unrouted"),
    ("routemq_worker_messages_rejected_total", "counter",
     "Messages rejected before their handler (e.g. over max_payload_bytes).", "rejected"),
    ("routemq_worker_reconnects_total", "counter",
     "Times the worker lost its broker connection.", "reconnects"),
    ("routemq_worker_messages_per_second", "gauge",
     "Messages finished per second over the last ~10 seconds.", "rate"),
    ("routemq_worker_inflight_messages", "gauge", "Messages whose handler is running.",
     "inflight"),
    ("routemq_worker_queued_messages", "gauge", "Messages received, waiting for a handler.",
     "queued"),
    ("routemq_worker_resident_memory_bytes", "gauge", "Resident memory of the worker process.",
     "rss_bytes"),
    ("routemq_worker_cpu_seconds_total", "counter",
     "User and system CPU time of the worker process.", "cpu_seconds"),
    ("routemq_worker_uptime_seconds", "gauge", "Seconds since the worker started.", "uptime_s"),
    ("routemq_worker_health_age_seconds", "gauge",
     "Seconds since the worker last wrote its health file.", "health_age_s"),
    ("routemq_worker_plan_version", "gauge", "The plan version the worker applied.",
     "plan_version"),
)

ROUTE_METRICS = (
    ("routemq_route_messages_processed_total", "counter",
     "Messages of the route whose handler returned without an error, per worker.", "processed"),
    ("routemq_route_handler_errors_total", "counter",
     "Messages of the route whose handler raised or timed out, per worker.", "errors"),
    ("routemq_route_retries_total", "counter",
     "Attempts of the route's messages scheduled again after a failure, per worker.",
     "retries"),
    ("routemq_route_retrying", "gauge",
     "Messages of the route waiting in backoff for their next attempt, per worker.",
     "retrying"),
    ("routemq_route_latency_average_seconds", "gauge",
     "Average handler duration of the route since the worker started.", "avg_ms"),
)
AUTOSCALER_METRICS = (  # (key in master.json's autoscaler, name, help)
    ("enabled", "routemq_autoscaler_enabled", "1 when the autoscaler is on."),
    ("min", "routemq_autoscaler_min_workers", "The autoscaler's minimum number of workers."),
    ("max", "routemq_autoscaler_max_workers", "The autoscaler's maximum number of workers."),
    ("target", "routemq_autoscaler_target_workers", "The number of workers the autoscaler wants."),
    ("rate", "routemq_autoscaler_messages_per_second",
     "The message rate the autoscaler last measured, per second."),
)
QUANTILES = (("0.5", "p50_ms"), ("0.99", "p99_ms"), ("1", "max_ms"))


def render_metrics(status: Mapping[str, Any]) -> str:
    """Prometheus text for a dashboard made by routemq.status.build_status."""
    base = {"host": status.get("host") or "", "group": status.get("group") or ""}
    health, overview = status["health"], status["overview"]
    exp = Exposition()
    exp.add("routemq_workers_planned", "gauge", "Instances in the current plan.",
            [(base, health["total_workers"])])
    exp.add("routemq_workers_alive", "gauge", "Planned instances that are alive.",
            [(base, overview.get("alive_workers"))])
    exp.add("routemq_workers_connected", "gauge",
            "Planned instances that are alive and connected to the broker.",
            [(base, overview.get("connected_workers"))])
    exp.add("routemq_workers_healthy", "gauge",
            "Planned instances that are alive, connected and running.",
            [(base, health["healthy_workers"])])
    exp.add("routemq_fleet_health_ratio", "gauge",
            "Share of planned instances alive, connected and running (below 0.7: unhealthy).",
            [(base, health["health_percentage"] / 100)])
    exp.add("routemq_fleet_healthy", "gauge",
            "1 when `routemq status` says healthy (exit 0), else 0.",
            [(base, health["status"] == "healthy")])
    exp.add("routemq_fleet_status", "gauge", "1 for the fleet's current health status.",
            [({**base, "status": s}, health["status"] == s)
             for s in ("healthy", "degraded", "unhealthy")])
    exp.add("routemq_fleet_health_reasons", "gauge",
            "Reasons the fleet is not healthy (`routemq status` lists them).",
            [(base, len(health.get("reasons", [])))])
    exp.add("routemq_warnings", "gauge", "Warnings `routemq status` shows.",
            [(base, len(status.get("warnings", [])))])
    _session_metrics(exp, base, status.get("sessions", []))
    workers = status["workers"]
    for name, kind, help_text, key in WORKER_METRICS:
        exp.add(name, kind, help_text,
                [({**base, "worker": w["instance"]}, w.get(key)) for w in workers])
    exp.add("routemq_worker_routes_held", "gauge", "Routes the worker is assigned.",
            [({**base, "worker": w["instance"]}, len(w["routes_held"]))
             for w in workers if w["pid"]])
    _route_metrics(exp, base, workers)
    _plan_metrics(exp, base, status.get("routes", []))
    _master_metrics(exp, base, status.get("master"), bool(status.get("master_expected")))
    exp.add("routemq_dead_letters", "gauge",
            "Dead letters in the spool, per route (`routemq dead-letters` lists them).",
            [({**base, "route": route}, n) for route, n in
             ((status.get("dead_letters") or {}).get("routes") or {}).items()])
    return exp.text()


def _route_metrics(exp: Exposition, base: Labels, workers: list[Mapping[str, Any]]) -> None:
    # Latency figures of a route with no message yet are zeros, not measurements: left out.
    per_route = [({**base, "worker": w["instance"], "route": key},
                  stats if stats.get("processed") or stats.get("errors")
                  else {k: v for k, v in stats.items() if not k.endswith("_ms")})
                 for w in workers for key, stats in sorted(w.get("routes", {}).items())]
    for name, kind, help_text, key in ROUTE_METRICS:
        exp.add(name, kind, help_text, [(labels, _ms_to_s(stats.get(key)) if key.endswith("_ms")
                                          else stats.get(key)) for labels, stats in per_route])
    exp.add("routemq_route_latency_seconds", "gauge",
            "Handler duration quantiles of the route over the worker's last 1000 messages "
            "(quantile 1 = the maximum).",
            [({**labels, "quantile": q}, _ms_to_s(stats.get(key)))
             for labels, stats in per_route for q, key in QUANTILES])


def _plan_metrics(exp: Exposition, base: Labels, routes: list[Mapping[str, Any]]) -> None:
    exp.add("routemq_route_instances_planned", "gauge", "Instances the plan puts the route on.",
            [({**base, "route": r["route"]}, len(r["planned"]) if r["planned"] is not None
              else None) for r in routes])
    exp.add("routemq_route_instances_holding", "gauge",
            "Alive instances that hold the route, per their health files.",
            [({**base, "route": r["route"]}, len(r["holding"])) for r in routes])
    exp.add("routemq_route_instances_serving", "gauge",
            "Alive instances connected to the broker that hold the route (0: unhealthy).",
            [({**base, "route": r["route"]}, len(r.get("serving", r["holding"])))
             for r in routes])
    exp.add("routemq_route_plan_mismatch", "gauge",
            "1 when the instances holding the route differ from the plan.",
            [({**base, "route": r["route"]}, r["mismatch"]) for r in routes])


def _session_metrics(exp: Exposition, base: Labels, sessions: list[Mapping[str, Any]]
                     ) -> None:
    exp.add("routemq_broker_sessions_undrained", "gauge",
            "Planned-out instances whose broker session still queues their share (> 0: "
            "unhealthy).", [(base, len(sessions))])
    exp.add("routemq_broker_session_undrained_seconds", "gauge",
            "Seconds the planned-out instance's session has been in this state.",
            [({**base, "worker": s["instance"], "state": s["state"]}, s.get("age_s"))
             for s in sessions])


def _master_metrics(exp: Exposition, base: Labels, master: Mapping[str, Any] | None,
                    expected: bool) -> None:
    exp.add("routemq_master_up", "gauge",
            "1 when the master is running; 0 when it is expected (master.json, plan.json or "
            "worker units) but not running; absent: standalone workers.",
            [(base, bool(master and master["alive"]))] if master or expected else [])
    if not master:
        return
    exp.add("routemq_master_plan_version", "gauge", "The master's current plan version.",
            [(base, master.get("plan_version"))])
    scaler = master.get("autoscaler")
    if not isinstance(scaler, Mapping):
        return
    for key, name, help_text in AUTOSCALER_METRICS:
        exp.add(name, "gauge", help_text, [(base, scaler.get(key))])


def _ms_to_s(value: Any) -> float | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    return value / 1000


def write_textfile(directory: str, text: str, name: str = TEXTFILE_NAME) -> str:
    """Write ``text`` to ``directory/name`` atomically, for node-exporter's textfile collector.

    The temporary file (``.tmp-*``, which the collector ignores: it reads ``*.prom``) is
    renamed over the old one, so a scrape never sees half a file. Returns the path written.
    """
    path = os.path.join(directory, name)
    write_text_atomic(path, text)
    return path
