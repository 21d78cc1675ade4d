"""The runtime directory's documents, typed (pure): a worker's health file, master.json, the
worker states, and when a document counts as fresh. runtime.py reads and writes the bytes.

One writer and one reader each:

    Worker.health()   -> WorkerHealth.to_json() -> workers/<N>.json -> runtime.read_health
    Master.snapshot() -> MasterState.to_json()  -> master.json      -> runtime.read_master

Both readers end in `from_doc`, which trusts nothing and never raises: a field of the wrong
type becomes None and is named in a note ("workers/3.json: ignored invalid rate (want a
number >= 0)"); a field it does not know (a newer writer's) is ignored; a document that is not
an object, or is dated in the future, is unusable (``usable`` False: `routemq status` shows
the instance, nothing counts it alive).

    >>> h, notes = WorkerHealth.from_doc({"pid": 7, "updated_at": 100.0, "state": "running",
    ...                                   "rate": "fast", "colour": "red"}, 2, now=101.0)
    >>> h.state is WorkerState.RUNNING, h.rate, h.fresh(101.0), notes
    (True, None, True, ['workers/2.json: ignored invalid rate (want a number >= 0)'])

The per-route figures (``routes``) stay a checked mapping of route -> {processed, errors,
avg_ms, ...}: WorkerMetrics writes them, status passes them to `routemq status --json` as
they are and sums three of them; a record type would only be a second list of their keys.
"""
from __future__ import annotations

import dataclasses
import enum
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

CLOCK_SKEW = 5.0  # seconds a file's updated_at may be ahead of our clock
FRESH_MIN = 5.0   # seconds: the least time a document stays fresh (see fresh_limit)


def fresh_limit(health_interval: float = 1.0) -> float:
    """Seconds after which a health file or master.json is stale: three missed writes, at
    least FRESH_MIN (workers write every health_interval, the master every 0.5 s). The master's
    membership, `routemq status`, and a worker asking whether a master runs all use this.

        >>> fresh_limit(1.0), fresh_limit(4.0)
        (5.0, 12.0)
    """
    return max(3 * health_interval, FRESH_MIN)


def is_fresh(updated_at: float | None, now: float, health_interval: float = 1.0) -> bool:
    return updated_at is not None and now - updated_at <= fresh_limit(health_interval)


class WorkerState(enum.StrEnum):
    """A worker's state, as its health file says it (the values are what is on disk)."""

    STARTING = "starting"          # the process runs, no plan yet
    JOINING = "joining"            # waiting for a plan that names it (a master plans)
    SUBSCRIBING = "subscribing"    # connected, SUBACKs pending
    RUNNING = "running"
    RECONNECTING = "reconnecting"  # lost the broker after having had it
    WAITING_FOR_BROKER = "waiting for broker"  # cannot connect
    STUCK = "stuck"                # a handler past handler_timeout: no more watchdog pings
    STOPPING = "stopping"          # SIGTERM: waiting for the master to move its routes
    DRAINING = "draining"          # finishing what it received, then disconnecting


def state_of(value: str) -> WorkerState | str:
    """The WorkerState of `value`, or `value` itself (a state of a newer version).

        >>> state_of("running"), state_of("pausing")
        (<WorkerState.RUNNING: 'running'>, 'pausing')
    """
    try:
        return WorkerState(value)
    except ValueError:
        return value


# --- what a field may hold -------------------------------------------------------------------

Check = tuple[Callable[[Any], bool], str]  # (the test, what a good value is)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**63


def _is_number(v: Any) -> bool:
    # bool is no number; an int too large for a float would raise in float() later
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


COUNT: Check = (lambda v: _is_int(v) and v >= 0, "an integer >= 0")
POSITIVE: Check = (lambda v: _is_int(v) and v > 0, "an integer > 0")
AMOUNT: Check = (lambda v: _is_number(v) and v >= 0, "a number >= 0")
TEXT: Check = (lambda v: isinstance(v, str), "a string")
FLAG: Check = (lambda v: isinstance(v, bool), "true or false")
TEXTS: Check = (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
                "a list of strings")
LIST: Check = (lambda v: isinstance(v, list), "a list")


def _object_of(fields: dict[str, Check], what: str) -> Check:
    """An object whose values are objects; the listed fields, where present, pass."""
    def test(v: Any) -> bool:
        return isinstance(v, dict) and all(
            isinstance(entry, dict) and all(f[0](entry[k]) for k, f in fields.items()
                                            if k in entry)
            for entry in v.values())
    return test, what


ROUTE_FIGURES = {"processed": COUNT, "errors": COUNT, "retries": COUNT, "retrying": COUNT,
                 "avg_ms": AMOUNT, "p50_ms": AMOUNT, "p99_ms": AMOUNT, "max_ms": AMOUNT}
ROUTES: Check = _object_of(ROUTE_FIGURES, "an object of per-route figures")
RESTARTS: Check = (lambda v: isinstance(v, dict) and all(COUNT[0](n) for n in v.values()),
                   "an object of counts")
OBJECT_OR_NULL: Check = (lambda v: v is None or isinstance(v, dict), "an object or null")
AUTOSCALER = OBJECT_OR_NULL
LOAD: Check = (lambda v: isinstance(v, dict) and all(AMOUNT[0](v[k]) for k in
                                                     ("rate", "cpu_percent", "backlog") if k in v),
               "an object of numbers >= 0")
SESSION_FIELDS = {"state": TEXT, "since": AMOUNT, "detail": TEXT}
OBJECT: Check = (lambda v: isinstance(v, dict), "an object")


def _f(check: Check) -> Any:
    """A document field: None when absent or invalid; `check` says what it may hold."""
    return field(default=None, metadata={"check": check})


def _checked(cls: type, doc: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The fields of `cls` that `doc` holds and that pass their check, and one phrase per
    field that does not ("rate (want a number >= 0)"), in the order of the fields. Keys `cls`
    does not know are left out: a newer writer's addition is the business of its reader."""
    good, bad = {}, []
    for f in dataclasses.fields(cls):
        if "check" not in f.metadata or f.name not in doc:
            continue
        test, what = f.metadata["check"]
        if test(doc[f.name]):
            value = doc[f.name]
            good[f.name] = tuple(value) if isinstance(value, list) else value
        else:
            bad.append(f"{f.name} (want {what})")
    return good, bad


def _entries(entries: dict[str, Any], fields: dict[str, Check]
             ) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Each entry with only its fields that pass (an entry that is no object: none), and
    one phrase per entry that lost something.

        >>> kept, bad = _entries({"2": {"state": 7, "since": 1.0}, "3": "x"}, SESSION_FIELDS)
        >>> kept, bad[1]
        ({'2': {'since': 1.0}, '3': {}}, '3: not an object')
    """
    kept, bad = {}, []
    for key, entry in entries.items():
        if not isinstance(entry, dict):
            kept[key] = {}
            bad.append(f"{key}: not an object")
            continue
        kept[key] = {k: v for k, v in entry.items() if k in fields and fields[k][0](v)}
        wrong = [f"{k} (want {fields[k][1]})" for k in fields if k in entry and k not in kept[key]]
        if wrong:
            bad.append(f"{key}: ignored invalid {', '.join(wrong)}")
    return kept, bad


def _future(updated: Any, now: float) -> str | None:
    if isinstance(updated, (int, float)) and updated > now + CLOCK_SKEW:
        return (f"updated_at is {updated - now:.0f}s in the future (more than the "
                f"{CLOCK_SKEW:.0f}s allowed for clock skew); ignored")
    return None


class _Document:
    """to_doc/to_json for the frozen dataclasses below: every checked field, by name."""

    def to_doc(self) -> dict[str, Any]:
        doc = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if "check" in f.metadata:
                value = getattr(self, f.name)
                doc[f.name] = list(value) if isinstance(value, tuple) else value
        return doc

    def to_json(self) -> str:
        """What the writer puts on disk (compact, keys sorted)."""
        return json.dumps(self.to_doc(), separators=(",", ":"), sort_keys=True)


# --- workers/<N>.json ---------------------------------------------------------------------------

@dataclass(frozen=True)
class WorkerHealth(_Document):
    """Worker `instance`'s health file, rewritten every health_interval (Worker.health()).
    Every field but `instance` may be None: absent, or not of its type."""

    instance: int = field(metadata={"check": POSITIVE})  # the file name's, whatever it says
    pid: int | None = _f(POSITIVE)
    client_id: str | None = _f(TEXT)
    state: WorkerState | str | None = _f(TEXT)  # a str: a state of a newer version
    state_since: float | None = _f(AMOUNT)
    connected: bool | None = _f(FLAG)
    subscriptions: tuple[str, ...] | None = _f(TEXTS)
    routes_held: tuple[str, ...] | None = _f(TEXTS)
    inflight: int | None = _f(COUNT)
    queued: int | None = _f(COUNT)
    reconnects: int | None = _f(COUNT)
    rss_bytes: int | None = _f(COUNT)
    cpu_seconds: float | None = _f(AMOUNT)
    started_at: float | None = _f(AMOUNT)
    updated_at: float | None = _f(AMOUNT)
    plan_version: int | None = _f(COUNT)
    # WorkerMetrics.snapshot()
    received: int | None = _f(COUNT)
    processed: int | None = _f(COUNT)
    errors: int | None = _f(COUNT)
    unrouted: int | None = _f(COUNT)
    rejected: int | None = _f(COUNT)
    rate: float | None = _f(AMOUNT)
    routes: Mapping[str, Mapping[str, float]] | None = _f(ROUTES)
    usable: bool = True  # False: the file exists but cannot be used at all (not written)

    @classmethod
    def unusable(cls, instance: int) -> WorkerHealth:
        return cls(instance=instance, usable=False)

    @classmethod
    def from_doc(cls, doc: Any, instance: int, now: float, name: str | None = None
                 ) -> tuple[WorkerHealth, list[str]]:
        """The health file of `instance` (named `name` in the notes), checked."""
        name = name or f"workers/{instance}.json"
        if not isinstance(doc, dict):
            return cls.unusable(instance), [f"{name}: not a JSON object"]
        good, bad = _checked(cls, doc)
        future = _future(good.get("updated_at"), now)
        if future:
            return cls.unusable(instance), [f"{name}: {future}"]
        notes = []
        missing = [k for k in ("pid", "updated_at") if k not in doc]
        if missing or bad:
            notes.append(f"{name}: " + "; ".join(
                ([f"missing {', '.join(missing)}"] if missing else [])
                + ([f"ignored invalid {', '.join(bad)}"] if bad else [])))
        if good.get("instance", instance) != instance:
            notes.append(f"{name}: says instance {doc.get('instance')!r}; the file name wins")
        if "state" in good:
            good["state"] = state_of(good["state"])
        return cls(**{**good, "instance": instance}), notes

    def fresh(self, now: float, health_interval: float = 1.0) -> bool:
        """Rewritten recently enough to come from a live worker (see fresh_limit)."""
        return self.usable and is_fresh(self.updated_at, now, health_interval)

    @property
    def leaving(self) -> bool:
        """It said it is stopping: the master moves its routes away."""
        return self.state == WorkerState.STOPPING


# --- master.json --------------------------------------------------------------------------------

@dataclass(frozen=True)
class MasterState(_Document):
    """master.json, rewritten by the master every tick (Master.snapshot()) for `routemq
    status` and for workers asking whether a master runs."""

    pid: int | None = _f(POSITIVE)
    hostname: str | None = _f(TEXT)
    group: str | None = _f(TEXT)
    backend: str | None = _f(TEXT)  # "systemd", "processes", "none"
    started_at: float | None = _f(AMOUNT)
    updated_at: float | None = _f(AMOUNT)
    plan_version: int | None = _f(COUNT)
    instances: tuple[int, ...] | None = _f(LIST)  # planned; positive integers, sorted
    members: tuple[int, ...] | None = _f(LIST)
    handover: bool | None = _f(FLAG)  # a plan change is being applied
    restarts: Mapping[str, int] | None = _f(RESTARTS)  # instance -> restarts by the back end
    autoscaler: Mapping[str, Any] | None = _f(AUTOSCALER)
    load: Mapping[str, float] | None = _f(LOAD)  # rate, cpu_percent, backlog
    warnings: tuple[str, ...] | None = _f(TEXTS)
    # instance -> {state, since, detail} (orphans.py); an entry keeps only its valid fields:
    # a session whose details cannot be read is still a session (status: unhealthy)
    sessions: Mapping[str, Mapping[str, Any]] | None = _f(OBJECT)
    # the last reload: {"ok": bool, "at": time, "error": text} (a failed one changed nothing)
    reload: Mapping[str, Any] | None = _f(OBJECT_OR_NULL)
    # a rolling restart in progress (rollout.py): {"instance", "step", "done", "pending"}
    rollout: Mapping[str, Any] | None = _f(OBJECT_OR_NULL)

    @classmethod
    def from_doc(cls, doc: Any, now: float) -> tuple[MasterState | None, list[str]]:
        """master.json checked; None when unusable as a whole."""
        name = "master.json"
        if not isinstance(doc, dict):
            return None, [f"{name}: not a JSON object"]
        good, bad = _checked(cls, doc)
        future = _future(good.get("updated_at"), now)
        if future:
            return None, [f"{name}: {future}"]
        notes = [f"{name}: ignored invalid {', '.join(bad)}"] if bad else []
        for key in ("instances", "members"):
            if key in good:
                numbers = [i for i in good[key] if POSITIVE[0](i)]
                if len(numbers) != len(good[key]):
                    notes.append(f"{name}: {key} holds something other than positive integers")
                good[key] = tuple(sorted(set(numbers)))
        if "sessions" in good:
            good["sessions"], bad = _entries(good["sessions"], SESSION_FIELDS)
            notes += [f"{name}: sessions: {b}" for b in bad]
        return cls(**good), notes

    def fresh(self, now: float, health_interval: float = 1.0) -> bool:
        return is_fresh(self.updated_at, now, health_interval)
