"""The drainer (`routemq worker --instance N --drain`): empties and ends the broker session of
an instance that left the plan while its process was gone.

An instance that crashed and was not restarted (its unit failed; the back end gave up) keeps a
persistent session at the broker, and the broker goes on queueing a share of every shared
route it had subscribed, for nobody. Once the master has planned the instance out (its routes
are held by the others), it starts this drainer, which:

1. takes the instance's lock, so it never runs beside a worker of that number (if one runs,
   there is nothing to drain: exit EXIT_BUSY);
2. connects with the instance's client id, resuming its session (no session: nothing to do);
3. unsubscribes every filter of the application, so nothing more is queued there;
4. handles what the session delivers exactly as a worker would (same dispatcher: handler,
   then PUBACK; at-least-once), until nothing arrived for session.QUIET seconds;
5. ends the session and exits 0. If it cannot finish within `timeout`, it leaves the rest
   unacknowledged in the session (exit 1) and the master tries again.

It writes no health file (it is not a member of the plan) and sends no sd_notify messages.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from routemq.deadletters import dead_letter_sink, spool_for
from routemq.dispatcher import Dispatcher
from routemq.errors import EXIT_BUSY, EXIT_FAILURE, EXIT_OK
from routemq.metrics import WorkerMetrics
from routemq.mqtt import Message, MqttClient
from routemq.poison import Quarantine, open_quarantine
from routemq.router import Router
from routemq.runtime import FileLock, RuntimePaths, unmark_session
from routemq.session import (client_id, connect_options, end_session, on_loop, routes_by_id,
                             until_quiet)
from routemq.subscriptions import app_filters
from routemq.timings import UNSUBACK_WAIT

log = logging.getLogger("routemq.drain")

CONNECT_WAIT = 30.0
DRAIN_LIMIT = 300.0  # seconds to hand over what a session holds before giving up for now


class SessionDrainer:
    def __init__(self, config: Any, instance: int, router: Router) -> None:
        self.config, self.instance, self.router = config, instance, router
        self.client_id = client_id(config.client_id_prefix, instance)
        self.metrics = WorkerMetrics()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.connected = asyncio.Event()
        self.session_present = False
        self.last_delivery = 0.0
        self.client = MqttClient(
            connect_options(config, self.client_id), manual_ack=True,
            on_connect=on_loop(lambda: self.loop, self._on_connect),
            on_connect_failed=on_loop(lambda: self.loop, self._on_connect_failed),
            on_message=self._on_message)
        self.dispatcher = Dispatcher(
            router, client=self.client, ack=self._ack, max_inflight=config.max_inflight,
            handler_timeout=config.handler_timeout, max_payload_bytes=config.max_payload_bytes,
            metrics=self.metrics,
            dead_letter=dead_letter_sink(spool_for(config), self.client,
                                         config.dead_letter_topic, self.client_id,
                                         on_spool_error=self._spool_failed))
        self.spool_error: OSError | None = None
        self.dispatcher.hold(router.routes, routes_by_id(router))
        self.quarantine: Quarantine | None = None

    def _on_connect(self, session_present: bool, reason: int) -> None:
        self.session_present = session_present
        self.connected.set()

    def _on_connect_failed(self, reason: str) -> None:
        log.warning("draining instance %d: %s; retrying", self.instance, reason)

    def _on_message(self, msg: Message) -> None:  # inside paho's packet handling
        self.last_delivery = time.monotonic()
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.dispatcher.submit, msg)

    def _ack(self, msg: Message) -> None:
        if self.spool_error is None:  # else a dead letter may be unwritten: keep it queued
            self.client.ack(msg.mid, msg.qos, msg.generation)

    def _spool_failed(self, exc: OSError) -> None:
        if self.spool_error is None:
            log.error("draining instance %d: cannot write dead letters: %s; acknowledging "
                      "nothing more", self.instance, exc)
        self.spool_error = exc

    async def run(self, timeout: float = DRAIN_LIMIT) -> int:
        self.loop = asyncio.get_running_loop()
        paths = RuntimePaths(self.config.runtime_dir)
        lock = FileLock(paths.instance_lock(self.instance))
        if not lock.try_acquire():
            log.info("instance %d is running: its session is its own", self.instance)
            return EXIT_BUSY
        # A poison message in the session must not kill the drainer again and again.
        self.quarantine = self.dispatcher.quarantine = open_quarantine(
            self.config, f"drain-{self.instance}", self.router)
        try:
            return await self._drain(paths, timeout)
        finally:
            if self.quarantine is not None:
                self.quarantine.close()

    async def _drain(self, paths: RuntimePaths, timeout: float) -> int:
        self.client.connect_async()
        self.client.loop_start()
        try:
            await asyncio.wait_for(self.connected.wait(), CONNECT_WAIT)
        except TimeoutError:
            log.error("draining instance %d: no connection to %s within %.0fs", self.instance,
                      self.client.options.url, CONNECT_WAIT)
            await asyncio.to_thread(self.client.disconnect)
            return EXIT_FAILURE
        drained = True
        if self.session_present:
            log.info("draining the broker session %s", self.client_id)
            filters = sorted(app_filters(self.router, self.config.mqtt_group_name))
            try:
                await asyncio.wait_for(self.client.unsubscribed(filters), UNSUBACK_WAIT)
            except (TimeoutError, ConnectionError) as exc:
                log.warning("no UNSUBACK within %.0fs: %r", UNSUBACK_WAIT, exc)
            drained = await until_quiet(lambda: self.dispatcher.idle,
                                        lambda: self.last_delivery, timeout)
            drained = drained and self.spool_error is None  # never end a session we hold
            if not drained:
                await self.dispatcher.cancel()
        await asyncio.to_thread(self.client.disconnect)
        if not drained:
            log.error("session %s not drained within %.0fs: %d handled, the rest stays "
                      "queued", self.client_id, timeout, self.metrics.processed)
            return EXIT_FAILURE
        ended = await asyncio.to_thread(end_session, self.client.options)
        if ended:
            unmark_session(paths.workers, self.instance)
        log.info("broker session %s %s: %d messages handled, %d errors", self.client_id,
                 "ended" if ended else "drained (ending it failed)",
                 self.metrics.processed, self.metrics.errors)
        return EXIT_OK if ended else EXIT_FAILURE
