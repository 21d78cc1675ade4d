"""`routemq status` as text for a terminal: the heading line, then tables of workers, routes,
broker sessions and the master, then the warnings. Pure: a status dict in, text out
(routemq.status builds the dict).
"""
from __future__ import annotations

from typing import Any, Mapping

from routemq.status import duration, id_list


def summary_line(status: Mapping[str, Any]) -> str:
    """One line for the master's STATUS= (and the table's heading).

        'degraded: 3/4 workers healthy (75.0%), 12.5 msg/s, 2 warnings'
    """
    h, o = status["health"], status["overview"]
    n = len(status["warnings"])
    return (f"{h['status']}: {h['healthy_workers']}/{h['total_workers']} workers healthy "
            f"({h['health_percentage']}%), {o['rate']:g} msg/s"
            + (f", {n} warning{'s' if n != 1 else ''}" if n else ""))


# --- the table ----------------------------------------------------------------------------------

def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}" if abs(value) < 1e6 else f"{value:.0f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [header] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]


WORKER_COLUMNS = [
    ("INST", "instance"), ("PID", "pid"), ("ALIVE", "alive"), ("STATE", "state"),
    ("RESTARTS", "restarts"), ("CONN", "connected"), ("MSG/S", "rate"),
    ("PROCESSED", "processed"), ("ERRORS", "errors"), ("AVG MS", "latency_avg_ms"),
    ("P99 MS", "latency_p99_ms"), ("INFLIGHT", "inflight"), ("RSS MB", "memory_mb"),
    ("CPU %", "cpu_percent"), ("ROUTES", "routes_held"),
]


def _route_check(route: Mapping[str, Any]) -> str:
    if not route["holding"]:
        return "NO WORKER"
    if route["uncovered"]:
        return "DISCONNECTED"
    if route["mismatch"]:
        return "MISMATCH"
    planned = route["planned"]
    if planned is not None and len(route["serving"]) < len(planned):
        return f"{len(route['serving'])}/{len(planned)}"  # of them alive and connected
    return "ok"


def _dead_letter_lines(dead: Mapping[str, Any]) -> list[str]:
    """Letters per route in the spool (`routemq dead-letters` lists them); nothing when
    the spool is empty."""
    routes = dead.get("routes") or {}
    if not routes:
        return []
    return ["", f"dead letters in {dead.get('spool')} (`routemq dead-letters`):"] + \
        _table(["ROUTE", "LETTERS"], [[route, n] for route, n in routes.items()])


MASTER_STATES = {"running": "running", "stale": "NOT RESPONDING"}


def render_table(status: Mapping[str, Any]) -> str:
    """The dashboard as text for a terminal: heading, workers, routes, master, warnings."""
    o = status["overview"]
    reasons = status["health"]["reasons"]
    lines = [f"RouteMQ {summary_line(status)}"] + [f"  - {r}" for r in reasons] + [
             f"host {status['host']}  group {status['group'] or '-'}  backend "
             f"{status['backend']}  plan from {status['plan_source'] or '-'}  "
             f"processed {o['processed']}  errors {o['errors']}", ""]
    rows = []
    for w in status["workers"]:
        row = [w[key] for _, key in WORKER_COLUMNS]
        row[0] = f"{w['instance']}" + ("" if w["planned"] else "*")
        row[-1] = len(w["routes_held"]) if w["health_age_s"] is not None else None
        rows.append(row)
    if rows:
        lines += _table([h for h, _ in WORKER_COLUMNS], rows)
        lines.append("CPU % is the average since the worker started (cpu_seconds / uptime)."
                     + ("  * not in the plan." if any(not w["planned"]
                                                        for w in status["workers"]) else ""))
    else:
        lines.append("no workers planned or running")
    if status["routes"]:
        lines.append("")
        lines += _table(["ROUTE", "PLANNED", "HOLDING", "PROCESSED", "ERRORS", "RETRIES",
                         "RETRYING", "CHECK"], [
            [r["route"], id_list(r["planned"]) if r["planned"] is not None else "?",
             id_list(r["holding"]), r.get("processed"), r.get("errors"), r.get("retries"),
             r.get("retrying"), _route_check(r)]
            for r in status["routes"]])
    if status["sessions"]:
        lines += ["", "broker sessions not drained yet (instances out of the plan):"]
        lines += _table(["INST", "STATE", "FOR", "DETAIL"], [
            [s["instance"], s["state"], duration(s["age_s"]), s["detail"]]
            for s in status["sessions"]])
    lines += _dead_letter_lines(status.get("dead_letters") or {})
    m = status["master"]
    lines.append("")
    if m is None and status["master_expected"]:
        lines.append(f"master: NOT RUNNING ({status['master_expected']}; no master.json)")
    elif m is None:
        lines.append("master: none (standalone workers)")
    else:
        scaler = m["autoscaler"]
        lines.append(
            f"master: pid {_cell(m['pid'])} {MASTER_STATES.get(m['state'], 'NOT RUNNING')}, "
            f"backend {_cell(m['backend'])}, plan version {_cell(m['plan_version'])}, "
            f"up {duration(m['uptime_s'])}, updated {duration(m['updated_age_s'])} ago"
            + (", plan hand-over in progress" if m["handover"] else "")
            + (", reload in progress" if m.get("rollout") else ""))
        if isinstance(scaler, Mapping) and scaler.get("enabled"):
            lines.append(
                f"autoscaler: {scaler.get('min')}..{scaler.get('max')} workers, target "
                f"{_cell(scaler.get('target'))}, {_cell(scaler.get('rate'))} msg/s, last: "
                f"{_cell(scaler.get('last_action'))}")
        elif isinstance(scaler, Mapping):
            lines.append("autoscaler: off")
    others = [w for w in status["warnings"] if w not in reasons]  # reasons are at the top
    if others:
        lines += ["", "warnings:"] + [f"  - {w}" for w in others]
    return "\n".join(lines)
