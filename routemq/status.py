"""The fleet dashboard (WorkerDashboard in RouteMQ's shared-subscriptions guide, "the
guide" below), built from a fleet Snapshot without I/O.

    snap = routemq.fleet.read_fleet(config.runtime_dir, health_interval=1.0)
    status = build_status(snap)           # a JSON-ready dict: `routemq status --json`
    print(status_text.render_table(status))  # `routemq status`
    sys.exit(exit_code(status))           # 0 healthy, 1 degraded, 3 unhealthy

Who is alive: a worker whose process exists and whose health file is fresh (rewritten within
max(3 x health_interval, 5 s): documents.fresh_limit); under systemd its unit must also be
active. A planned instance with no health file is "missing"; a crashed worker leaves a stale
file ("dead" when its pid is gone, "stale" when the pid exists but the file is old: hung, or
the pid was reused); a file that cannot be used at all is "unreadable".

Who is healthy: an alive worker, connected to the broker, in state "running" (or still
starting, "joining" / "subscribing", for at most STARTUP_GRACE seconds).

Overall health is what an operator means, and ``health["reasons"]`` says why it is not:
- unhealthy: no worker connected to the broker; a route that no alive, connected worker
  holds; a master that is expected (master.json, plan.json or worker units exist) but not
  running; a planned-out instance whose broker session is not drained yet (master.json
  "sessions": its queued messages reach nobody); fewer than 70 % of the planned instances
  healthy (the guide's threshold); nothing planned at all;
- degraded: otherwise, any planned instance that is not healthy;
- healthy: none of the above.
The guide's 90 % line (``overall_health``) stays as its share figure, but one unhealthy
planned instance is a reason, so "healthy" needs all of them.

Two figures are derived, not measured, because one snapshot has no history:
- cpu_percent is the average since the worker started: cpu_seconds / uptime x 100;
- latency_avg_ms weighs each route's lifetime average by its message count, and
  latency_p99_ms is the worst route's p99 over its last 1,000 messages (an upper bound of the
  worker-wide p99).
"""
from __future__ import annotations

from typing import Any, Mapping

from routemq.documents import MasterState, WorkerHealth, WorkerState
from routemq.errors import EXIT_FAILURE, EXIT_INACTIVE, EXIT_OK
from routemq.fleet import Snapshot, UnitState, unit_name

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
# `routemq status` exit codes; 3 as systemctl's "unit not active", 2 stays a config error.
EXIT_CODES = {HEALTHY: EXIT_OK, DEGRADED: EXIT_FAILURE, UNHEALTHY: EXIT_INACTIVE}
# A worker waits up to 15 s for a plan naming it (worker.PLAN_WAIT), then connects and
# subscribes: that long it is starting, not failing. Under systemd (Type=notify) the unit is
# "activating/start" until READY=1, then "starting" until the new process's health file.
STARTING_STATES = (WorkerState.STARTING, WorkerState.JOINING, WorkerState.SUBSCRIBING,
                   "activating/start")
STARTUP_GRACE = 30.0
NOT_ALIVE = {"missing": "no health file", "dead": "pid {pid} is gone",
             "stale": "health file not updated for {health_age_s}s",
             "unreadable": "its health file cannot be used"}


def overall_health(healthy: int, planned: int) -> dict[str, Any]:
    """The guide's _get_health_status, with its keys: the share of planned instances healthy.

        >>> overall_health(3, 4)["status"], overall_health(9, 10)["status"]
        ('degraded', 'healthy')
    """
    percentage = healthy / planned * 100 if planned else 0.0
    status = HEALTHY if percentage >= 90 else DEGRADED if percentage >= 70 else UNHEALTHY
    return {"status": status, "healthy_workers": healthy, "total_workers": planned,
            "health_percentage": round(percentage, 1)}


def exit_code(status: Mapping[str, Any]) -> int:
    return EXIT_CODES[status["health"]["status"]]


def classify(health: WorkerHealth | None, pid_alive: bool | None, unit: UnitState | None,
             now: float, health_interval: float) -> tuple[bool, str]:
    """(alive, state) of one instance.

        >>> h = WorkerHealth(instance=1, pid=7, updated_at=100.0, state=WorkerState.RUNNING)
        >>> classify(h, True, None, 101, 1), classify(h, False, None, 101, 1)
        ((True, 'running'), (False, 'dead'))
    """
    if unit is not None and not unit.active:
        # systemd's word first: failed, activating (starting or auto-restart), inactive.
        return False, unit.active_state if unit.sub_state in ("", "dead", unit.active_state) \
            else f"{unit.active_state}/{unit.sub_state}"
    if health is None:
        return False, "missing" if unit is None else "starting"
    if health.pid is None or health.updated_at is None:  # an unusable file has neither
        return False, "unreadable"
    if unit is not None and unit.main_pid and health.pid != unit.main_pid:
        return False, "starting"  # systemd restarted it; the file is the old process's
    if not pid_alive:
        return False, "dead"
    if not health.fresh(now, health_interval):
        return False, "stale"
    return True, str(health.state or "unknown")


def instance_problem(row: Mapping[str, Any]) -> str | None:
    """Why an instance (a dashboard row) does not serve its routes; None when it does, or
    when it is still starting within STARTUP_GRACE.

        >>> instance_problem({"instance": 2, "alive": True, "connected": False,
        ...                   "state": "waiting for broker", "state_for_s": 40.0})
        'instance 2 is not connected to the broker (waiting for broker)'
        >>> instance_problem({"instance": 3, "alive": True, "connected": False,
        ...                   "state": "joining", "state_for_s": 2.0}) is None
        True
    """
    name, state = f"instance {row['instance']}", row["state"]
    if state in STARTING_STATES:
        since = row["state_for_s"]
        if since is not None and since <= STARTUP_GRACE:
            return None
        return f"{name} is still {state}" + \
            (f" after {duration(since)}" if since is not None else "")
    if not row["alive"]:
        why = NOT_ALIVE.get(state)
        return f"{name} is not alive: {state}" + (f" ({why.format(**row)})" if why else "")
    if not row["connected"]:
        return f"{name} is not connected to the broker ({state})"
    if state == WorkerState.STUCK:
        return f"{name} has a handler stuck past handler_timeout"
    if state != WorkerState.RUNNING:
        return f"{name} is {state}, not running"
    return None


def _latency(routes: Mapping[str, Mapping[str, float]]) -> tuple[float | None, float | None]:
    """(count-weighted average, worst p99) over a health file's per-route figures, in ms
    (checked by WorkerHealth.from_doc: each present figure is a number)."""
    total = weighted = 0.0
    worst = None
    for stats in routes.values():
        n = stats.get("processed", 0) + stats.get("errors", 0)
        if n:
            total += n
            weighted += n * stats.get("avg_ms", 0)
            worst = max(worst or 0.0, stats.get("p99_ms", 0))
    return (round(weighted / total, 3) if total else None), worst


def _num(value: Any) -> float:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _age(now: float, since: float | None) -> float | None:
    return round(max(now - since, 0.0), 1) if since is not None else None


def _state_for(health: WorkerHealth, state: str, unit: UnitState | None, snap: Snapshot,
               now: float) -> float | None:
    """Seconds in the current state, where it is known: the file's state_since when the
    worker writes it; a starting state began when the process did (started_at, from the
    unit's current process only), or when systemd saw it ready ("starting")."""
    if unit is not None and state == "starting":
        return round(snap.monotonic - unit.active_since, 1) \
            if unit.active_since is not None else None
    if unit is not None and (not unit.main_pid or health.pid != unit.main_pid):
        return None  # the file is an earlier process's
    since = health.state_since
    if since is None and state in STARTING_STATES:
        since = health.started_at
    return _age(now, since)


def _restarts(instance: int, unit: UnitState | None, master: MasterState | None
              ) -> int | None:
    if unit is not None:
        return unit.restarts
    # The process back end lists only instances it restarted; others have 0. Without a
    # back end that restarts (standalone, backend "none"), nobody counts: unknown.
    default = 0 if master is not None and master.backend == "processes" else None
    restarts = master.restarts if master is not None else None
    return (restarts or {}).get(str(instance), default)


def _worker_row(instance: int, planned: bool, health: WorkerHealth | None, snap: Snapshot,
                now: float) -> dict[str, Any]:
    unit = (snap.units or {}).get(instance)
    h = health if health is not None else WorkerHealth.unusable(instance)
    file_pid = h.pid
    alive, state = classify(health, snap.pids.get(file_pid) if file_pid else None, unit, now,
                            snap.health_interval)
    # systemd knows the current process even before it wrote its first health file.
    pid = unit.main_pid if unit is not None and unit.main_pid else file_pid
    started, updated = h.started_at, h.updated_at
    uptime = updated - started if started is not None and updated is not None \
        and updated > started else None
    cpu = h.cpu_seconds
    routes = h.routes or {}
    avg, p99 = _latency(routes)
    rss = h.rss_bytes
    row = {
        "instance": instance, "planned": planned, "pid": pid or None, "alive": alive,
        "state": state, "state_for_s": _state_for(h, state, unit, snap, now)
        if alive or state in STARTING_STATES else None,
        "restarts": _restarts(instance, unit, snap.master),
        # Only a worker that says it is connected is: a missing or odd value is not.
        "connected": alive and h.connected is True,
        # A dead worker's last rate is history, not load.
        "rate": (h.rate or 0) if alive else 0.0,
        "received": h.received, "processed": h.processed,
        "errors": h.errors, "unrouted": h.unrouted, "rejected": h.rejected,
        "latency_avg_ms": avg, "latency_p99_ms": p99,
        "inflight": h.inflight, "queued": h.queued,
        "rss_bytes": rss if isinstance(rss, int) and rss > 0 else None,
        "memory_mb": round(rss / 2**20, 1) if isinstance(rss, int) and rss > 0 else None,
        "cpu_seconds": cpu,
        "cpu_percent": round(cpu / uptime * 100, 1) if uptime and cpu is not None else None,
        "uptime_s": round(uptime, 1) if uptime else None,
        "health_age_s": round(now - updated, 1) if updated is not None else None,
        "reconnects": h.reconnects,
        "routes_held": list(h.routes_held or []),
        "plan_version": h.plan_version,
        "client_id": h.client_id,
        "unit": None if unit is None else {
            "name": unit_name(instance), "active_state": unit.active_state,
            "sub_state": unit.sub_state, "restarts": unit.restarts, "main_pid": unit.main_pid,
            "active_for_s": round(snap.monotonic - unit.active_since, 1)
            if unit.active_since is not None else None},
        "routes": {k: dict(v) for k, v in routes.items()},
    }
    row["problem"] = instance_problem(row)
    row["healthy"] = row["problem"] is None
    return row


def _planned_instances(snap: Snapshot) -> tuple[list[int], str | None]:
    if snap.master is not None and snap.master.instances is not None:
        return sorted(snap.master.instances), "master.json"
    if snap.plan is not None:
        return sorted(snap.plan.assignments), snap.plan_source
    if snap.units:
        return sorted(snap.units), "systemd units"
    return sorted(snap.workers), "health files" if snap.workers else None


def _routes_section(snap: Snapshot, workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each route: the instances planned for it, the alive ones holding it and those of them
    connected to the broker (``serving``).

    A mismatch is a disagreement between alive workers and the plan (an alive planned owner
    that does not hold the route, or a holder the plan does not name); a dead owner is not
    one (the instance rows say it), but a route no alive, connected worker holds is
    ``uncovered``: its messages reach nobody.
    """
    alive = {w["instance"] for w in workers if w["alive"]}
    connected = {w["instance"] for w in workers if w["connected"]}
    holding: dict[str, list[int]] = {}
    for w in workers:
        if w["alive"]:
            for key in w["routes_held"]:
                holding.setdefault(key, []).append(w["instance"])
    planned = snap.plan.routes if snap.plan is not None else {}
    rows = []
    for key in sorted(set(planned) | set(holding)):
        want = sorted(planned.get(key, ())) if snap.plan is not None else None
        have = sorted(holding.get(key, []))
        missing = [i for i in want if i in alive and i not in have] if want is not None else []
        extra = [i for i in have if i not in want] if want is not None else []
        serving = [i for i in have if i in connected]
        rows.append({"route": key, "shared": key.startswith("shared:"), "planned": want,
                     "holding": have, "serving": serving, "missing": missing,
                     "unexpected": extra, "mismatch": bool(missing or extra),
                     "uncovered": not serving, **_route_totals(workers, key)})
    return rows


ROUTE_TOTALS = ("processed", "errors", "retries", "retrying")


def _route_totals(workers: list[dict[str, Any]], key: str) -> dict[str, int]:
    """A route's counts summed over the workers' health files (those of this run of each
    worker: a restart starts from 0). `retrying`: messages waiting in backoff now."""
    return {name: sum(int(w.get("routes", {}).get(key, {}).get(name, 0)) for w in workers)
            for name in ROUTE_TOTALS}


def _master_section(snap: Snapshot, now: float) -> dict[str, Any] | None:
    m = snap.master
    if m is None:
        return None
    pid, fresh = m.pid, m.fresh(now, snap.health_interval)
    pid_alive = bool(pid and snap.pids.get(pid))
    return {
        "pid": pid, "alive": pid_alive and fresh,
        # running; dead (pid gone); stale (pid there, master.json old: hung); unknown (no pid)
        "state": "running" if pid_alive and fresh else "stale" if pid_alive
        else "dead" if pid else "unknown",
        "hostname": m.hostname, "group": m.group, "backend": m.backend,
        "plan_version": m.plan_version,
        "instances": list(m.instances) if m.instances is not None else None,
        "uptime_s": round(now - m.started_at, 1) if m.started_at is not None else None,
        "updated_age_s": round(now - m.updated_at, 1) if m.updated_at is not None else None,
        "autoscaler": m.autoscaler,
        "handover": bool(m.handover),  # a plan change is being applied
        "warnings": list(m.warnings or ()),
        "reload": dict(m.reload) if m.reload else None,
        "rollout": dict(m.rollout) if m.rollout else None,
    }


def _master_expected(snap: Snapshot) -> str | None:
    """Why a master should be running here, or None: only a master writes master.json and
    plan.json, and worker units are started by routemq.target with routemq-master."""
    if snap.master is not None:
        return "master.json exists"
    if snap.plan_source == "plan.json":
        return "plan.json exists"
    if snap.units:
        return "routemq-worker@ units exist"
    return None


def _master_problem(master: Mapping[str, Any] | None, expected: str | None) -> str | None:
    if expected is None or (master is not None and master["alive"]):
        return None
    if master is None:
        return f"no master is running: {expected} but there is no master.json"
    age = master["updated_age_s"]
    updated = f"master.json last updated {age:.0f}s ago" if age is not None else \
        "master.json has no update time"
    if master["state"] == "unknown":
        return f"the master's state is unknown: master.json has no pid ({updated})"
    if master["state"] == "stale":
        return f"master (pid {master['pid']}) is not responding: {updated}"
    return f"master (pid {master['pid']}) is not running: {updated}"


def _sessions_section(snap: Snapshot, now: float) -> list[dict[str, Any]]:
    """master.json's "sessions": planned-out instances whose broker session still holds
    their share (each one is a reason to be unhealthy). An entry without details is still a
    session: only its details are unknown. Absent (older masters, or not readable: a note
    says so): none."""
    sessions = snap.master.sessions if snap.master is not None else None
    rows = []
    for key in sorted(sessions or {}, key=lambda k: (len(k), k)):
        entry = sessions[key]  # its fields checked by MasterState.from_doc
        since, state, detail = entry.get("since"), entry.get("state"), entry.get("detail")
        rows.append({
            "instance": int(key) if key.isdigit() else key,
            "state": state or "unknown",
            "since": since, "age_s": _age(now, since),
            # One line, bounded: the text comes from a file, it goes to a terminal.
            "detail": detail.splitlines()[0][:200] if detail and detail.strip() else None})
    return rows


def _session_problem(session: Mapping[str, Any]) -> str:
    """"instance 2 is out of the plan but its broker session has not been drained
    (draining for 12s)"."""
    how = session["state"] + (f" for {duration(session['age_s'])}"
                              if session["age_s"] is not None else "")
    return (f"instance {session['instance']} is out of the plan but its broker session has "
            f"not been drained ({how}" + (f": {session['detail']}" if session["detail"]
                                           else "") + ")")


def _route_problem(route: Mapping[str, Any]) -> str:
    held = (f"; held by {id_list(route['holding'])}, not connected to the broker"
            if route["holding"] else "")
    return (f"route {route['route']} is held by no alive, connected worker (planned on "
            f"{id_list(route['planned'])}{held})")


def _reload_problem(master: Mapping[str, Any] | None) -> str | None:
    """A reload the running master refused: the operator's new version is not running."""
    last = master.get("reload") if master is not None and master["alive"] else None
    if not isinstance(last, Mapping) or last.get("ok") is not False:
        return None
    return f"the last reload failed, the previous version keeps running: {last.get('error')}"


def _health(workers: list[dict[str, Any]], routes: list[dict[str, Any]],
            master_problem: str | None, sessions: list[dict[str, Any]],
            reload_problem: str | None = None) -> dict[str, Any]:
    """overall_health over the healthy share, then the rules: each reason of ``severe`` is
    unhealthy whatever the share; a planned instance's own problem is at least degraded.
    What follows from a reason already given is not repeated: with no worker connected no
    route is served, and a share under 70 % is said only when nothing else explains it."""
    planned = [w for w in workers if w["planned"]]
    share = overall_health(sum(w["healthy"] for w in planned), len(planned))
    severe = [master_problem] if master_problem else []
    severe += [_session_problem(s) for s in sessions]
    if not planned:
        severe.append("no worker is planned or running")
    elif not any(w["connected"] for w in workers):
        severe.append("no worker is connected to the broker")
    else:
        severe += [_route_problem(r) for r in routes if r["uncovered"]]
    if planned and share["status"] == UNHEALTHY and not severe:
        severe.append(f"only {share['healthy_workers']} of {share['total_workers']} planned "
                      f"workers are healthy ({share['health_percentage']}%; unhealthy below "
                      f"70%)")
    minor = [w["problem"] for w in planned if w["problem"]]
    minor += [reload_problem] if reload_problem else []
    status = UNHEALTHY if severe else DEGRADED if minor else HEALTHY
    return {**share, "status": status, "reasons": severe + minor}


def _warnings(snap: Snapshot, master: dict[str, Any] | None, workers: list[dict[str, Any]],
              routes: list[dict[str, Any]], reasons: list[str]) -> list[str]:
    """Everything worth a look: the health reasons first, then what does not decide health
    (unreadable files, plan warnings, instances outside the plan or starting, plan
    versions, routes held elsewhere than planned)."""
    out = list(reasons) + list(snap.notes)
    if snap.plan is not None:
        out.extend(snap.plan.warnings)
    if master is not None:  # the master repeats its plan's warnings: each is said once
        out.extend(f"master: {w}" for w in master["warnings"] if w not in out)
    rollout = master["rollout"] if master else None
    if isinstance(rollout, Mapping) and rollout.get("instance") is not None:
        out.append(f"reload in progress: restarting instance {rollout['instance']} (step "
                   f"{rollout.get('step')}); done {rollout.get('done')}, next "
                   f"{rollout.get('pending')}")
    version = master["plan_version"] if master else None
    for w in workers:
        name = f"instance {w['instance']}"
        if not w["planned"] and w["alive"]:
            out.append(f"{name} is running but not in the plan")
            if w["problem"]:
                out.append(w["problem"])
        if w["healthy"] and w["state"] in STARTING_STATES:
            out.append(f"{name} is starting ({w['state']} for {duration(w['state_for_s'])})")
        if w["alive"] and isinstance(version, int) and isinstance(w["plan_version"], int) \
                and w["plan_version"] != version:
            out.append(f"{name} applies plan version {w['plan_version']}, the master's is "
                       f"{version}")
    for r in routes:
        if r["missing"]:
            out.append(f"route {r['route']} is planned on alive instance(s) "
                       f"{id_list(r['missing'])}, which do not hold it")
        if r["unexpected"]:
            out.append(f"route {r['route']} is held by unplanned instance(s) "
                       f"{id_list(r['unexpected'])}")
    return list(dict.fromkeys(out))  # e.g. a reason that is also a note: once


def duration(seconds: float | None) -> str:
    """3725 -> '1h2m', 75 -> '1m15s', 4.2 -> '4s'."""
    if seconds is None:
        return "-"
    s = int(max(seconds, 0))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60}m"
    return f"{s // 60}m{s % 60}s" if s >= 60 else f"{s}s"


def id_list(ids: list[int] | None) -> str:
    return ",".join(map(str, ids)) if ids else "-"


def build_status(snap: Snapshot, now: float | None = None) -> dict[str, Any]:
    """The dashboard as a JSON-ready dict (the guide's get_dashboard_data, extended).

    Keys: generated_at, host, group, runtime_dir, backend, plan_source, master_expected,
    overview, health (status, healthy_workers, total_workers, health_percentage, reasons),
    workers (one row per instance, planned or found), routes, master, sessions, warnings.

    A worked example: four planned workers on one shared route; worker 4 lost the broker.

        >>> from routemq.plan import Plan
        >>> def health(i, connected=True, state=WorkerState.RUNNING):
        ...     return WorkerHealth(instance=i, pid=100 + i, updated_at=99.5, started_at=50.0,
        ...                         state=state, connected=connected, routes_held=("shared:a",))
        >>> snap = Snapshot(runtime_dir="/run/routemq", taken_at=100.0, monotonic=0.0,
        ...                 hostname="h", plan=Plan({i: ("shared:a",) for i in (1, 2, 3, 4)}),
        ...                 plan_source="standalone", pids={i: True for i in (101, 102, 103)},
        ...                 workers={i: health(i) for i in (1, 2, 3)})
        >>> snap.workers[4] = health(4, False, WorkerState.RECONNECTING)
        >>> snap.pids[104] = True
        >>> s = build_status(snap)
        >>> s["health"]["status"], s["health"]["healthy_workers"], exit_code(s)
        ('degraded', 3, 1)
        >>> s["health"]["reasons"]
        ['instance 4 is not connected to the broker (reconnecting)']

    The broker goes away for all of them: nobody serves shared:a.

        >>> snap.workers = {i: health(i, False, WorkerState.WAITING_FOR_BROKER)
        ...                 for i in (1, 2, 3, 4)}
        >>> s = build_status(snap)
        >>> s["health"]["status"], exit_code(s), s["health"]["reasons"][0]
        ('unhealthy', 3, 'no worker is connected to the broker')
        >>> len(s["health"]["reasons"])  # and one line for each instance
        5
    """
    now = snap.taken_at if now is None else now
    planned, source = _planned_instances(snap)
    instances = sorted(set(planned) | set(snap.workers))
    workers = [_worker_row(i, i in planned, snap.workers.get(i), snap, now) for i in instances]
    routes = _routes_section(snap, workers)
    master = _master_section(snap, now)
    expected = _master_expected(snap)
    sessions = _sessions_section(snap, now)
    health = _health(workers, routes, _master_problem(master, expected), sessions,
                     _reload_problem(master))
    in_plan = [w for w in workers if w["planned"]]
    m = snap.master or MasterState()
    group = m.group or snap.group
    return {
        "generated_at": now,
        "host": m.hostname or snap.hostname,
        "group": group,
        "runtime_dir": snap.runtime_dir,
        "backend": m.backend or ("systemd" if snap.units else "standalone"),
        "plan_source": source,
        "master_expected": expected,
        "overview": {
            "total_workers": len(planned),
            "alive_workers": sum(1 for w in in_plan if w["alive"]),
            "connected_workers": sum(1 for w in in_plan if w["connected"]),
            "running_unplanned": sum(1 for w in workers if w["alive"] and not w["planned"]),
            "routes": len(routes), "shared_routes": sum(1 for r in routes if r["shared"]),
            "undrained_sessions": len(sessions),
            "group_name": group,
            "processed": sum(_num(w["processed"]) for w in workers),
            "errors": sum(_num(w["errors"]) for w in workers),
            "rate": round(sum(w["rate"] for w in workers), 2),
            "dead_letters": sum(snap.dead_letters.values()),
        },
        "dead_letters": {"spool": snap.dead_letter_spool,
                         "routes": dict(sorted(snap.dead_letters.items()))},
        "health": health,
        "workers": workers,
        "routes": routes,
        "master": master,
        "sessions": sessions,
        "warnings": _warnings(snap, master, workers, routes, health["reasons"]),
    }
