"""Which worker instance subscribes to which route: a pure, deterministic plan.

The master computes a plan and writes it with :meth:`Plan.to_json`; each worker reads its own entry
with :meth:`Plan.from_json`. Every host computes the same plan from the same input, because
nothing here depends on input order, on ``hash()`` or on the clock.

    >>> routes = [PlanRoute("alerts", shared=True, worker_count=1),
    ...           PlanRoute("sensors/{id}/data", shared=True, worker_count=3),
    ...           PlanRoute("orders", shared=False)]
    >>> plan = compute_plan(routes, [1, 2, 3])
    >>> plan.owners("sensors/{id}/data")
    (1, 2, 3)
    >>> sorted(len(keys) for keys in plan.assignments.values())
    [1, 2, 2]

The algorithm, for routes that weigh the same (all weights equal):

1. Start from ``previous`` (or, with no ``previous``, from rendezvous hashing: each route on the
   instances that score highest for it), dropping what no longer exists.
2. Trim: a route on more instances than it needs keeps the least loaded ones; an instance above its
   fair share (``total // N``, and at most ``total % N`` instances one above it) gives up the routes
   that are cheapest to move, preferring routes no other instance gave up, so the freed copies can
   all land on one new instance.
3. Fill: each missing copy goes to the instance with room that scores highest for the route. When
   every instance with room already holds the route, a shortest chain of moves (0-1 BFS, preferring
   to move copies placed during this fill over copies kept from ``previous``) makes room.

Guarantees (``tests/unit/test_plan.py`` checks each over thousands of generated inputs), where
``T`` is the total number of subscriptions after the change and a "move" is a subscription an
instance did not hold before:

- adding one instance to a plan made by :func:`compute_plan` moves exactly ``T // (N + 1)``
  subscriptions: the new instance's fair share and nothing else, which is the minimum;
- removing instance ``x`` moves at least ``h`` and at most ``h + h2`` subscriptions, where ``h`` is
  the number of ``x``'s routes that still need a copy elsewhere and ``h2`` those of them that run on
  two or more instances; with only single-instance routes that is exactly ``h``. Some inputs need
  more than ``h`` (see the tests), so "the subscriptions it held plus a constant" cannot be promised;
- re-planning an unchanged plan moves nothing.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from routemq.errors import PlanError

if TYPE_CHECKING:  # only for the annotation: planning needs the routes' fields, not the Router
    from routemq.router import Router

__all__ = ["PLAN_VERSION", "Plan", "PlanError", "PlanRoute", "compute_plan", "plan_routes",
           "resolve_worker_count", "standalone_plan"]

PLAN_VERSION = 1


@dataclass(frozen=True)
class PlanRoute:
    """One route as the planner sees it.

    ``key`` identifies the route (the caller builds it, e.g. from the pattern and the shared flag).
    A shared route runs on ``worker_count`` instances; a route that is not shared runs on one,
    because every subscriber of a plain MQTT subscription gets every message.

        >>> PlanRoute("sensors/{id}/data", shared=True, worker_count=4)
        PlanRoute(key='sensors/{id}/data', shared=True, worker_count=4, weight=1.0)
    """

    key: str
    shared: bool
    worker_count: int = 1
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise PlanError(f"route key must be a non-empty string, not {self.key!r}")
        if not isinstance(self.worker_count, int) or isinstance(self.worker_count, bool) \
                or self.worker_count < 1:
            raise PlanError(f"route {self.key!r}: worker_count must be an integer >= 1, "
                             f"not {self.worker_count!r}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) \
                or not math.isfinite(self.weight) or self.weight <= 0:
            raise PlanError(f"route {self.key!r}: weight must be a finite number > 0, "
                             f"not {self.weight!r}")


@dataclass(frozen=True)
class Plan:
    """Each instance's subscriptions (route keys, sorted), plus warnings for the operator.

        >>> plan = Plan({2: ("b",), 1: ("b", "a")})
        >>> plan.assignments
        {1: ('a', 'b'), 2: ('b',)}
        >>> plan.owners("b"), plan.owners("unknown")
        ((1, 2), ())
    """

    assignments: dict[int, tuple[str, ...]]
    warnings: tuple[str, ...] = ()
    # Set by the master: it grows with every plan it writes, and workers report the one they
    # have applied, which is how the master knows a hand-over is complete.
    generation: int = 0
    _owners: dict[str, tuple[int, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Normalise so that equal plans compare, print and serialise the same way.
        assignments = {int(i): tuple(sorted(set(keys)))
                       for i, keys in sorted(self.assignments.items())}
        owners: dict[str, list[int]] = {}
        for i, keys in assignments.items():
            for key in keys:
                owners.setdefault(key, []).append(i)
        object.__setattr__(self, "assignments", assignments)
        object.__setattr__(self, "warnings", tuple(self.warnings))
        object.__setattr__(self, "_owners", {k: tuple(v) for k, v in sorted(owners.items())})

    def owners(self, key: str) -> tuple[int, ...]:
        """The instances subscribed to route ``key``, ascending; ``()`` if none."""
        return self._owners.get(key, ())

    @property
    def routes(self) -> dict[str, tuple[int, ...]]:
        """Route key -> its instances: the plan seen from the routes' side."""
        return dict(self._owners)

    def diff(self, previous: Plan | Mapping[int, Sequence[str]] | None
             ) -> dict[int, tuple[tuple[str, ...], tuple[str, ...]]]:
        """What each instance must subscribe to and unsubscribe from to go from ``previous``.

        Only instances with a change appear. The number of subscriptions that move is
        ``sum(len(added) for added, _ in plan.diff(old).values())``.

            >>> Plan({1: ("a",), 2: ("b",)}).diff({1: ["a", "b"], 3: ["c"]})
            {1: ((), ('b',)), 2: (('b',), ()), 3: ((), ('c',))}
        """
        old = _assignments_of(previous)
        result = {}
        for i in sorted(set(old) | set(self.assignments)):
            before, after = set(old.get(i, ())), set(self.assignments.get(i, ()))
            if before != after:
                result[i] = (tuple(sorted(after - before)), tuple(sorted(before - after)))
        return result

    def to_json(self) -> str:
        """A stable JSON document (indented for people): equal plans give byte-identical text.

            >>> json.loads(Plan({1: ("a",)}, ("note",)).to_json())
            {'version': 1, 'instances': {'1': ['a']}, 'routes': {'a': [1]}, 'warnings': ['note'], 'generation': 0}
        """
        doc = {
            "version": PLAN_VERSION,
            # Built in numeric order on purpose: sort_keys would put "10" before "2".
            "instances": {str(i): list(keys) for i, keys in self.assignments.items()},
            "routes": {key: list(ids) for key, ids in self._owners.items()},
            "warnings": list(self.warnings),
            "generation": self.generation,
        }
        return json.dumps(doc, indent=2, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> Plan:
        """Read a document written by :meth:`to_json`; ``PlanError`` (a ValueError) names what
        is wrong."""
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise PlanError(f"plan is not valid JSON: {exc}") from None
        if not isinstance(doc, dict) or doc.get("version") != PLAN_VERSION:
            version = doc.get("version") if isinstance(doc, dict) else None
            raise PlanError(f"plan version {version!r} is not supported (expected {PLAN_VERSION})")
        instances, warnings = doc.get("instances"), doc.get("warnings", [])
        generation = doc.get("generation", 0)
        if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
            raise PlanError(f"plan generation {generation!r} is not an integer >= 0")
        if not isinstance(instances, dict):
            raise PlanError("plan has no 'instances' object")
        assignments: dict[int, tuple[str, ...]] = {}
        for name, keys in instances.items():
            if not (isinstance(name, str) and name.isdigit() and int(name) > 0):
                raise PlanError(f"plan instance {name!r} is not a positive integer")
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) \
                    or len(set(keys)) != len(keys):
                raise PlanError(f"plan instance {name}: routes must be a list of distinct strings")
            assignments[int(name)] = tuple(keys)
        if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
            raise PlanError("plan 'warnings' must be a list of strings")
        plan = cls(assignments, tuple(warnings), generation)
        # The "routes" section is redundant; a mismatch means the file was edited or corrupted.
        if "routes" in doc and doc["routes"] != {k: list(v) for k, v in plan.routes.items()}:
            raise PlanError("plan 'routes' does not match 'instances'")
        return plan


def resolve_worker_count(setting: str | int, routes: Iterable[Any]) -> int:
    """The number of worker instances for a ``workers`` setting.

    ``"auto"`` means the largest ``worker_count`` among shared routes (at least 1), so every
    shared route gets all the workers it asks for. ``routes`` may be PlanRoutes or anything with
    ``shared`` and ``worker_count`` attributes.

        >>> routes = [PlanRoute("a", True, 3), PlanRoute("b", False, 9)]
        >>> resolve_worker_count("auto", routes), resolve_worker_count(5, routes)
        (3, 5)
    """
    if isinstance(setting, str):
        text = setting.strip().lower()
        if text == "auto":
            return max([r.worker_count for r in routes if r.shared], default=1)
        if not text.isdigit():
            raise PlanError(f"workers must be 'auto' or a positive integer, not {setting!r}")
        setting = int(text)
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise PlanError(f"workers must be 'auto' or a positive integer, not {setting!r}")
    return setting


def plan_routes(router: Router) -> list[PlanRoute]:
    """The application's routes as the planner sees them, in the application's order."""
    return [PlanRoute(r.key, r.shared, r.worker_count) for r in router.routes]


def standalone_plan(router: Router, worker_count: str | int) -> Plan:
    """The plan a master would write for instances 1..worker_count ("auto" resolved): what
    `routemq plan` and `routemq check` show, and what workers without a master follow."""
    routes = plan_routes(router)
    return compute_plan(routes, range(1, resolve_worker_count(worker_count, routes) + 1))


def compute_plan(routes: Sequence[PlanRoute], instances: Iterable[int],
                 previous: Plan | Mapping[int, Sequence[str]] | None = None) -> Plan:
    """Plan which instance subscribes to which route.

    ``previous`` is the plan currently running; the new plan keeps as much of it as it can while
    staying valid and balanced. Entries for instances or routes that no longer exist are ignored,
    and an invalid previous plan is repaired.

        >>> routes = [PlanRoute("a", True, 2), PlanRoute("b", False)]
        >>> before = compute_plan(routes, [1, 2])
        >>> before.assignments
        {1: ('a', 'b'), 2: ('a',)}
        >>> after = compute_plan(routes, [1, 2, 5], previous=before)
        >>> after.assignments                   # one subscription moves to the new instance
        {1: ('a',), 2: ('a',), 5: ('b',)}
        >>> compute_plan([PlanRoute("a", True, 8)], [1, 2]).warnings
        ("route 'a' wants 8 workers but only 2 instances exist; it runs on 2",)

    With no instances nothing can be planned: the plan is empty and says so in its warnings.
    """
    table = _check_routes(routes)
    ids = _check_instances(instances)
    n = len(ids)
    warnings: list[str] = []
    if not ids:
        if table:
            warnings.append(f"no instances: {len(table)} route(s) are not subscribed anywhere")
        return Plan({}, tuple(warnings))
    need: dict[str, int] = {}
    for key, route in table.items():
        if route.shared:
            need[key] = min(route.worker_count, n)
            if route.worker_count > n:
                warnings.append(f"route {key!r} wants {route.worker_count} workers but only {n} "
                                f"instances exist; it runs on {n}")
        else:
            need[key] = 1
            if route.worker_count > 1:
                warnings.append(f"route {key!r} is not shared, so worker_count="
                                f"{route.worker_count} is ignored; it runs on one instance")
    held = None if previous is None else _sanitize(_assignments_of(previous), need, ids)
    score = _Scorer(ids)
    if len({route.weight for route in table.values()}) <= 1:
        on = _EqualPlanner(need, ids, score).run(held)
    else:
        on = _plan_weighted(need, {k: r.weight for k, r in table.items()}, ids, score, held)
    return Plan({i: tuple(sorted(on[i])) for i in ids}, tuple(warnings))


# --- internals --------------------------------------------------------------------------------


def _check_routes(routes: Sequence[PlanRoute]) -> dict[str, PlanRoute]:
    table: dict[str, PlanRoute] = {}
    for route in routes:
        if not isinstance(route, PlanRoute):
            raise TypeError(f"expected PlanRoute, got {type(route).__name__}")
        if route.key in table:
            raise PlanError(f"route key {route.key!r} appears twice")
        table[route.key] = route
    # Sorted so that nothing downstream depends on the caller's order.
    return dict(sorted(table.items()))


def _check_instances(instances: Iterable[int]) -> list[int]:
    ids = set()
    for i in instances:
        if isinstance(i, bool) or not isinstance(i, int) or i < 1:
            raise PlanError(f"instance ids must be positive integers, not {i!r}")
        ids.add(i)
    return sorted(ids)


def _assignments_of(plan: Plan | Mapping[int, Sequence[str]] | None) -> Mapping[int, Sequence[str]]:
    return plan.assignments if isinstance(plan, Plan) else plan or {}


def _sanitize(previous: Mapping[int, Sequence[str]], need: Mapping[str, int],
              ids: list[int]) -> dict[int, list[str]]:
    live = set(ids)
    held = {}
    for i, keys in previous.items():
        if isinstance(i, bool) or not isinstance(i, int):
            raise TypeError(f"previous plan: instance ids must be integers, not {i!r}")
        if isinstance(keys, (str, bytes)):
            raise TypeError(f"previous plan: instance {i} must map to a list of route keys")
        if i in live:
            held[i] = sorted({k for k in keys if k in need})
    return held


class _Scorer:
    """Rendezvous (highest random weight) scores: a stable 64-bit hash of route and instance.

    blake2b of ``f"{key}\\0{instance}"`` rather than ``hash()`` (randomised per process) or crc32
    (linear, so the instance order it induces is correlated between routes). A route's scores for
    all instances are computed together, from one hashed prefix.
    """

    def __init__(self, ids: list[int]) -> None:
        self._ids = ids
        self._rows: dict[str, dict[int, int]] = {}

    def __call__(self, key: str, instance: int) -> int:
        row = self._rows.get(key)
        if row is None:
            prefix = hashlib.blake2b(f"{key}\0".encode(), digest_size=8)
            row = self._rows[key] = {}
            for i in self._ids:
                h = prefix.copy()
                h.update(str(i).encode())
                row[i] = int.from_bytes(h.digest(), "big")
        return row[instance]


class _EqualPlanner:
    """Plan for routes of equal weight: loads end at ``base`` or ``base + 1`` subscriptions."""

    def __init__(self, need: dict[str, int], ids: list[int], score: _Scorer) -> None:
        self.need, self.ids, self.score = need, ids, score
        self.base, self.extra = divmod(sum(need.values()), len(ids))
        self.on: dict[int, set[str]] = {i: set() for i in ids}
        self.holders: dict[str, set[int]] = {k: set() for k in need}
        self.kept: set[tuple[str, int]] = set()  # carried over: moving one costs a subscription
        self.above = 0  # instances holding more than base; at most `extra` of them may, at the end

    def add(self, key: str, i: int) -> None:
        if len(self.on[i]) == self.base:
            self.above += 1
        self.on[i].add(key)
        self.holders[key].add(i)

    def remove(self, key: str, i: int) -> None:
        if len(self.on[i]) == self.base + 1:
            self.above -= 1
        self.on[i].discard(key)
        self.holders[key].discard(i)
        self.kept.discard((key, i))

    def has_room(self, i: int) -> bool:
        load = len(self.on[i])
        return load < self.base or (load == self.base and self.above < self.extra)

    def run(self, held: dict[int, list[str]] | None) -> dict[int, set[str]]:
        n = len(self.ids)
        if held is None:
            # From scratch: each route on its highest-scoring instances. Scores do not depend on
            # which other instances exist, so adding or removing one changes few of these.
            held = {i: [] for i in self.ids}
            for key, count in self.need.items():
                for i in sorted(self.ids, key=lambda i: (-self.score(key, i), i))[:count]:
                    held[i].append(key)
        for i in sorted(held):
            for key in held[i]:
                self.add(key, i)
                self.kept.add((key, i))
        # A route on too many instances keeps the least loaded ones.
        for key, count in self.need.items():
            surplus = len(self.holders[key]) - count
            if surplus > 0:
                order = sorted(self.holders[key],
                               key=lambda i: (-len(self.on[i]), self.score(key, i), i))
                for i in order[:surplus]:
                    self.remove(key, i)
        # Instances above their share give up routes; `given_up` spreads the choice over distinct
        # routes, which is what lets a new instance take all of them (the "add one" bound).
        given_up: dict[str, int] = {}

        def drop_order(i: int) -> list[str]:
            return sorted(self.on[i], key=lambda k: (self.need[k] >= n, given_up.get(k, 0),
                                                     self.score(k, i), k))

        def give_up(i: int, count: int) -> None:
            for key in drop_order(i)[:count]:
                self.remove(key, i)
                given_up[key] = given_up.get(key, 0) + 1

        for i in self.ids:
            if len(self.on[i]) > self.base + 1:
                give_up(i, len(self.on[i]) - self.base - 1)
        over = [i for i in self.ids if len(self.on[i]) == self.base + 1]
        if len(over) > self.extra:
            cheapest = {i: drop_order(i)[0] for i in over}
            over.sort(key=lambda i: (self.need[cheapest[i]] >= n, given_up.get(cheapest[i], 0),
                                     self.score(cheapest[i], i), i))
            for i in over[:len(over) - self.extra]:
                give_up(i, 1)
        # Fill: most widely shared routes first, since they have the fewest instances to go to.
        # Copies that find no room wait until every direct placement is made: a chain of moves
        # may then shift those fresh copies for free instead of moving kept ones.
        stuck = []
        for key in sorted(self.need, key=lambda k: (-self.need[k], k)):
            missing = self.need[key] - len(self.holders[key])
            if missing <= 0:
                continue
            prefer = sorted((i for i in self.ids if i not in self.holders[key]),
                            key=lambda i: (len(self.on[i]) >= self.base, -self.score(key, i), i))
            for i in prefer:
                if missing and self.has_room(i):
                    self.add(key, i)
                    missing -= 1
            stuck.extend([key] * missing)
        for key in stuck:
            self.make_room(key)
        return self.on

    def make_room(self, key: str) -> None:
        """Place one more copy of ``key`` when every instance with room already holds it.

        0-1 BFS over instances: an edge v -> j moves some route from v to j (cost 1 if that copy was
        kept from the previous plan, 0 if placed during this fill); a path ends at an instance with
        room. A path always exists: some instance k without ``key`` is full, an instance j with
        room holds ``key``, so k holds a route j lacks (k is fuller) and k -> j is a path. Hence
        each call costs at most one kept subscription. When the ``extra`` slots above ``base`` are
        all taken, the virtual node 0 lets an instance at ``base`` take one over from an instance
        at ``base + 1`` that sheds a route instead.
        """
        start, extra_node = -1, 0  # instance ids are positive, so these never clash
        dist: dict[int, int] = {}
        parent: dict[int, tuple[int, str | None]] = {}
        queue: deque[int] = deque()
        for i in self.ids:
            if i not in self.holders[key]:
                dist[i], parent[i] = 0, (start, key)
                queue.append(i)
        swap_extra = self.above >= self.extra
        done: set[int] = set()
        found = None

        def relax(j: int, d: int, via: tuple[int, str | None], cost: int) -> None:
            if j not in dist or d < dist[j]:
                dist[j], parent[j] = d, via
                (queue.appendleft if cost == 0 else queue.append)(j)

        while queue:
            v = queue.popleft()
            if v in done:
                continue
            done.add(v)
            if v == extra_node:
                for j in self.ids:
                    if len(self.on[j]) == self.base + 1 and j not in done:
                        relax(j, dist[v], (extra_node, None), 0)
                continue
            if self.has_room(v):  # never true for a node reached through extra_node (base + 1)
                found = v
                break
            if swap_extra and len(self.on[v]) == self.base:
                relax(extra_node, dist[v], (v, None), 0)
            movable = sorted(self.on[v], key=lambda k: ((k, v) in self.kept, self.score(k, v), k))
            for j in self.ids:
                if j == v or j in done:
                    continue
                for k in movable:
                    if j not in self.holders[k]:
                        cost = 1 if (k, v) in self.kept else 0
                        relax(j, dist[v] + cost, (v, k), cost)
                        break
        assert found is not None, "unreachable: a balanced completion always exists"
        moves = []
        v = found
        while True:
            src, moved = parent[v]
            if src == start:
                moves.append((moved, None, v))
                break
            if src == extra_node:
                v = parent[extra_node][0]  # that instance takes the extra slot; it sheds nothing
                continue
            moves.append((moved, src, v))
            v = src
        for moved, src, dst in moves:
            if src is not None:
                self.remove(moved, src)
            self.add(moved, dst)


def _plan_weighted(need: dict[str, int], weight: dict[str, float], ids: list[int],
                   score: _Scorer, held: dict[int, list[str]] | None) -> dict[int, set[str]]:
    """Routes of unequal weight: balance summed weight greedily (no ±1 guarantee).

    Kept copies stay; missing copies go, heaviest route first, to the least loaded instances that
    lack the route (from scratch that alone keeps max - min within the heaviest weight ``wmax``).
    Then, while two instances differ by more than ``wmax``, a route moves from the heavier to the
    lighter one. Each move lowers the sum of squared loads, so this ends, and it ends with: any
    two instances differ by at most ``wmax`` unless the lighter already holds all of the heavier's
    routes. A plan that already satisfies that is left as it is.
    """
    on: dict[int, set[str]] = {i: set() for i in ids}
    holders: dict[str, set[int]] = {k: set() for k in need}
    load = {i: 0.0 for i in ids}

    def move(key: str, i: int, sign: int) -> None:
        (on[i].add if sign > 0 else on[i].discard)(key)
        (holders[key].add if sign > 0 else holders[key].discard)(i)
        load[i] += sign * weight[key]

    for i in sorted(held or {}):
        for key in held[i]:
            move(key, i, +1)
    for key, count in need.items():
        surplus = len(holders[key]) - count
        if surplus > 0:
            for i in sorted(holders[key], key=lambda i: (-load[i], score(key, i), i))[:surplus]:
                move(key, i, -1)
    for key in sorted(need, key=lambda k: (-weight[k], -need[k], k)):
        missing = need[key] - len(holders[key])
        if missing > 0:
            free = sorted((i for i in ids if i not in holders[key]),
                          key=lambda i: (load[i], -score(key, i), i))
            for i in free[:missing]:
                move(key, i, +1)
    # Float sums of the same weights in another order may differ in the last bits; the tolerance
    # keeps such noise from triggering a move.
    tolerance = max(weight.values()) + 1e-9 * sum(need[k] * weight[k] for k in need)
    while True:
        by_load = sorted(ids, key=lambda i: (load[i], i))
        best = None
        for heavy in reversed(by_load):
            for light in by_load:
                gap = load[heavy] - load[light]
                if gap <= tolerance:
                    break
                movable = [k for k in on[heavy] if light not in holders[k]]
                if movable:  # the route that best evens out the pair
                    best = min(movable, key=lambda k: (abs(gap / 2 - weight[k]), score(k, heavy),
                                                       k)), heavy, light
                    break
            if best:
                break
        if best is None:
            return on
        key, heavy, light = best
        move(key, heavy, -1)
        move(key, light, +1)
