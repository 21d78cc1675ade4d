"""Test handlers without a broker: what a worker runs for one message, in the test's loop.

    from routemq.testing import TestClient

    async def test_reading_is_stored():
        async with TestClient(router) as tc:
            result = await tc.publish("sensors/42/data", {"t": 21})
            assert result == {"stored": True}
            assert tc.published[0].topic == "alerts/42"

`publish` builds the delivery a worker would get (the payload encoded as `Message.reply`
encodes it, the MQTT 5 properties given), then runs the worker's own pieces: the router's
topic tree finds the route, `decode_payload` decodes the payload, a `Message` is built when
the route uses one, and `Route.call` runs group and route middleware and the handler. The
handler's result is returned and its exception raised. Handlers get a recording stand-in for
paho's client: what they publish (`client.publish`, `message.reply`) lands in `tc.published`.
No broker, no threads, no sleeping.

A handler that raises (or outlives its route's `timeout`, or the `handler_timeout` given
here) is run again as its route's retries say, at once: the backoff a worker would wait is
recorded in `tc.retries`, not slept. After the last attempt its exception is raised.

    async def test_a_flaky_database_is_retried():
        async with TestClient(router) as tc:
            await tc.publish("orders/7", {"total": 3})
            assert [r.delay for r in tc.retries] == [1.0, 2.0]  # two failures, then stored
"""
from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any, Iterable

from routemq.errors import NoRouteError
from routemq.message import Message, UserProperties, encode_payload, publish_properties
from routemq.mqtt import Message as Delivery
from routemq.payload import decode_payload
from routemq.retries import failure_text, timed_out
from routemq.router import Router


@dataclass
class Published:
    """One message a handler published. `payload` is decoded as a handler would receive it
    (JSON -> dict/list/..., anything else the bytes); `raw` is what went on the wire."""

    topic: str
    payload: Any
    qos: int = 0
    retain: bool = False
    user_properties: UserProperties = field(default_factory=list)
    correlation_data: bytes | None = None
    raw: bytes = b""


@dataclass
class Retry:
    """An attempt that failed and would be run again by a worker after `delay` seconds."""

    topic: str
    route: str  # the route's pattern
    attempt: int  # the failed attempt (1 = the first)
    delay: float  # the backoff, before jitter
    error: str


class _PublishInfo:
    """What paho's publish returns (MQTTMessageInfo), already complete."""

    rc = 0

    def __init__(self, mid: int) -> None:
        self.mid = mid

    def is_published(self) -> bool:
        return True

    def wait_for_publish(self, timeout: float | None = None) -> None:
        return None


class RecordingClient:
    """Stands in for the paho client handlers get: `publish` records instead of sending."""

    _protocol = 5  # MQTT 5: message.reply sends its properties, which are recorded
    _client_id = b"routemq-test"

    def __init__(self, published: list[Published]) -> None:
        self.published = published
        self._mids = itertools.count(1)

    def publish(self, topic: str, payload: Any = None, qos: int = 0, retain: bool = False,
                properties: Any = None) -> _PublishInfo:
        raw = _paho_payload(payload)
        correlation = getattr(properties, "CorrelationData", None)
        self.published.append(Published(
            topic, decode_payload(raw), qos, retain,
            [(k, v) for k, v in getattr(properties, "UserProperty", ())],
            None if correlation is None else bytes(correlation), raw))
        return _PublishInfo(next(self._mids))


def _paho_payload(payload: Any) -> bytes:
    """What paho's publish accepts, as it converts it (a dict is a TypeError there too)."""
    if payload is None:
        return b""
    if isinstance(payload, (bytes, bytearray)):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if isinstance(payload, (int, float)) and not isinstance(payload, bool):
        return str(payload).encode("ascii")
    raise TypeError("payload must be a string, bytearray, int, float or None.")


class TestClient:
    """Runs a router's handlers as a worker does, without a broker (see the module doc)."""

    __test__ = False  # a library class, not a pytest test class

    def __init__(self, router: Router, *, handler_timeout: float = 0.0) -> None:
        self.router = router
        self.handler_timeout = handler_timeout  # the worker's; a route's own `timeout` wins
        self.published: list[Published] = []
        self.retries: list[Retry] = []
        self.client = RecordingClient(self.published)
        self._mids = itertools.count(1)

    async def __aenter__(self) -> TestClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def publish(self, topic: str, payload: Any = b"", *, qos: int = 1,
                      retain: bool = False,
                      user_properties: Iterable[tuple[str, str]] | None = None,
                      response_topic: str | None = None,
                      correlation_data: bytes | str | None = None) -> Any:
        """Deliver one message to the route matching `topic`; the handler's result.

        Raises ValueError (routemq.errors.NoRouteError) when no route matches, and what the
        handler (or a middleware) raised on its last attempt (TimeoutError for a timeout).
        """
        found = self.router.match(topic)
        if found is None:
            raise NoRouteError(topic)
        route, params = found
        if isinstance(correlation_data, str):
            correlation_data = correlation_data.encode("utf-8")
        delivery = Delivery(topic, encode_payload(payload), qos, retain, next(self._mids),
                            properties=publish_properties(user_properties, correlation_data,
                                                          response_topic))
        timeout = self.handler_timeout if route.timeout is None else route.timeout
        attempt = 1
        while True:
            decoded = decode_payload(delivery.payload)  # afresh, as a worker does
            message = Message(delivery, decoded, params, self.client, attempt) \
                if route.uses_message else None
            deadline = asyncio.timeout(timeout or None)
            try:
                async with deadline:
                    return await route.call(topic, decoded, self.client, params, message)
            except Exception as exc:
                if deadline.expired():  # as the worker says it
                    exc = timed_out(timeout, exc)
                delay = route.retry.delay(attempt)
                if delay is None:
                    raise exc
                self.retries.append(Retry(topic, route.topic, attempt, delay,
                                          failure_text(exc)))
                attempt += 1
