"""The message pipeline of one worker: route lookup, bounded concurrency, ordering, ack.

Runs on the worker's asyncio loop and knows nothing about sockets, so unit tests feed it
plain deliveries. For each delivery:

1. find its route: the subscription identifier the broker attached (MQTT 5) names the
   route exactly; without one, the most specific route among those this worker holds, and
   failing that among all the application's routes. A delivery only arrives on a
   subscription this worker's session held, so it is handled here whatever the plan says
   now: a route that just moved away, or a filter left in the session, still has its
   messages in flight or queued for us, and nobody else will get them;
2. reject what must not reach a handler (a topic no route of the application matches, a
   payload over `max_payload_bytes`);
3. run the handler: shared routes concurrently, at most `max_inflight` at a time; routes
   that are not shared one message at a time, in arrival order;
4. call `ack(delivery)` only after the handler finished, failed for good or was rejected,
   so a crash before that leaves the message with the broker (at-least-once). A failed
   attempt is run again after its route's backoff (routemq.retries), unacknowledged and in
   its place; the last failure is logged once with route, topic and traceback, counted,
   dead-lettered, and then acked: a message that always fails must not be redelivered
   forever;
5. with a quarantine (routemq.poison): journal each QoS 1/2 message while its handler runs,
   run a message that was in flight at a worker's death alone among such suspects, and
   dead-letter without running one that was in flight at `poison_threshold` deaths.

Backpressure: when more than `high_water` accepted messages wait for a handler (a flood of
QoS 0, which no Receive Maximum limits, or a slow ordered route), the dispatcher asks the
MQTT client to stop reading (`client.pause_reading()`, when the client has it) until half of
them are done; the rest waits in the kernel and at the broker, under the broker's queue
limits, instead of growing this process without bound.

Per-message cost matters here (see bench/). Handlers run in *runner* tasks, not in a task
per message: a runner takes the started jobs one after another, so a handler that does not
wait for anything costs no task, no scheduling and no loop turn, and a batch read from the
socket runs in one turn. A handler that waits holds its runner; a job started meanwhile gets
another runner, so up to `max_inflight` handlers still wait concurrently. Each job starts
with the dispatcher's contextvars as they were (a runner whose handler changed them, or
swallowed a cancellation, ends and is replaced), `asyncio.current_task()` is the runner
while it runs the handler, and timeouts are enforced by one periodic sweep over the running
handlers instead of an `asyncio.timeout` (a timer and a context manager) per message.
"""
from __future__ import annotations

import asyncio
import base64
import contextvars
import hashlib
import json
import logging
import time
import types
from collections import deque
from typing import Any, Callable, Generator, Iterable, Protocol

from routemq.message import Message, properties_record
from routemq.metrics import WorkerMetrics
from routemq.payload import decode_payload
from routemq.poison import Quarantine
from routemq.retries import failure_text, jittered, timed_out
from routemq.router import Route, Router
from routemq.timings import CANCEL_GRACE

log = logging.getLogger("routemq.dispatch")

Params = dict[str, str]

STUCK_GRACE = 5.0  # seconds a cancelled handler may take to end before we call it stuck
# A redelivery (DUP) may follow a worker's death: look for dead journals then, at most this
# often (a reconnect brings a burst of them; one harvest with nothing dead costs ~40 µs).
DUP_HARVEST_INTERVAL = 0.1
RESOLVED_MAX = 10_000  # topics whose route and parameters a dispatcher remembers


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


SUSPECT_LANE = "\0suspects"  # where shared messages that were in flight at a death run


class _Job:
    """One accepted delivery on its way through a handler.

    `lane`: the shared jobs that run under a limit of their own, `limit` at a time: a route
    with its own max_inflight (lane = its key), or the suspects of the poison quarantine
    (SUSPECT_LANE, one at a time). `deaths`: worker deaths recorded while it was in flight.
    """

    __slots__ = ("route", "delivery", "params", "task", "started", "timed_out", "timeout",
                 "lane", "limit", "deaths")

    def __init__(self, route: Route, delivery: Any, params: Params) -> None:
        self.route, self.delivery, self.params = route, delivery, params
        self.task: asyncio.Task[None] | None = None
        self.started = 0.0
        self.timed_out = False
        self.timeout = 0.0  # seconds; 0 = none (the route's, else the worker's)
        self.lane: str | None = None if route.max_inflight is None else route.key
        self.limit: int = route.max_inflight or 0
        self.deaths = 0


class Dispatcher:
    def __init__(self, router: Router, *, client: Any, ack: Callable[[Any], None],
                 max_inflight: int = 64, handler_timeout: float = 0.0,
                 max_payload_bytes: int = 1 << 20,
                 dead_letter: Callable[[dict[str, Any]], None] | None = None,
                 metrics: WorkerMetrics | None = None, high_water: int | None = None,
                 quarantine: Quarantine | None = None) -> None:
        self.router = router
        # Handlers get `client=` as RouteMQ hands it: the paho client itself (`publish`,
        # `_client_id`, ...) when `client` wraps one (routemq.mqtt.MqttClient.paho).
        self.client = getattr(client, "paho", client)
        self.ack = ack
        self.max_inflight = max_inflight
        self.handler_timeout = handler_timeout
        self.max_payload_bytes = max_payload_bytes
        self.dead_letter = dead_letter
        # The host's record of messages in progress (routemq.poison): a message in flight
        # when `threshold` worker processes died is spooled instead of run again.
        self.quarantine = quarantine
        self.metrics = metrics or WorkerMetrics()
        self.routes: frozenset[Route] = frozenset()
        self.by_sub_id: dict[int, Route] = {}
        # Deliveries waiting with their route parameters: shared ones over the bound, and per
        # non-shared route in arrival order.
        self._pending: deque[_Job] = deque()
        self._ordered: dict[str, deque[_Job]] = {}  # route key -> jobs behind the running one
        # Lanes (see _Job): how many of each run, and who waits for them (apart from
        # _pending, so that a busy slow route does not hold up the others).
        self._lane_running: dict[str, int] = {}
        self._held: dict[str, deque[_Job]] = {}
        # Started jobs (holding a slot of max_inflight or of their ordered route): in _ready
        # until a runner takes them, then running or in a backoff until _next.
        self._started = 0
        self._ready: deque[_Job] = deque()
        self._free = 0  # runners that will look at _ready again before they end
        self._runners: set[asyncio.Task[None]] = set()
        self._context = contextvars.copy_context()  # each runner starts from a copy
        self._active: dict[_Job, float] = {}  # one entry per handler running: its start
        self._sweeper: asyncio.TimerHandle | None = None
        self._waiting = 0  # jobs in _pending and in the ordered backlogs
        self.high_water = high_water or max(256, 4 * max_inflight)
        self._pause = getattr(client, "pause_reading", None)
        self._resume = getattr(client, "resume_reading", None)
        self.paused = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._unrouted_log = RateLimitedLog()
        self._resolved: dict[Any, tuple[Route, Params]] = {}  # see resolve()

    # --- what this worker holds ----------------------------------------------------------
    def hold(self, routes: Iterable[Route], sub_ids: dict[int, Route] | None = None) -> None:
        """Set the routes this worker holds and the subscription identifiers naming them."""
        self.routes = frozenset(routes)
        self.by_sub_id = dict(sub_ids or {})
        self._resolved.clear()  # the answers depend on what is held

    def resolve(self, delivery: Any) -> tuple[Route, Params] | None:
        """The route of a delivery and its parameters, or None when no route of the
        application matches its topic (see the module docstring: held or not).

        Remembered per topic (and subscription identifiers), up to RESOLVED_MAX answers: a
        device publishes on the same topic again and again, and a topic-tree walk with its
        parameters costs more than the rest of the lookup. The parameters dict is shared:
        read-only (handlers get copies as keyword arguments; a Message gets its own)."""
        ids = delivery.subscription_ids
        key = (delivery.topic, ids) if ids else delivery.topic
        found = self._resolved.get(key)
        if found is None:
            found = self._resolve(delivery)
            if found is not None:
                if len(self._resolved) >= RESOLVED_MAX:
                    self._resolved.clear()
                self._resolved[key] = found
        return found

    def _resolve(self, delivery: Any) -> tuple[Route, Params] | None:
        for sub_id in delivery.subscription_ids:
            route = self.by_sub_id.get(sub_id)
            if route is not None:
                # Checked, not trusted: a persistent session may still hold a subscription
                # made by an older version of the application under the same identifier.
                params = route.matches(delivery.topic)
                if params is not None:
                    return route, params
        return self.router.match_in(delivery.topic, self.routes) or \
            self.router.match(delivery.topic)

    # --- intake --------------------------------------------------------------------------
    @property
    def inflight(self) -> int:
        """Messages whose handler is running now."""
        return len(self._active)

    @property
    def queued(self) -> int:
        return self._waiting

    @property
    def idle(self) -> bool:
        """Nothing running and nothing waiting for a handler."""
        return self._idle.is_set()

    def submit(self, delivery: Any) -> None:
        """Accept one delivery (call on the loop's thread)."""
        self.metrics.received += 1
        found = self.resolve(delivery)
        if found is None:
            self.metrics.unrouted += 1
            self._unrouted_log("no route of the application matches topic %s",
                               delivery.topic, topic=delivery.topic)
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
        job = _Job(route, delivery, params)
        if self.quarantine is not None and delivery.qos and self._suspect(job):
            return  # poison: spooled and acknowledged
        if not route.shared:
            backlog = self._ordered.get(route.key)
            if backlog is None:
                self._ordered[route.key] = deque()
                self._spawn(job)
                return
            backlog.append(job)  # one of its messages is running: wait behind it
        elif job.lane is not None and self._lane_full(job):
            self._idle.clear()
            self._held.setdefault(job.lane, deque()).append(job)
        elif self._started < self.max_inflight:
            self._spawn(job)
            return
        else:
            self._idle.clear()
            self._pending.append(job)
        self._waiting += 1
        if self._waiting >= self.high_water and not self.paused and self._pause is not None:
            self.paused = True
            self._pause()

    def _lane_full(self, job: _Job) -> bool:
        return self._lane_running.get(job.lane, 0) >= job.limit  # type: ignore[arg-type]

    def _suspect(self, job: _Job) -> bool:
        """Check a QoS 1/2 delivery against the quarantine: True when it is poison (then
        spooled as a dead letter and acknowledged here); a suspect (in flight at a death
        before) runs alone among suspects, so that a second death convicts the culprit and
        not the messages that happened to be in flight beside it."""
        q, delivery = self.quarantine, job.delivery
        assert q is not None
        if getattr(delivery, "dup", False):  # a redelivery: did a worker of this host die?
            q.harvest(min_interval=DUP_HARVEST_INTERVAL)
        deaths = q.deaths(delivery.topic, delivery.payload)  # no hashing while none died
        if not deaths:
            return False
        if q.poisonous(delivery.topic, delivery.payload):
            self.metrics.rejected += 1
            if self._failed(job.route, delivery,
                            f"poison: its worker process died {deaths} times while handling "
                            f"it (poison_threshold {q.threshold}); not run again", None,
                            deaths):
                q.forget(delivery.topic, delivery.payload)  # spooled: done with it
            self._finish(delivery)
            return True
        job.deaths = deaths
        if job.route.shared:  # a route that is not shared runs one at a time anyway
            job.lane, job.limit = SUSPECT_LANE, 1
        log.warning("%s was in flight when a worker died (%d of %d): running it alone",
                    delivery.topic, deaths, q.threshold,
                    extra={"route": job.route.topic, "topic": delivery.topic})
        return False

    def _spawn(self, job: _Job) -> None:
        """Start a job: it holds its slot from now on, and a runner will take it."""
        route = job.route
        if job.lane is not None:
            self._lane_running[job.lane] = self._lane_running.get(job.lane, 0) + 1
        self._started += 1
        self._ready.append(job)
        if not self._free:
            self._add_runner()
        self._idle.clear()
        job.timeout = self.handler_timeout if route.timeout is None else route.timeout
        if job.timeout > 0 and self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(
                self._sweep_interval(job.timeout), self._sweep)

    def _add_runner(self) -> None:
        self._free += 1
        self._runners.add(asyncio.get_running_loop().create_task(
            self._run(), context=self._context.copy()))

    async def _run(self) -> None:
        """A runner: process the started jobs until none is left (see the module docstring).

        It ends early, leaving the rest to a fresh runner, after a job whose handler changed
        the runner's contextvars or swallowed a cancellation: the next message must not
        inherit either. Cancelled (stopping), it ends with its job unacknowledged."""
        ready = self._ready
        task = asyncio.current_task()
        assert task is not None
        context = contextvars.copy_context()
        try:
            while ready:
                job = ready.popleft()
                self._free -= 1
                job.task = task
                try:
                    coro = self._process(job)
                    try:
                        waiting = coro.send(None)  # up to its first wait, in this task
                    except StopIteration:
                        pass  # done without waiting: on to the next job in this same turn
                    else:
                        if ready and not self._free:  # it waits: the rest need a runner
                            self._add_runner()
                        await _resume(coro, waiting)
                except Exception:  # a bug of ours (the handler's errors are caught inside)
                    log.exception("processing %s failed", job.delivery.topic,
                                  extra={"route": job.route.topic, "topic": job.delivery.topic})
                finally:
                    self._free += 1  # before _next: what it starts is ours to take
                    self._next(job)
                if task.cancelling() or contextvars.copy_context() != context:
                    break
        finally:
            self._free -= 1
            self._runners.discard(task)
            if ready and not self._free:
                self._add_runner()

    def _next(self, job: _Job) -> None:
        """Called as a job ends (or is dropped unstarted): start what waited for it, or note
        that all is done."""
        self._started -= 1
        if not job.route.shared:
            backlog = self._ordered.get(job.route.key)
            if backlog:
                self._waiting -= 1
                self._spawn(backlog.popleft())
            elif backlog is not None:
                del self._ordered[job.route.key]
        elif job.lane is not None:
            key = job.lane
            self._lane_running[key] -= 1
            held = self._held.get(key)
            if held:  # its turn among the others: first in line for a free slot
                self._pending.appendleft(held.popleft())
            if held is not None and not held:
                del self._held[key]
        while self._pending and self._started < self.max_inflight:
            waiting = self._pending.popleft()
            if waiting.lane is not None and self._lane_full(waiting):
                self._held.setdefault(waiting.lane, deque()).append(waiting)
                continue
            self._waiting -= 1
            self._spawn(waiting)
        if self.paused and self._waiting <= self.high_water // 2:
            self.paused = False
            if self._resume is not None:
                self._resume()
        if not self._started and not self._pending:
            self._idle.set()

    # --- handler timeouts ----------------------------------------------------------------
    @staticmethod
    def _sweep_interval(timeout: float) -> float:
        return min(1.0, max(0.01, timeout / 10))

    def _sweep(self) -> None:
        """Cancel the handlers that outlived their timeout (the route's, else
        handler_timeout); re-arm while any with a timeout runs."""
        self._sweeper = None
        now = time.monotonic()
        timeouts = [job.timeout for job in self._active if job.timeout > 0]
        for job, started in list(self._active.items()):
            if 0 < job.timeout <= now - started and not job.timed_out and job.task is not None:
                job.timed_out = True
                job.task.cancel()
        if self._started:  # a job may be spawned and not yet started: keep sweeping
            self._sweeper = asyncio.get_running_loop().call_later(
                self._sweep_interval(min(timeouts, default=self.handler_timeout or 1.0)),
                self._sweep)

    # --- one message ---------------------------------------------------------------------
    async def _process(self, job: _Job) -> None:
        """Run a message's attempts, then ack it (handled, or spooled as a dead letter).

        Between attempts (its route's retries) the job keeps its place: it still counts
        against max_inflight, and a route that is not shared starts nothing behind it, so
        its order holds. Cancelled (stopping), it leaves the message unacknowledged.
        The attempts run in this one coroutine (no frame per attempt: it is per message).
        """
        route, delivery = job.route, job.delivery
        # In the journal while it runs: if this process dies now, the message is a suspect.
        q = self.quarantine if delivery.qos else None
        attempt = 0
        failure: tuple[str, BaseException] | None = None
        try:
            while True:
                attempt += 1
                slot = q.begin(delivery.topic, delivery.payload) if q is not None else -1
                self._active[job] = job.started = time.monotonic()
                job.timed_out = False
                try:
                    payload = decode_payload(delivery.payload)  # afresh for each attempt
                    if route.plain:  # a coroutine handler, no middleware, no Message
                        await route.handler(**job.params, payload=payload, client=self.client)
                    elif route.uses_message:
                        await route.call(delivery.topic, payload, self.client, job.params,
                                         Message(delivery, payload, dict(job.params),
                                                 self.client, attempt))
                    else:
                        await route.call(delivery.topic, payload, self.client, job.params)
                    failure = None
                except asyncio.CancelledError as exc:
                    if not job.timed_out:
                        raise
                    current = asyncio.current_task()
                    if current is not None:
                        current.uncancel()  # the cancellation was ours and is handled here
                    error = timed_out(job.timeout, exc)  # its traceback: where it waited
                    failure = str(error), error
                except Exception as exc:
                    failure = failure_text(exc), exc
                finally:
                    del self._active[job]
                    if slot >= 0:
                        q.end(slot)  # type: ignore[union-attr]
                if failure is None:
                    break
                delay = route.retry.delay(attempt)
                if delay is None:
                    break
                await self._back_off(job, attempt, jittered(delay), failure[0])
        except asyncio.CancelledError:
            # Stopping: no ack, the broker keeps the message for this session. What waited
            # behind this job is not started (cancel() cleared it); the runner calls _next.
            raise
        if failure is not None:
            self._failed(route, delivery, failure[0], failure[1], attempt)
        if job.deaths:  # it ended without taking the process down: not the culprit
            self.quarantine.forget(delivery.topic, delivery.payload)  # type: ignore[union-attr]
        self.metrics.handled(route.key, time.monotonic() - job.started, failure is None)
        self._finish(delivery)

    async def _back_off(self, job: _Job, attempt: int, delay: float, error: str) -> None:
        """Wait before the next attempt, unacknowledged (a kill now loses nothing: the
        broker delivers the message again)."""
        route = job.route
        log.warning("attempt %d of %d failed for %s on route %s: %s; retrying in %.2fs",
                    attempt, route.retry.attempts, job.delivery.topic, route.topic, error,
                    delay, extra={"route": route.topic, "topic": job.delivery.topic,
                                  "error": error, "attempt": attempt})
        stats = self.metrics.route(route.key)
        stats.retries += 1
        stats.retrying += 1
        until = time.monotonic() + delay
        try:
            while True:
                try:
                    await asyncio.sleep(until - time.monotonic())
                    return
                except asyncio.CancelledError:
                    if not job.timed_out:
                        raise  # stopping
                    # The sweep's cancel came as the attempt ended by itself: not for us.
                    job.timed_out = False
                    current = asyncio.current_task()
                    if current is not None:
                        current.uncancel()
        finally:
            stats.retrying -= 1

    def _finish(self, delivery: Any) -> None:
        if delivery.qos:
            self.ack(delivery)

    def _failed(self, route: Route, delivery: Any, error: str,
                exc: BaseException | None, attempts: int = 1) -> bool:
        """Log a message that failed for good and hand it to `dead_letter`; False when
        that raised (the spool could not be written)."""
        after = f" (attempt {attempts} of {attempts})" if attempts > 1 else ""
        log.error("handler failed for %s on route %s%s: %s", delivery.topic, route.topic,
                  after, error, exc_info=exc,
                  extra={"route": route.topic, "topic": delivery.topic, "error": error,
                         "attempt": attempts})
        if self.dead_letter is None:
            return True
        try:
            self.dead_letter(dead_letter_record(route, delivery, error,
                                                self.max_payload_bytes, attempts))
            return True
        except Exception:
            log.exception("dead-letter publish failed for %s", delivery.topic,
                          extra={"route": route.topic, "topic": delivery.topic})
            return False

    # --- stopping ------------------------------------------------------------------------
    async def drain(self, timeout: float) -> bool:
        """Wait until every accepted delivery finished; False if `timeout` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def cancel(self, grace: float = CANCEL_GRACE) -> int:
        """Cancel what still runs (after a drain timed out): those messages stay unacked.

        Waits at most `grace` seconds for the handlers to end: one that swallows its
        cancellation must not keep the worker from stopping. Returns how many did not end.
        """
        self._pending.clear()
        self._held.clear()
        for backlog in self._ordered.values():
            backlog.clear()
        self._waiting = 0
        while self._ready:  # started, never run: they give their slots back unacknowledged
            self._next(self._ready.popleft())
        tasks = list(self._runners)
        for task in tasks:
            task.cancel()
        if not tasks:
            return 0
        _, pending = await asyncio.wait(tasks, timeout=grace)
        # A runner cancelled before its first step never ran its bookkeeping; the runners
        # still alive are inside a handler, not free.
        self._free = 0
        self._runners = {task for task in self._runners if not task.done()}
        if pending:
            log.error("%d handlers ignored cancellation for %.0fs; leaving them (their "
                      "messages stay unacknowledged and are delivered again)", len(pending),
                      grace)
        return len(pending)

    def stuck(self, now: float | None = None) -> bool:
        """True when a handler outlived its timeout plus a grace period (cancelling it did
        not end it): the worker should stop pinging the watchdog so systemd restarts it."""
        now = time.monotonic() if now is None else now
        return any(0 < job.timeout < now - started - STUCK_GRACE
                   for job, started in self._active.items())


@types.coroutine
def _resume(coro: Any, waiting: Any) -> Generator[Any, Any, None]:
    """Go on with `coro` inside the current task after it yielded `waiting` (a future, or
    None for a bare yield) from a step driven by hand: `yield from coro` from its second
    step on. Results and exceptions (a cancellation too) reach it where it waits."""
    while True:
        try:
            sent = yield waiting
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # thrown into the task: CancelledError above all
            try:
                waiting = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                waiting = coro.send(sent)
            except StopIteration:
                return


def dead_letter_record(route: Route, delivery: Any, error: str,
                       max_payload_bytes: int | None = None, attempts: int = 1
                       ) -> dict[str, Any]:
    """What goes to the dead-letter topic: enough to inspect and replay the message (its
    retain flag and MQTT 5 properties too, see routemq.message.properties_record).

    A payload over `max_payload_bytes` is left out (its size and SHA-256 stay): it was
    rejected for its size, and base64 would make the dead letter a third larger still.
    """
    raw = delivery.payload
    record: dict[str, Any] = {"topic": delivery.topic, "route": route.topic, "error": error,
                              "qos": delivery.qos, "time": time.time(), "attempts": attempts,
                              "retain": bool(getattr(delivery, "retain", False)),
                              "payload_bytes": len(raw)}
    properties = properties_record(getattr(delivery, "properties", None))
    if properties:
        record["properties"] = properties
    if max_payload_bytes is not None and len(raw) > max_payload_bytes:
        record.update(payload=None, payload_encoding="omitted",
                      payload_sha256=hashlib.sha256(raw).hexdigest())
        return record
    try:
        text, encoding = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(raw).decode("ascii"), "base64"
    record.update(payload=text, payload_encoding=encoding)
    return record


def dead_letter_payload(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


def dead_letter_publisher(client: Any, topic: str, sender: str
                          ) -> Callable[[dict[str, Any]], None] | None:
    """The Dispatcher's `dead_letter` callback: publish each record at QoS 1 to `topic`,
    naming the `sender` (client id); None when no dead-letter topic is configured."""
    if not topic:
        return None

    def publish(record: dict[str, Any]) -> None:
        record["worker"] = sender
        client.publish(topic, dead_letter_payload(record), qos=1)
    return publish
