"""Retries with backoff (routemq.retries): the policy, its keywords on routes and groups, and
the dispatcher running the attempts without a broker."""
import asyncio
import doctest
from types import SimpleNamespace

import pytest

import routemq.retries
from routemq import Message
from routemq.errors import RouteError
from routemq.retries import RetryPolicy, jittered, retry_policy
from routemq.router import Router
from tests.dispatching import D, make, until


# --- the policy -----------------------------------------------------------------------------

def test_doctests():
    assert doctest.testmod(routemq.retries).failed == 0


def test_delays_double_up_to_the_cap_and_stop_after_the_retries():
    policy = RetryPolicy(retries=6, backoff=1.0, backoff_max=10.0)
    assert [policy.delay(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, None]
    assert policy.attempts == 7
    assert RetryPolicy(retries=1000, backoff=1.0, backoff_max=60.0).delay(1000) == 60.0
    assert RetryPolicy(retries=2, backoff=0.0).delay(2) == 0.0


def test_jitter_only_shortens_by_at_most_a_tenth():
    assert all(9.0 <= jittered(10.0) <= 10.0 for _ in range(200))


@pytest.mark.parametrize("kw, word", [
    ({"retries": -1}, "retries"), ({"retries": 1.5}, "retries"), ({"retries": True}, "retries"),
    ({"retries": 1001}, "retries"), ({"retry_backoff": -0.1}, "retry_backoff"),
    ({"retry_backoff": float("nan")}, "retry_backoff"), ({"retry_backoff": "1"}, "retry_backoff"),
    ({"retry_backoff_max": 1e9}, "retry_backoff_max"),
])
def test_bad_values_are_refused_at_registration(kw, word):
    with pytest.raises(RouteError, match=f"route 'a/b': {word} must be"):
        Router().on("a/b", lambda payload, client: None, **kw)
    with pytest.raises(RouteError, match=f"router.group\\(\\): {word} must be"):
        Router().group(prefix="g", **kw)
    with pytest.raises(RouteError, match=word):
        retry_policy("a/b", **{"retries": 0, **kw})


def test_routes_default_to_no_retry_and_groups_give_defaults_that_routes_override():
    router = Router()
    plain = router.on("p", lambda payload, client: None)
    assert plain.retry == RetryPolicy(0, 1.0, 60.0)
    with router.group(prefix="billing", retries=5, retry_backoff=2.0) as billing:
        a = billing.on("a", lambda payload, client: None)
        b = billing.on("b", lambda payload, client: None, retries=1)
        with billing.group("inner", retry_backoff_max=8.0) as inner:
            c = inner.on("c", lambda payload, client: None, retry_backoff=0.5)
    assert a.retry == RetryPolicy(5, 2.0, 60.0)
    assert b.retry == RetryPolicy(1, 2.0, 60.0)
    assert (c.topic, c.retry) == ("billing/inner/c", RetryPolicy(5, 0.5, 8.0))
    assert a.describe()["retries"] == 5 and c.describe()["retry_backoff_max"] == 8.0
    with pytest.raises(RouteError, match="unknown keyword 'retry'"):
        router.group(prefix="x", retry=3)


def test_the_decorator_form_takes_the_keywords():
    router = Router()

    @router.on("d/{id}", retries=2, retry_backoff=0.25)
    async def handler(id, payload, client):
        return id
    assert router.routes[0].retry == RetryPolicy(2, 0.25, 60.0)


# --- the dispatcher -------------------------------------------------------------------------

def test_a_handler_that_fails_twice_succeeds_on_the_third_attempt_acked_once():
    async def main():
        attempts: dict[str, list[int]] = {}

        async def flaky(n, payload, client, message: Message):
            attempts.setdefault(n, []).append(message.attempt)
            if message.attempt < 3:
                raise ConnectionError("database is down")

        router = Router()
        router.on("f/{n}", flaky, shared=True, retries=2, retry_backoff=0.01)
        d, acked, dead = make(router, max_inflight=8)
        for i in range(5):
            d.submit(D(f"f/{i}", mid=i))
        await until(lambda: len(acked) == 5)
        assert attempts == {str(i): [1, 2, 3] for i in range(5)}
        assert dead == [] and d.metrics.errors == 0 and d.metrics.processed == 5
        stats = d.metrics.route("shared:f/{n}").snapshot()
        assert (stats["retries"], stats["retrying"], stats["errors"]) == (10, 0, 0)
    asyncio.run(main())


def test_the_message_stays_unacknowledged_during_backoff_and_counts_as_retrying():
    async def main():
        async def failing(payload, client):
            raise RuntimeError("nope")

        router = Router()
        router.on("x", failing, qos=1, retries=1, retry_backoff=0.3)
        d, acked, dead = make(router)
        d.submit(D("x", mid=1))
        route = d.metrics.route("single:x")
        await until(lambda: route.retrying == 1)
        assert acked == [] and dead == [] and not d.idle
        await until(lambda: len(acked) == 1)
        assert route.retrying == 0 and route.retries == 1 and route.errors == 1
        assert len(dead) == 1 and dead[0]["attempts"] == 2
        assert dead[0]["error"] == "RuntimeError: nope"
    asyncio.run(main())


def test_a_non_shared_route_keeps_its_order_behind_a_retrying_message():
    async def main():
        seen = []

        async def handler(n, payload, client, message):
            seen.append((int(n), message.attempt))
            if n == "0" and message.attempt == 1:
                raise RuntimeError("first one fails once")

        router = Router()
        router.on("o/{n}", handler, qos=1, retries=1, retry_backoff=0.05)
        d, acked, _ = make(router)
        for i in range(4):
            d.submit(D(f"o/{i}", mid=i))
        assert await d.drain(5)
        assert seen == [(0, 1), (0, 2), (1, 1), (2, 1), (3, 1)]
        assert [x.mid for x in acked] == [0, 1, 2, 3]
    asyncio.run(main())


def test_retrying_messages_count_against_max_inflight():
    async def main():
        started = []

        async def handler(n, payload, client, message):
            started.append((n, message.attempt))
            if n in ("0", "1") and message.attempt == 1:
                raise RuntimeError("retry me")

        router = Router()
        router.on("m/{n}", handler, shared=True, retries=1, retry_backoff=0.2)
        d, acked, _ = make(router, max_inflight=2)
        for i in range(4):
            d.submit(D(f"m/{i}", mid=i))
        route = d.metrics.route("shared:m/{n}")
        await until(lambda: route.retrying == 2)
        # both slots are held by messages in backoff: 2 and 3 wait
        assert {n for n, _ in started} == {"0", "1"} and d.queued == 2
        assert await d.drain(5)
        assert sorted(x.mid for x in acked) == [0, 1, 2, 3]
    asyncio.run(main())


def test_a_timeout_is_retried_like_an_exception():
    async def main():
        calls = []

        async def slow_then_fast(payload, client, message):
            calls.append(message.attempt)
            if message.attempt == 1:
                await asyncio.sleep(10)

        router = Router()
        router.on("t", slow_then_fast, qos=1, timeout=0.05, retries=1, retry_backoff=0.0)
        d, acked, dead = make(router)
        d.submit(D("t", mid=1))
        await until(lambda: len(acked) == 1)
        assert calls == [1, 2] and dead == [] and d.metrics.errors == 0
        assert d.metrics.route("single:t").retries == 1
    asyncio.run(main())


def test_stopping_during_backoff_leaves_the_message_unacknowledged():
    async def main():
        async def failing(payload, client):
            raise RuntimeError("down")

        router = Router()
        router.on("s", failing, shared=True, retries=3, retry_backoff=30.0)
        d, acked, dead = make(router)
        d.submit(D("s", mid=1))
        route = d.metrics.route("shared:s")
        await until(lambda: route.retrying == 1)
        assert await d.cancel() == 0
        assert acked == [] and dead == [] and route.retrying == 0
    asyncio.run(main())


def test_qos0_is_retried_and_never_acked():
    async def main():
        calls = []

        async def handler(payload, client):
            calls.append(1)
            raise RuntimeError("x")

        router = Router()
        router.on("q0", handler, retries=2, retry_backoff=0.0)
        d, acked, dead = make(router)
        d.submit(D("q0", qos=0))
        assert await d.drain(5)
        assert len(calls) == 3 and acked == [] and dead[0]["attempts"] == 3
    asyncio.run(main())


def test_a_dead_letter_keeps_retain_and_the_mqtt5_properties():
    async def main():
        async def failing(payload, client):
            raise RuntimeError("x")

        router = Router()
        router.on("p", failing)
        d, _, dead = make(router)
        props = SimpleNamespace(UserProperty=[("tenant", "a"), ("tenant", "b")],
                                ResponseTopic="replies/1", CorrelationData=b"\x00\x01",
                                ContentType="application/json", MessageExpiryInterval=60)
        d.submit(D("p", mid=1, retain=True, properties=props))
        d.submit(D("p", mid=2))
        assert await d.drain(5)
        assert dead[0]["retain"] is True and dead[0]["properties"] == {
            "user_properties": [["tenant", "a"], ["tenant", "b"]],
            "content_type": "application/json", "response_topic": "replies/1",
            "message_expiry_interval": 60, "correlation_data": "AAE="}
        assert "properties" not in dead[1] and dead[1]["retain"] is False
    asyncio.run(main())
