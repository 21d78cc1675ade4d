"""One worker instance (`routemq worker --instance N`, unit `routemq-worker@N.service`).

Shutdown and threading, in the order they matter:

- paho runs on the worker's asyncio loop (mqtt_aio.LoopDriver: no network thread, one
  recv for many packets); deliveries go to an inbox that the loop pumps into the
  Dispatcher, which runs the handlers and acks each QoS 1 message only after its handler
  returned. The broker's flow control (MQTT 5 Receive
  Maximum = max_inflight) bounds how many unacknowledged messages can pile up here, and the
  dispatcher pauses socket reads when too many wait. A handler that blocks the loop also
  stops this worker's MQTT I/O: the watchdog restarts it.
- WATCHDOG=1 is sent by a task on the same loop, so a handler that blocks the loop stops
  the pings, and so does a handler stuck past its timeout (see Dispatcher.stuck).
- SIGTERM: STOPPING=1; with a master running, state "stopping" in the health file and wait
  (HANDOVER_WAIT at most, handover.py) until the master's plan no longer lists this
  instance, which it writes only once the new owners of our routes have subscribed; then
  unsubscribe what another instance now holds (membership.release_on_stop), finish what was
  received within drain_timeout, disconnect, and end the broker session when nothing is kept
  in it (planned out and empty). Without a master: unsubscribe the shared filters (the other
  members take the share). What is not finished stays unacknowledged in the session.
- SIGHUP, or a new plan file: re-read the plan and change only the subscriptions that
  changed.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from typing import Any, Coroutine

from routemq.assignment import Assignment
from routemq.deadletters import dead_letter_sink, spool_for
from routemq.dispatcher import Dispatcher
from routemq.documents import WorkerHealth, WorkerState
from routemq.errors import WorkerError
from routemq.handover import wait_for_handover
from routemq.membership import Release, release_on_stop
from routemq.metrics import WorkerMetrics, process_usage
from routemq.mqtt import Message, MqttClient
from routemq.notify import Notifier
from routemq.poison import Quarantine, open_quarantine
from routemq.registry import load_router
from routemq.router import Router
from routemq.runtime import (FileLock, RuntimePaths, lock_holder, mark_session, running_master,
                             unmark_session, write_text_atomic)
from routemq.session import (client_id, connect_options, end_session, on_loop, routes_by_id,
                             until_quiet)
from routemq.subscriptions import Subscriptions
from routemq.timings import CANCEL_GRACE, UNSUBACK_WAIT

log = logging.getLogger("routemq.worker")

PLAN_WAIT = 15.0  # seconds to wait for a plan that includes this instance
LOCK_WAIT = 50.0  # seconds to wait for the instance's lock (a drainer of its old session)


class Worker:
    def __init__(self, config: Any, instance: int, router: Router | None = None) -> None:
        self.config = config
        self.instance = instance
        self.router = router or load_router(config.router_directory, config.app_root)
        self.paths = RuntimePaths(config.runtime_dir)
        self.notifier = Notifier()
        self.metrics = WorkerMetrics()
        self._state = WorkerState.STARTING
        self.state_since = time.time()  # `routemq status` tells a long "joining" from a start
        self.reconnects = 0
        self.started_at = time.time()
        self.client_id = client_id(config.client_id_prefix, instance)
        # Subscription identifier -> route, over every route, not only the held ones: a
        # delivery that arrives just after its route moved away still names its route.
        self.by_sub_id = routes_by_id(self.router)
        self._inbox: deque[Message] = deque()
        self._last_delivery = 0.0  # monotonic time of the latest delivery
        self._wake_scheduled = False
        self._loop_thread: int | None = None  # the thread of the asyncio loop, once running
        self._ready_sent = False
        self._accepting = True
        # While a stopping worker drains the routes it released: the keys of those routes
        # (their late deliveries are handled) and when the last of them arrived.
        self._released: frozenset[str] | None = None
        self._last_released = 0.0
        self.assignment = Assignment(self.router, instance, self.paths.plan,
                                     config.worker_count)
        self.plan_version = 0  # of the plan whose subscriptions the broker acknowledged
        self._stop = asyncio.Event()
        self._fail: WorkerError | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.client = MqttClient(connect_options(config, self.client_id), manual_ack=True,
                                 on_connect=self._cb(self._on_connect),
                                 on_connect_failed=self._cb(self._on_connect_failed),
                                 on_disconnect=self._cb(self._on_disconnect),
                                 on_message=self._on_message)
        self.subs = Subscriptions(self.client, self.router, config.mqtt_group_name,
                                  on_done=self._subscribed_all, on_refused=self._refused)
        self.client.reconnect_delay_set(0.5, 30)
        self.dispatcher = Dispatcher(
            self.router, client=self.client, ack=self._ack,
            max_inflight=config.max_inflight, handler_timeout=config.handler_timeout,
            max_payload_bytes=config.max_payload_bytes, metrics=self.metrics,
            dead_letter=dead_letter_sink(spool_for(config), self.client,
                                         config.dead_letter_topic, self.client_id,
                                         on_spool_error=self._spool_failed))
        self._spool_error: OSError | None = None
        self.quarantine: Quarantine | None = None  # opened in run(), once the lock is ours

    @property
    def state(self) -> WorkerState:
        return self._state

    @state.setter
    def state(self, value: WorkerState) -> None:
        if value != self._state:
            self._state, self.state_since = value, time.time()

    # --- paho -> loop ---------------------------------------------------------------------
    def _cb(self, fn: Any) -> Any:
        return on_loop(lambda: self._loop, fn)

    def _on_message(self, msg: Message) -> None:  # inside the client's packet handling
        if self._accepting and threading.get_ident() == self._loop_thread:
            # On the loop (routemq.inbound's reader): straight in, no inbox round trip.
            self._last_delivery = time.monotonic()
            self.dispatcher.submit(msg)
            return
        self._inbox.append(msg)
        if not self._wake_scheduled and self._loop is not None:
            self._wake_scheduled = True  # one wake-up per burst, not one per message
            self._loop.call_soon_threadsafe(self._pump)

    def _pump(self) -> None:
        self._wake_scheduled = False  # before draining: a later append schedules again
        self._last_delivery = time.monotonic()
        inbox, submit = self._inbox, self.dispatcher.submit
        while inbox:
            msg = inbox.popleft()
            if self._accepting:
                submit(msg)
            elif self._released is not None and self._late_release(msg):
                submit(msg)
            # else: stopping; left unacknowledged in the session for the next start

    def _late_release(self, msg: Message) -> bool:
        """A delivery for a route this stopping worker released (queued for its session
        before the UNSUBACK): nobody else will get it, so it is handled here."""
        found = self.dispatcher.resolve(msg)
        if found is None or found[0].key not in self._released:  # type: ignore[operator]
            return False
        self._last_released = time.monotonic()
        return True

    def _ack(self, msg: Message) -> None:
        if self._spool_error is not None:
            return  # a dead letter may be unwritten: the broker delivers it again
        self.client.ack(msg.mid, msg.qos, msg.generation)

    def _spool_failed(self, exc: OSError) -> None:
        """A dead letter could not be spooled (disk full, read-only): acknowledge nothing
        more and stop (exit 1), so the broker keeps the message for the next start."""
        if self._spool_error is None:
            self._fail = WorkerError(f"cannot write dead letters: {exc}; stopping without "
                                     "acknowledging")
            self._stop.set()
        self._spool_error = exc

    # --- connection events (on the loop) -------------------------------------------------
    def _on_connect(self, session_present: bool, reason: int) -> None:
        log.info("connected to %s (session present: %s)", self.client.options.url,
                 session_present)
        self.state = WorkerState.RUNNING if self._ready_sent else WorkerState.SUBSCRIBING
        self.subs.resubscribe(session_present)

    def _refused(self, reason: int) -> None:
        self._fail = WorkerError(f"broker refused subscription (reason {reason:#x})")
        self._stop.set()

    def _subscribed_all(self) -> None:
        self.state = WorkerState.RUNNING
        self.plan_version = self.assignment.generation
        if not self._ready_sent:
            self._ready_sent = True
            self.notifier.ready(self.status_line())
            log.info("ready: %d subscriptions", len(self.subs.subscribed))

    def _on_connect_failed(self, reason: str) -> None:
        self.state = WorkerState.WAITING_FOR_BROKER
        log.warning("%s; retrying", reason)
        self.notifier.status(f"waiting for broker: {reason}")

    def _on_disconnect(self, reason: str) -> None:
        if self.state == WorkerState.DRAINING:
            log.info("%s", reason)  # our own DISCONNECT at the end of a drain
            return
        self.reconnects += 1
        self.state = WorkerState.RECONNECTING
        log.warning("%s; reconnecting", reason)
        self.notifier.status(f"reconnecting to {self.client.options.url}: {reason}")

    # --- reload --------------------------------------------------------------------------
    def reload(self) -> None:
        """Re-read the plan and change only the subscriptions that changed."""
        self.notifier.reloading()
        try:
            routes = self.assignment.load()
        except WorkerError as exc:
            log.warning("reload failed, keeping the current subscriptions: %s", exc)
            self.notifier.ready()
            return
        self.dispatcher.hold(routes, self.by_sub_id)
        added, removed = self.subs.change(routes)
        log.log(logging.INFO if added or removed else logging.DEBUG,
                "plan reloaded: +%d -%d subscriptions", len(added), len(removed))
        self.notifier.ready(self.status_line())

    # --- periodic work -------------------------------------------------------------------
    async def _ticker(self) -> None:
        """Watchdog pings, STATUS=, the health file and plan-change detection."""
        interval = min(self.notifier.watchdog_interval or 1.0, self.config.health_interval)
        last_health = 0.0
        while not self._stop.is_set():
            if not self.dispatcher.stuck():
                self.notifier.watchdog()
            elif self.state != WorkerState.STUCK:
                self.state = WorkerState.STUCK
                log.error("a handler is stuck past handler_timeout; no more watchdog pings")
            now = time.monotonic()
            if now - last_health >= self.config.health_interval:
                last_health = now
                health = self.health()
                self.write_health(health)
                self.notifier.status(self.status_line(health))
                if self.quarantine is not None:
                    self.quarantine.harvest()  # did a worker of this host die meanwhile?
                if self._ready_sent and self.assignment.changed():
                    self.reload()
            try:
                await asyncio.wait_for(self._stop.wait(), interval)
            except TimeoutError:
                pass

    def status_line(self, health: WorkerHealth | None = None) -> str:
        h = health or self.health()
        return (f"{h.state}; {len(h.routes_held or ())} routes; {h.rate} msg/s; "
                f"processed {h.processed}; errors {h.errors}")

    def health(self) -> WorkerHealth:
        """This worker's health file (written every health_interval)."""
        rss, cpu = process_usage()
        return WorkerHealth(
            instance=self.instance, pid=os.getpid(), client_id=self.client_id,
            state=self.state, state_since=self.state_since,
            connected=self.client.connected,
            subscriptions=tuple(self.subs.filters()),
            routes_held=tuple(r.key for r in self.subs.held),
            inflight=self.dispatcher.inflight, queued=self.dispatcher.queued,
            reconnects=self.reconnects, rss_bytes=rss, cpu_seconds=cpu,
            started_at=self.started_at, updated_at=time.time(),
            plan_version=self.plan_version, **self.metrics.snapshot(),
        )

    def write_health(self, health: WorkerHealth) -> None:
        try:
            write_text_atomic(self.paths.health(self.instance), health.to_json())
        except OSError as exc:
            log.warning("cannot write health file: %s", exc)

    # --- main ----------------------------------------------------------------------------
    async def run(self) -> int:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        await self.take_lock()
        self.quarantine = self.dispatcher.quarantine = open_quarantine(
            self.config, f"worker-{self.instance}", self.router)
        if self.assignment.planned:  # a master plans: tell it we are here
            self.state = WorkerState.JOINING
            self.write_health(self.health())
        self.subs.held = await self.assignment.wait(PLAN_WAIT, self.notifier.watchdog)
        self.dispatcher.hold(self.subs.held, self.by_sub_id)
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, self._stop.set)
        self._loop.add_signal_handler(signal.SIGHUP, self.reload)
        log.info("worker %d starting: client id %s, %d routes, broker %s", self.instance,
                 self.client_id, len(self.subs.held), self.client.options.url)
        self.notifier.status(f"connecting to {self.client.options.url}")
        mark_session(self.paths.workers, self.instance)  # the master drains it if we vanish
        self.client.connect_async()
        self.client.loop_start()
        ticker = asyncio.create_task(self._ticker())
        ticker.add_done_callback(self._ticker_done)
        await self._stop.wait()
        await self.shutdown()
        ticker.cancel()
        if self.quarantine is not None:
            self.quarantine.close()  # a clean stop: what it held was no death
        if self._fail is not None:
            log.error("%s", self._fail)
            return 1
        return 0

    async def take_lock(self) -> None:
        """One process per instance number: two would take over one client id from each
        other without end (41 takeovers in 20 s once). The kernel drops the lock with its
        holder, kill -9 included. A drainer of this instance's old session may hold it for
        a while: wait, up to LOCK_WAIT."""
        self.lock = FileLock(self.paths.instance_lock(self.instance))
        deadline = time.monotonic() + LOCK_WAIT
        said = False
        while not self.lock.try_acquire():
            holder = lock_holder(self.lock.path)
            if time.monotonic() >= deadline:
                raise WorkerError(f"instance {self.instance} is already running (pid "
                                  f"{holder or '?'} holds {self.lock.path})")
            if not said:
                said = True
                log.warning("instance %d is held by pid %s; waiting up to %.0fs",
                            self.instance, holder or "?", LOCK_WAIT)
            self.notifier.watchdog()
            await asyncio.sleep(0.5)

    def _ticker_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # Without the ticker there are no watchdog pings or health files: stop loudly.
            log.error("internal error in the periodic task", exc_info=task.exception())
            self._fail = WorkerError(f"internal error: {task.exception()!r}")
            self._stop.set()

    async def shutdown(self) -> None:
        """Hand over, release what others now hold, drain and disconnect; end the broker
        session when nothing is left in it (see the module docstring for the order)."""
        standalone, plan = True, None
        if self._ready_sent and self._fail is None and self._master_running():
            self.state = WorkerState.STOPPING
            self.notifier.stopping("waiting for the master to move this instance's routes")
            standalone, plan = await wait_for_handover(self.paths, self.instance,
                                                       self._report_stopping)
        release = release_on_stop(self.subs.by_route(), self.instance, plan,
                                  standalone=standalone)
        self.state = WorkerState.DRAINING
        self.notifier.stopping(f"draining {self.dispatcher.inflight} in-flight messages")
        if release.filters and self.client.connected:
            unsubscribing = self.subs.unsubscribe(list(release.filters))
            try:
                await asyncio.wait_for(asyncio.shield(unsubscribing), UNSUBACK_WAIT)
            except TimeoutError:
                log.warning("no UNSUBACK within %.0fs", UNSUBACK_WAIT)
        drained = await self._drain(release)
        if not drained:
            log.warning("drain timeout (%.0fs): %d messages left unacknowledged for the next "
                        "start", self.config.drain_timeout,
                        self.dispatcher.inflight + self.dispatcher.queued)
            await self.dispatcher.cancel()
        await asyncio.to_thread(self.client.disconnect)
        if release.end_session and drained:
            # Planned out and empty: a session left behind would go on collecting messages
            # of the plain routes for an instance that may never come back.
            if await asyncio.to_thread(end_session, self.client.options):
                unmark_session(self.paths.workers, self.instance)
                log.info("broker session %s ended", self.client_id)
        try:
            os.unlink(self.paths.health(self.instance))
        except FileNotFoundError:
            pass
        log.info("worker %d stopped: processed %d, errors %d", self.instance,
                 self.metrics.processed, self.metrics.errors)

    def _master_running(self) -> bool:
        return running_master(self.paths, time.time()) is not None

    def _report_stopping(self) -> None:
        self.write_health(self.health())
        self.notifier.watchdog()

    async def _drain(self, release: Release) -> bool:
        """Finish what was received. A session about to end must also hand over what the
        broker had queued for it and still delivers after the UNSUBACK: keep accepting until
        quiet. Otherwise what arrives from now on stays in the session for the next start."""
        timeout = self.config.drain_timeout
        if release.end_session:
            quiet = await until_quiet(
                lambda: self.dispatcher.idle and not self._inbox,
                lambda: self._last_delivery, timeout)
            self._accepting = False
            return quiet or await self.dispatcher.drain(0)
        self._pump()  # everything received before the UNSUBACK is ours to finish
        self._accepting = False
        started = time.monotonic()
        if release.filters:
            # The broker still delivers what it had queued in this session for the filters
            # just released (as acks free the in-flight window): handle that until quiet.
            # Deliveries of the routes kept stay in the session for the next start.
            by_route = self.subs.by_route()
            self._released = frozenset(key for key, f in by_route.items()
                                       if f in release.filters)
            self._last_released = started
            await until_quiet(lambda: self.dispatcher.idle and not self._inbox,
                              lambda: self._last_released, timeout)
        return await self.dispatcher.drain(max(0.0, timeout - (time.monotonic() - started)))


def run_worker(config: Any, instance: int, router: Router | None = None,
               drain: bool = False) -> int:
    """Entry point of `routemq worker`: 0 on a clean stop, 1 on a fatal error.

    With `drain`, the drainer of a planned-out instance's session instead (routemq.drain).
    """
    try:
        if drain:
            from routemq.drain import SessionDrainer
            app = router or load_router(config.router_directory, config.app_root)
            return run_bounded(SessionDrainer(config, instance, app).run())
        return run_bounded(Worker(config, instance, router).run())
    except WorkerError as exc:
        log.error("worker %d: %s", instance, exc)
        return 1


def run_bounded(main: Coroutine[Any, Any, int]) -> int:
    """asyncio.run(main), except that it gives up on tasks still running after `main` ended.

    asyncio.run cancels what is left and waits for it without a limit, so one handler that
    swallows its cancellation would keep a stopping worker alive forever. Here the leftovers
    get CANCEL_GRACE seconds; then the process exits without them (their messages were never
    acknowledged: the broker delivers them again).
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        code = loop.run_until_complete(main)
        left = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.wait(left, timeout=CANCEL_GRACE))
        if any(not t.done() for t in left):
            log.error("exiting with handlers still running: they ignored cancellation")
            logging.shutdown()  # flush the log before leaving without cleanup
            sys.stdout.flush()
            os._exit(code)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        return code
    finally:
        asyncio.set_event_loop(None)
        loop.close()
