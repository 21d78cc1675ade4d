"""The message pipeline of one worker: route lookup, bounded concurrency, ordering, ack.

Runs on the worker's asyncio loop and knows nothing about sockets, so unit tests feed it
plain deliveries. For each delivery:

1. find its route: the subscription identifier the broker attached (MQTT 5) names the
   route exactly; without one, the most specific route among those this worker holds;
2. reject what must not reach a handler (no route, payload over `max_payload_bytes`);
3. run the handler: shared routes concurrently, at most `max_inflight` at a time; routes
   that are not shared one message at a time, in arrival order;
4. call `ack(delivery)` only after the handler finished, failed or was rejected, so a crash
   before that leaves the message with the broker (at-least-once). A failure is logged once
   with route, topic and traceback, counted, optionally dead-lettered, and then acked: a
   message that always fails must not be redelivered forever.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections import deque
from typing import Any, Callable, Iterable, Protocol

from routemq.metrics import WorkerMetrics
from routemq.payload import decode_payload
from routemq.router import Route, Router

log = logging.getLogger("routemq.dispatch")

Params = dict[str, str]

STUCK_GRACE = 5.0  # seconds a cancelled handler may take to end before we call it stuck


class Delivery(Protocol):
    topic: str
    payload: bytes
    qos: int
    mid: int
    subscription_ids: tuple[int, ...]


class RateLimitedLog:
    """Log a recurring condition at most once per `interval`, counting what was suppressed."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self.last = -interval
        self.suppressed = 0

    def __call__(self, msg: str, *args: Any, **extra: Any) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            self.suppressed += 1
            return
        if self.suppressed:
            msg += f" ({self.suppressed} more since the last report)"
        self.last, self.suppressed = now, 0
        log.warning(msg, *args, extra=extra)


class Dispatcher:
    def __init__(self, router: Router, *, client: Any, ack: Callable[[Any], None],
                 max_inflight: int = 64, handler_timeout: float = 0.0,
                 max_payload_bytes: int = 1 << 20,
                 dead_letter: Callable[[dict[str, Any]], None] | None = None,
                 metrics: WorkerMetrics | None = None) -> None:
        self.router = router
        self.client = client  # passed to handlers as `client=` (they may publish with it)
        self.ack = ack
        self.max_inflight = max_inflight
        self.handler_timeout = handler_timeout
        self.max_payload_bytes = max_payload_bytes
        self.dead_letter = dead_letter
        self.metrics = metrics or WorkerMetrics()
        self.routes: frozenset[Route] = frozenset()
        self.by_sub_id: dict[int, Route] = {}
        # Deliveries waiting with their route parameters: shared ones over the bound, and per
        # non-shared route in arrival order.
        self._pending: deque[tuple[Route, Any, Params]] = deque()
        self._ordered: dict[str, deque[tuple[Any, Params]]] = {}
        self._busy_ordered: set[str] = set()
        self._running: set[asyncio.Task[None]] = set()
        self._active: dict[object, float] = {}  # one entry per handler running: its start
        self._idle = asyncio.Event()
        self._idle.set()
        self._unrouted_log = RateLimitedLog()

    # --- what this worker holds ----------------------------------------------------------
    def hold(self, routes: Iterable[Route], sub_ids: dict[int, Route] | None = None) -> None:
        """Set the routes this worker holds and the subscription identifiers naming them."""
        self.routes = frozenset(routes)
        self.by_sub_id = dict(sub_ids or {})

    def resolve(self, delivery: Any) -> tuple[Route, Params] | None:
        """The route of a delivery and its parameters, or None."""
        for sub_id in delivery.subscription_ids:
            route = self.by_sub_id.get(sub_id)
            if route is not None:
                # Checked, not trusted: a persistent session may still hold a subscription
                # made by an older version of the application under the same identifier.
                params = route.matches(delivery.topic)
                if params is not None:
                    return route, params
        return self.router.match_in(delivery.topic, self.routes)

    # --- intake --------------------------------------------------------------------------
    @property
    def inflight(self) -> int:
        """Messages whose handler is running now."""
        return len(self._active)

    @property
    def queued(self) -> int:
        return len(self._pending) + sum(len(q) for q in self._ordered.values())

    def submit(self, delivery: Any) -> None:
        """Accept one delivery (call on the loop's thread)."""
        self.metrics.received += 1
        found = self.resolve(delivery)
        if found is None:
            self.metrics.unrouted += 1
            self._unrouted_log("no route held by this worker for topic %s", delivery.topic,
                               topic=delivery.topic)
            self._finish(delivery)
            return
        route, params = found
        if len(delivery.payload) > self.max_payload_bytes:
            self.metrics.rejected += 1
            error = (f"payload of {len(delivery.payload)} bytes is over max_payload_bytes "
                     f"({self.max_payload_bytes})")
            self._failed(route, delivery, error, None)
            self._finish(delivery)
            return
        self._idle.clear()
        if not route.shared:
            queue = self._ordered.setdefault(route.key, deque())
            queue.append((delivery, params))
            if route.key not in self._busy_ordered:
                self._busy_ordered.add(route.key)
                self._spawn(self._run_ordered(route, queue))
        elif len(self._running) < self.max_inflight:
            self._spawn(self._process(route, delivery, params))
        else:
            self._pending.append((route, delivery, params))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._running.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        while self._pending and len(self._running) < self.max_inflight:
            self._spawn(self._process(*self._pending.popleft()))
        if not self._running and not self._pending:
            self._idle.set()

    async def _run_ordered(self, route: Route, queue: deque[tuple[Any, Params]]) -> None:
        try:
            while queue:
                await self._process(route, *queue[0])
                queue.popleft()
        finally:
            self._busy_ordered.discard(route.key)

    # --- one message ---------------------------------------------------------------------
    async def _process(self, route: Route, delivery: Any, params: Params) -> None:
        token = object()
        self._active[token] = started = time.monotonic()
        ok = False
        try:
            payload = decode_payload(delivery.payload)
            if self.handler_timeout > 0:
                async with asyncio.timeout(self.handler_timeout):
                    await route.call(delivery.topic, payload, self.client, params)
            else:
                await route.call(delivery.topic, payload, self.client, params)
            ok = True
        except TimeoutError as exc:
            self._failed(route, delivery, f"handler timed out after {self.handler_timeout}s",
                         exc)
        except asyncio.CancelledError:
            raise  # stopping: no ack, the broker keeps the message for this session
        except Exception as exc:
            self._failed(route, delivery, f"{type(exc).__name__}: {exc}", exc)
        finally:
            del self._active[token]
        self.metrics.handled(route.key, time.monotonic() - started, ok)
        self._finish(delivery)

    def _finish(self, delivery: Any) -> None:
        if delivery.qos:
            self.ack(delivery)

    def _failed(self, route: Route, delivery: Any, error: str,
                exc: BaseException | None) -> None:
        log.error("handler failed for %s on route %s: %s", delivery.topic, route.topic, error,
                  exc_info=exc, extra={"route": route.topic, "topic": delivery.topic,
                                       "error": error})
        if self.dead_letter is None:
            return
        try:
            self.dead_letter(dead_letter_record(route, delivery, error))
        except Exception:
            log.exception("dead-letter publish failed for %s", delivery.topic,
                          extra={"route": route.topic, "topic": delivery.topic})

    # --- stopping ------------------------------------------------------------------------
    async def drain(self, timeout: float) -> bool:
        """Wait until every accepted delivery finished; False if `timeout` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def cancel(self) -> None:
        """Cancel what still runs (after a drain timed out): those messages stay unacked."""
        self._pending.clear()
        for queue in self._ordered.values():
            queue.clear()
        tasks = list(self._running)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stuck(self, now: float | None = None) -> bool:
        """True when a handler outlived its timeout plus a grace period (cancelling it did
        not end it): the worker should stop pinging the watchdog so systemd restarts it."""
        if self.handler_timeout <= 0 or not self._active:
            return False
        now = time.monotonic() if now is None else now
        oldest = min(self._active.values())
        return now - oldest > self.handler_timeout + STUCK_GRACE


def dead_letter_record(route: Route, delivery: Any, error: str) -> dict[str, Any]:
    """What goes to the dead-letter topic: enough to inspect and replay the message."""
    raw = delivery.payload
    try:
        text, encoding = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(raw).decode("ascii"), "base64"
    return {"topic": delivery.topic, "route": route.topic, "error": error,
            "payload": text, "payload_encoding": encoding, "qos": delivery.qos,
            "time": time.time()}


def dead_letter_payload(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()
