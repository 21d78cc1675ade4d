"""An instance's broker session: its client id, how to connect it, drain it and end it.

A worker's MQTT session is persistent and named by a stable client id, so it outlives the
process: while it exists the broker keeps queueing the instance's share of each shared route
it subscribed to, and every message of its plain routes. That is what makes kill -9 and
restarts lose nothing; it is also why a session must be ended, deliberately and only once it
is empty, when its instance leaves the plan for good (a worker that is planned out does it
on its way out; the master's drainer does it for an instance that died: routemq.drain).

Which instances may have a session is recorded in the runtime directory (runtime.mark_session)
by the processes that make and end sessions. The master drains the marked instances that left
the plan.

    >>> client_id("routemq", 3, hostname="gw1")
    'routemq-gw1-3'
"""
from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
import time
from typing import Any, Callable

from routemq.mqtt import ConnectOptions, MqttClient
from routemq.router import Route, Router

QUIET = 2.0  # seconds without a delivery, nothing running: the session has nothing left
END_WAIT = 10.0  # seconds to wait for the CONNACK of the connection that ends a session


def client_id(prefix: str, instance: int, hostname: str | None = None) -> str:
    """Stable per host and instance, so a restarted worker resumes its broker session."""
    return f"{prefix}-{hostname or socket.gethostname()}-{instance}"


def connect_options(config: Any, client: str) -> ConnectOptions:
    """The worker's connection: persistent session, broker flow control = max_inflight."""
    c = config
    return ConnectOptions(
        host=c.mqtt_broker or "localhost", port=c.mqtt_port, client_id=client,
        protocol=c.mqtt_protocol, keepalive=c.keepalive, persistent=True,
        session_expiry=c.session_expiry, username=c.mqtt_username or None,
        password=c.password, tls=bool(c.tls or c.tls_ca_file),
        tls_ca_file=c.tls_ca_file or None, tls_cert_file=c.tls_cert_file or None,
        tls_key_file=c.tls_key_file or None, tls_insecure=bool(c.tls_insecure),
        receive_maximum=c.max_inflight)


def routes_by_id(router: Router) -> dict[int, Route]:
    """Subscription identifier -> route: the route's position in the application, from 1.

    The same on every instance and every start of one application, so a delivery that
    arrives on a subscription made by an earlier process of this instance (or by the dead
    instance whose session a drainer resumes) still names its route.
    """
    return {i + 1: route for i, route in enumerate(router.routes)}


def on_loop(loop: Callable[[], asyncio.AbstractEventLoop | None],
            fn: Callable[..., None]) -> Callable[..., None]:
    """A paho callback that runs `fn` as its own callback on the asyncio loop, never inside
    paho's packet handling (thread-safe, so it also holds if paho runs in its own thread)."""
    def call(*args: Any) -> None:
        running = loop()
        if running is not None and not running.is_closed():
            running.call_soon_threadsafe(fn, *args)
    return call


async def until_quiet(idle: Callable[[], bool], last_delivery: Callable[[], float],
                      timeout: float, quiet: float = QUIET) -> bool:
    """Wait until nothing runs and nothing arrived for `quiet` seconds: True, or False once
    `timeout` passed first.

    Used after the session's filters were unsubscribed: what the broker had already queued
    for the session still arrives (as acks free its in-flight window), and must be handled
    before the session may end.
    """
    deadline = time.monotonic() + timeout
    while True:
        now = time.monotonic()
        if idle() and now - last_delivery() >= quiet:
            return True
        if now >= deadline:
            return False
        await asyncio.sleep(min(0.05, quiet / 4))


def end_session(options: ConnectOptions, timeout: float = END_WAIT) -> bool:
    """Discard the broker session of `options.client_id` (blocking; call it in a thread).

    Connects with a clean start and no session expiry (MQTT 5) or clean session (3.1.1), which
    makes the broker drop the old session, then disconnects, which drops the new one. Call it
    only once the session is empty and no longer subscribed: what it still held is gone.
    True when the broker accepted the connection.
    """
    clean = dataclasses.replace(options, persistent=False, receive_maximum=None)
    accepted = threading.Event()
    client = MqttClient(clean, on_connect=lambda present, reason: accepted.set())
    client.connect_async()
    client.loop_start()  # no asyncio loop in this thread: paho's own network thread
    try:
        return accepted.wait(timeout)
    finally:
        client.disconnect()
