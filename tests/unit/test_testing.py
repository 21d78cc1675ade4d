"""TestClient (routemq.testing): what a worker runs for one message, without a broker."""
import asyncio

import pytest

from routemq import Message
from routemq.errors import NoRouteError
from routemq.middleware import Middleware
from routemq.router import Router
from routemq.testing import Published, TestClient


def run(coro):
    return asyncio.run(coro)


def test_publish_returns_the_handlers_result_with_params_and_decoded_payload():
    router = Router()

    @router.on("sensors/{device_id}/data")
    async def data(device_id, payload, client):
        return {"device": device_id, "payload": payload}

    @router.on("raw/{kind}")
    def raw(kind, payload, client):  # a sync handler too
        return (kind, payload)

    async def main():
        async with TestClient(router) as tc:
            assert await tc.publish("sensors/42/data", {"t": 21}) == \
                {"device": "42", "payload": {"t": 21}}
            assert await tc.publish("raw/text", "on") == ("text", b"on")  # not JSON: bytes
            assert await tc.publish("raw/bin", b"\xff") == ("bin", b"\xff")
            assert await tc.publish("raw/json", '[1, 2]') == ("json", [1, 2])
            assert tc.published == []
    run(main())


def test_the_most_specific_route_wins_as_in_the_worker():
    router = Router()
    router.on("a/{x}", lambda x, payload, client: "param")
    router.on("a/b", lambda payload, client: "literal")
    router.on("a/#", lambda payload, client: "multi")

    async def main():
        tc = TestClient(router)
        return [await tc.publish(t, b"") for t in ("a/b", "a/c", "a/c/d")]
    assert run(main()) == ["literal", "param", "multi"]


def test_publish_raises_the_handlers_exception():
    router = Router()

    @router.on("boom")
    async def boom(payload, client):
        raise RuntimeError("database is down")

    async def main():
        async with TestClient(router) as tc:
            await tc.publish("boom", {})
    with pytest.raises(RuntimeError, match="database is down"):
        run(main())


def test_a_topic_no_route_matches_is_a_value_error_as_in_dispatch():
    router = Router()
    router.on("a/{x}", lambda x, payload, client: None)

    async def main():
        async with TestClient(router) as tc:
            await tc.publish("b/1", {})
    with pytest.raises(ValueError, match="No route found for topic: b/1") as info:
        run(main())
    assert isinstance(info.value, NoRouteError)
    with pytest.raises(ValueError, match="No route found for topic: b/1"):
        run(router.dispatch("b/1", {}, None))


def test_group_and_route_middleware_run_in_order_around_the_handler():
    order = []

    class Tag(Middleware):
        def __init__(self, name):
            self.name = name

        async def handle(self, context, next_handler):
            order.append(f"{self.name}>")
            context["payload"] = {**context["payload"], self.name: True}
            result = await next_handler(context)
            order.append(f"<{self.name}")
            return result

    async def handler(device_id, payload, client):
        order.append("handler")
        return payload

    router = Router()
    with router.group(prefix="devices", middleware=[Tag("group")]) as devices:
        devices.on("{device_id}/cmd", handler, middleware=[Tag("route")])

    result = run(TestClient(router).publish("devices/7/cmd", {"n": 1}))
    assert order == ["group>", "route>", "handler", "<route", "<group"]
    assert result == {"n": 1, "group": True, "route": True}


def test_middleware_can_stop_the_chain_and_sees_the_message():
    seen = []

    async def deny(context, next_handler):
        seen.append((context["topic"], context["params"], context["message"].user_properties))
        if ("role", "admin") not in context["message"].user_properties:
            raise PermissionError("admins only")
        return await next_handler(context)

    router = Router()
    router.on("admin/{op}", lambda op, payload, client: f"did {op}", middleware=[deny])

    async def main():
        async with TestClient(router) as tc:
            assert await tc.publish("admin/reset", {},
                                    user_properties=[("role", "admin")]) == "did reset"
            with pytest.raises(PermissionError):
                await tc.publish("admin/reset", {}, user_properties=[("role", "guest")])
    run(main())
    assert seen[0] == ("admin/reset", {"op": "reset"}, [("role", "admin")])


def test_published_lists_client_publish_and_message_reply():
    router = Router()

    @router.on("sensors/{device_id}/data")
    async def data(device_id, payload, client):
        client.publish(f"alerts/{device_id}", '{"hot": true}', qos=1, retain=True)
        client.publish("counters/seen", 1)

    @router.on("rpc/{device_id}/get")
    async def get(device_id, payload, client, message: Message):
        await message.reply({"device": device_id, "value": 21.5},
                            user_properties=[("served-by", "test")])
        return "replied"

    async def main():
        async with TestClient(router) as tc:
            await tc.publish("sensors/9/data", {"t": 99})
            assert await tc.publish("rpc/9/get", {}, response_topic="replies/abc",
                                    correlation_data=b"req-1") == "replied"
            return tc.published
    published = run(main())
    assert published == [
        Published("alerts/9", {"hot": True}, 1, True, [], None, b'{"hot": true}'),
        Published("counters/seen", 1, 0, False, [], None, b"1"),
        Published("replies/abc", {"device": "9", "value": 21.5}, 1, False,
                  [("served-by", "test")], b"req-1", b'{"device":"9","value":21.5}')]


def test_client_publish_refuses_what_paho_refuses():
    router = Router()
    router.on("x", lambda payload, client: client.publish("y", {"a": 1}))
    with pytest.raises(TypeError):
        run(TestClient(router).publish("x", b""))


def test_the_message_carries_flags_and_properties():
    seen = []
    router = Router()

    @router.on("m/{id}", qos=2)
    def handler(id, payload, client, message):
        seen.append(message)

    async def main():
        async with TestClient(router) as tc:
            await tc.publish("m/1", {"a": 1}, qos=2, retain=True,
                             user_properties=[("tenant", "acme")], response_topic="r/1",
                             correlation_data="c-1")
            await tc.publish("m/2", b"bin")
    run(main())
    m, bare = seen
    assert (m.topic, m.payload, m.raw, m.qos, m.retain, m.dup, m.attempt, m.params) == \
        ("m/1", {"a": 1}, b'{"a":1}', 2, True, False, 1, {"id": "1"})
    assert (m.user_properties, m.response_topic, m.correlation_data) == \
        ([("tenant", "acme")], "r/1", b"c-1")
    assert (bare.user_properties, bare.response_topic, bare.correlation_data, bare.qos) == \
        ([], None, None, 1)


def test_reply_without_response_topic_raises_through_publish():
    router = Router()

    @router.on("rpc")
    async def rpc(payload, client, message):
        await message.reply("x")

    with pytest.raises(ValueError, match="no response topic"):
        run(TestClient(router).publish("rpc", {}))


def test_usable_from_a_plain_sync_test_and_leaves_no_thread():
    import threading
    before = threading.active_count()
    router = Router()
    router.on("t", lambda payload, client: payload)
    assert asyncio.run(TestClient(router).publish("t", [1])) == [1]
    assert threading.active_count() == before


# --- retries -----------------------------------------------------------------------------

def test_retries_run_at_once_with_the_attempt_counted_and_the_backoff_recorded():
    router = Router()
    seen = []

    @router.on("orders/{id}", retries=3, retry_backoff=1.0, retry_backoff_max=3.0)
    async def store(id, payload, client, message: Message):
        seen.append(message.attempt)
        if message.attempt < 4:
            raise ConnectionError("database is down")
        return "stored"

    async def main():
        async with TestClient(router) as tc:
            started = asyncio.get_running_loop().time()
            assert await tc.publish("orders/7", {"total": 3}) == "stored"
            assert asyncio.get_running_loop().time() - started < 1.0  # 6 s of backoff not slept
            assert seen == [1, 2, 3, 4]
            assert [(r.attempt, r.delay) for r in tc.retries] == [(1, 1.0), (2, 2.0), (3, 3.0)]
            assert tc.retries[0].error == "ConnectionError: database is down"
            assert tc.retries[0].route == "orders/{id}" and tc.retries[0].topic == "orders/7"
    run(main())


def test_after_the_last_attempt_the_handlers_exception_is_raised():
    router = Router()
    calls = []
    with router.group(prefix="g", retries=2, retry_backoff=5.0) as group:
        @group.on("always")
        def always(payload, client):  # sync handlers retry too
            calls.append(payload)
            raise KeyError("missing")

    async def main():
        async with TestClient(router) as tc:
            with pytest.raises(KeyError, match="missing"):
                await tc.publish("g/always", {"n": 1})
            assert len(calls) == 3 and len(tc.retries) == 2
    run(main())


def test_without_retries_the_first_failure_is_raised():
    router = Router()
    calls = []

    @router.on("once")
    async def once(payload, client):
        calls.append(1)
        raise ValueError("bad")

    async def main():
        async with TestClient(router) as tc:
            with pytest.raises(ValueError, match="bad"):
                await tc.publish("once", b"")
            assert calls == [1] and tc.retries == []
    run(main())


def test_each_attempt_gets_a_fresh_payload():
    router = Router()
    seen = []

    @router.on("mutate", retries=1)
    async def mutate(payload, client):
        seen.append(dict(payload))
        payload["touched"] = True
        if len(seen) == 1:
            raise RuntimeError("again")

    async def main():
        async with TestClient(router) as tc:
            await tc.publish("mutate", {"a": 1})
            assert seen == [{"a": 1}, {"a": 1}]
    run(main())


def test_a_timeout_fails_the_attempt_and_is_retried_then_raised():
    router = Router()
    calls = []

    @router.on("slow", timeout=0.05, retries=1)
    async def slow(payload, client):
        calls.append(1)
        await asyncio.sleep(30)

    @router.on("worker-wide")
    async def worker_wide(payload, client):
        await asyncio.sleep(30)

    async def main():
        async with TestClient(router, handler_timeout=0.05) as tc:
            with pytest.raises(TimeoutError, match="handler timed out after 0.05s"):
                await tc.publish("slow", b"")
            assert len(calls) == 2 and len(tc.retries) == 1
            assert tc.retries[0].error == "TimeoutError: handler timed out after 0.05s"
            with pytest.raises(TimeoutError):
                await tc.publish("worker-wide", b"")
    run(main())
