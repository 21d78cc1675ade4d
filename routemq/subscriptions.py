"""What one worker subscribes to, and the broker's acknowledgements of it.

The worker says which routes it holds (`change`, on a new plan) and when a connection is new
(`resubscribe`); this class turns routes into subscription entries and sends them with the
client's awaitable subscribe/unsubscribe (no packet ids to keep), so the worker only hears
"everything acknowledged" (`on_done`) or "the broker refused" (`on_refused`).

    subs = Subscriptions(client, router, group="routemq", on_done=..., on_refused=...)
    added, removed = subs.change(routes_of_the_new_plan)   # sent when connected

A subscription identifier (MQTT 5) is requested only where the topic alone cannot name the
route, i.e. its filter overlaps another held route's: paho parses the property on every
message that carries one, about a fifth of a worker's CPU (bench/).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, NamedTuple

from routemq.router import Route, Router
from routemq.session import routes_by_id
from routemq.topics import filters_overlap

log = logging.getLogger("routemq.worker")


class Entry(NamedTuple):
    """One subscription as sent to the broker."""

    filter: str          # `$share/<group>/sensors/+/data` or the plain filter
    qos: int
    sub_id: int | None   # MQTT 5 subscription identifier, or None


def subscription_qos(route: Route) -> int:
    """QoS 2 routes are received at QoS 1: paho takes ownership of a QoS 2 message at PUBREC,
    before the handler runs, so a crash would lose it; QoS 1 with the ack after the handler
    is at-least-once even across kill -9."""
    return min(route.qos, 1)


def app_filters(router: Router, group: str) -> set[str]:
    """Every filter an instance of this application may have subscribed."""
    return {route.get_subscription_topic(group) for route in router.routes}


class Subscriptions:
    def __init__(self, client: Any, router: Router, group: str, *,
                 on_done: Callable[[], None], on_refused: Callable[[int], None]) -> None:
        self.client, self.router, self.group = client, router, group
        self.on_done, self.on_refused = on_done, on_refused
        # Subscription identifier of each route: its position in the application, the same
        # on every instance and every start (routes_by_id).
        self._ids = {route.key: i for i, route in routes_by_id(router).items()}
        self.held: list[Route] = []
        self.subscribed: dict[str, Entry] = {}  # route key -> what the broker was sent
        self._waiting = 0  # SUBSCRIBEs sent and not acknowledged yet (on any connection)
        self._tasks: set[asyncio.Task[None]] = set()

    def entry(self, route: Route) -> Entry:
        overlaps = any(filters_overlap(route.mqtt_topic, r.mqtt_topic)
                       for r in self.held if r is not route)
        return Entry(route.get_subscription_topic(self.group), subscription_qos(route),
                     self._ids[route.key] if overlaps else None)

    def filters(self) -> list[str]:
        return sorted(e.filter for e in self.subscribed.values())

    def by_route(self) -> dict[str, str]:
        """Route key -> subscribed filter (what a stopping worker may release)."""
        return {key: e.filter for key, e in self.subscribed.items()}

    # --- changes -------------------------------------------------------------------------
    def resubscribe(self, session_present: bool) -> None:
        """A new connection: subscribe the held routes again; with a resumed session, also
        drop the filters of routes this instance does not hold any more (a route that moved
        away while it was down), which the broker would go on delivering."""
        self.subscribed = {}
        self.subscribe(self.held)
        if session_present:
            held = {self.entry(r).filter for r in self.held}
            stale = sorted(app_filters(self.router, self.group) - held)
            if stale:
                log.info("unsubscribing %d filters this instance does not hold", len(stale))
                self.unsubscribe(stale)

    def change(self, routes: list[Route]) -> tuple[list[Route], list[str]]:
        """Hold `routes` from now on: subscribe the new ones (and those whose identifier
        changed with their new neighbours: subscribing a filter again replaces it), and
        unsubscribe the ones no longer held. Returns (added routes, removed filters)."""
        keys = {r.key for r in routes}
        removed = [k for k in self.subscribed if k not in keys]
        self.held = list(routes)
        added = [r for r in routes if self.subscribed.get(r.key) != self.entry(r)]
        if self.client.connected:
            self.subscribe(added)
            if removed:
                self.unsubscribe([self.subscribed.pop(k).filter for k in removed])
        return added, removed

    # --- packets -------------------------------------------------------------------------
    def subscribe(self, routes: list[Route]) -> None:
        entries = [self.entry(r) for r in routes]
        if not entries:
            if not self._waiting:
                self.on_done()
            return
        for route, entry in zip(routes, entries):
            self.subscribed[route.key] = entry
            log.info("subscribing %s (qos %d)", entry.filter, entry.qos,
                     extra={"route": route.topic})
        self._waiting += 1
        self._spawn(self._subscribe(entries))

    async def _subscribe(self, entries: list[Entry]) -> None:
        try:
            codes = await self.client.subscribed(entries)
        except ConnectionError:
            return  # the next connection subscribes again
        finally:
            self._waiting -= 1
        refused = [c for c in codes if c >= 0x80]
        if refused:
            log.error("broker refused a subscription (reason codes %s)", refused)
            self.on_refused(refused[0])
        elif not self._waiting:
            self.on_done()

    def unsubscribe(self, filters: list[str]) -> asyncio.Task[None]:
        """Send UNSUBSCRIBE; the task ends once the broker acknowledged it (at once when
        there is no connection: nothing to wait for)."""
        return self._spawn(self._unsubscribe(filters))

    async def _unsubscribe(self, filters: list[str]) -> None:
        try:
            await self.client.unsubscribed(filters)
        except ConnectionError:
            pass

    def _spawn(self, work: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)
        return task
