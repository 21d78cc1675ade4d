"""Which instances the master plans for, and how a plan change is handed over (pure).

The master cannot see systemd's watchdog pings or the units' start and stop events, so it
reads the workers' health files (runtime_dir/workers/N.json) and decides membership from
them, tick by tick:

- a fresh health file (WorkerHealth.fresh) of an instance outside the plan: it joins
  (started by hand, by the autoscaler, or a restarted host);
- state "stopping" or a vanished file of a member: it leaves (a clean stop removes the file,
  a crash does not: systemd restarts the instance and its broker session keeps its messages,
  so a crash must not move its routes);
- a configured member that never wrote a file within `join_grace`: it is not running at all,
  so its routes go to the instances that are;
- a member whose file stayed stale for `dead_after`: nobody restarted it; same; and sooner,
  after `gone_after`, when its process no longer exists (a crash that systemd or the process
  back end would have restarted within seconds: the unit failed, or the back end gave up).

    >>> def h(i, state, at):
    ...     return WorkerHealth(instance=i, state=state, updated_at=at)
    >>> m = Membership([1, 2], now=0.0)
    >>> m.observe(1.0, {1: h(1, "running", 1.0), 3: h(3, "joining", 1.0)})
    ({3}, set())
    >>> m.observe(2.0, {1: h(1, "stopping", 2.0), 3: h(3, "running", 2.0)})
    (set(), {1})
    >>> sorted(m.members)
    [2, 3]

A plan change is made before it is broken (`overlap`): while the new owners of a route
subscribe, the old owners keep it, so a route that moves is never without a subscriber.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import AbstractSet, Iterable, Mapping

from routemq.documents import WorkerHealth
from routemq.plan import Plan

JOIN_GRACE = 30.0   # seconds a configured instance may take to write its first health file
DEAD_AFTER = 60.0   # seconds of silence after which a member is given up
GONE_AFTER = 20.0   # the same when its process is gone (not restarted within RestartSec)


class Membership:
    """The set of planned instances, updated from health files (see the module docstring)."""

    def __init__(self, configured: Iterable[int], now: float, *, health_interval: float = 1.0,
                 join_grace: float = JOIN_GRACE, dead_after: float = DEAD_AFTER,
                 gone_after: float = GONE_AFTER) -> None:
        self.members: set[int] = set()
        self.health_interval = health_interval  # what "fresh" means (documents.fresh_limit)
        self.join_grace, self.dead_after = join_grace, dead_after
        self.gone_after = gone_after
        self._since: dict[int, float] = {}     # member -> when it was added
        self._seen: set[int] = set()           # members whose health file appeared
        for i in configured:
            self.add(i, now)

    def add(self, instance: int, now: float) -> None:
        """Plan for `instance` (configured, or started by the autoscaler)."""
        if instance not in self.members:
            self.members.add(instance)
            self._since[instance] = now

    def discard(self, instance: int) -> None:
        self.members.discard(instance)
        self._since.pop(instance, None)
        self._seen.discard(instance)

    def observe(self, now: float, health: Mapping[int, WorkerHealth],
                gone: AbstractSet[int] = frozenset()) -> tuple[set[int], set[int]]:
        """Apply one tick's health files; return (joined, left). `gone`: the instances whose
        file is stale and whose process the master found gone."""
        joined, left = set(), set()
        for i, h in health.items():
            if i not in self.members and h.fresh(now, self.health_interval) and not h.leaving:
                self.add(i, now)
                joined.add(i)
        for i in sorted(self.members - joined):
            h = health.get(i)
            if h is not None:
                self._seen.add(i)
            if h is not None and h.leaving:
                reason = True
            elif h is None:
                # Seen before and now gone: a clean stop. Never seen: not started (yet).
                reason = i in self._seen or now - self._since[i] > self.join_grace
            else:
                silent = now - max(h.updated_at or 0.0, self._since[i])
                reason = silent > (self.gone_after if i in gone else self.dead_after)
            if reason:
                self.discard(i)
                left.add(i)
        return joined, left


def overlap(current: Plan, target: Plan, present: Iterable[int]) -> Plan:
    """The plan to hold while `target` is taken up: every instance still `present` keeps its
    `current` routes and adds its `target` ones.

        >>> now = Plan({1: ("a", "c"), 2: ("b",)})
        >>> overlap(now, Plan({2: ("a", "b"), 3: ("c",)}), present=[1, 2, 3]).assignments
        {1: ('a', 'c'), 2: ('a', 'b'), 3: ('c',)}
    """
    alive = set(present)
    merged: dict[int, set[str]] = {i: set(keys) for i, keys in target.assignments.items()}
    for i, keys in current.assignments.items():
        if i in alive:
            merged.setdefault(i, set()).update(keys)
    return Plan({i: tuple(keys) for i, keys in merged.items()}, target.warnings)


def gains(current: Plan, target: Plan) -> dict[int, set[str]]:
    """The routes each instance subscribes to anew in `target`: what a hand-over waits for.

        >>> gains(Plan({1: ("a",)}), Plan({1: ("a", "b"), 2: ("a",)}))
        {1: {'b'}, 2: {'a'}}
    """
    result = {}
    for i, keys in target.assignments.items():
        new = set(keys) - set(current.assignments.get(i, ()))
        if new:
            result[i] = new
    return result


@dataclass(frozen=True)
class Release:
    """What a stopping worker lets go of: `filters` to unsubscribe, and whether its broker
    session may end once it has handled what was queued there."""

    filters: tuple[str, ...]
    end_session: bool


def release_on_stop(subscribed: Mapping[str, str], instance: int, plan: Plan | None, *,
                    standalone: bool) -> Release:
    """What a stopping worker holding `subscribed` (route key -> filter) unsubscribes.

    - Standalone (no master): its shared filters, so the broker gives its share to the other
      members; its plain ones stay in its session (every subscriber of a plain filter gets
      every message: nothing is missed, what is queued is handled at the next start).
    - Planned out by the master (`plan` no longer lists it): every route the plan gives to
      another instance, which the master only does once that instance has subscribed. A
      route nobody else holds (the whole fleet stopping) stays subscribed, so the session
      keeps collecting its messages for the next start. Nothing kept: the session may end.
    - Still planned (`plan` None: the master did not move it in time): nothing; the master
      drains the session once it plans the instance out.

        >>> subs = {"shared:a": "$share/g/a", "single:b": "b"}
        >>> release_on_stop(subs, 1, None, standalone=True)
        Release(filters=('$share/g/a',), end_session=False)
        >>> release_on_stop(subs, 1, Plan({2: ("shared:a", "single:b")}), standalone=False)
        Release(filters=('$share/g/a', 'b'), end_session=True)
        >>> release_on_stop(subs, 1, Plan({}), standalone=False)
        Release(filters=(), end_session=False)
    """
    if standalone:
        return Release(tuple(sorted(f for k, f in subscribed.items()
                                    if k.startswith("shared:"))), False)
    if plan is None or instance in plan.assignments:
        return Release((), False)
    held_elsewhere = {k: f for k, f in subscribed.items() if plan.owners(k)}
    return Release(tuple(sorted(held_elsewhere.values())),
                   len(held_elsewhere) == len(subscribed))
