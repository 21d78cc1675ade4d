"""The worker's message pipeline without a broker (routemq.dispatcher)."""
import asyncio
import hashlib
import json
import logging

from routemq.dispatcher import Dispatcher, dead_letter_payload
from routemq.router import Route, Router
from tests.dispatching import D, make


async def settle():
    for _ in range(5):
        await asyncio.sleep(0)


def test_shared_route_concurrency_is_bounded_and_ack_follows_handler():
    async def main():
        gate, running, peak = asyncio.Event(), [], []

        async def handler(n, payload, client):
            running.append(n)
            peak.append(len(running))
            await gate.wait()
            running.remove(n)

        router = Router()
        router.on("s/{n}", handler, shared=True, worker_count=2)
        d, acked, _ = make(router, max_inflight=3)
        deliveries = [D(f"s/{i}", mid=i) for i in range(10)]
        for x in deliveries:
            d.submit(x)
        await settle()
        assert d.inflight == 3 and d.queued == 7
        assert acked == []  # nothing acknowledged while handlers run
        gate.set()
        assert await d.drain(5)
        assert sorted(x.mid for x in acked) == list(range(10))
        assert max(peak) == 3
        assert d.metrics.processed == 10
    asyncio.run(main())


def test_non_shared_route_runs_one_at_a_time_in_order():
    async def main():
        seen, active = [], [0]

        async def handler(n, payload, client):
            active[0] += 1
            assert active[0] == 1
            await asyncio.sleep(0.001 * (5 - int(n) % 5))  # later ones are faster
            seen.append(int(n))
            active[0] -= 1

        router = Router()
        router.on("c/{n}", handler, qos=2)
        d, acked, _ = make(router, max_inflight=50)
        for i in range(30):
            d.submit(D(f"c/{i}", mid=i))
        assert await d.drain(5)
        assert seen == list(range(30))
        assert [x.mid for x in acked] == list(range(30))
    asyncio.run(main())


def test_failing_handler_is_logged_counted_acked_and_dead_lettered(caplog):
    async def main():
        async def boom(payload, client):
            if payload == {"bad": True}:
                raise RuntimeError("kaput")

        router = Router()
        router.on("x/y", boom, shared=True)
        d, acked, dead = make(router)
        d.submit(D("x/y", b'{"bad": true}', mid=1))
        d.submit(D("x/y", b'{"bad": false}', mid=2))
        assert await d.drain(5)
        assert [x.mid for x in acked] == [1, 2]
        assert (d.metrics.errors, d.metrics.processed) == (1, 1)
        assert dead[0]["error"] == "RuntimeError: kaput"
        assert dead[0]["route"] == "x/y" and json.loads(dead[0]["payload"]) == {"bad": True}
        assert json.loads(dead_letter_payload(dead[0]))["topic"] == "x/y"
    with caplog.at_level(logging.ERROR, logger="routemq.dispatch"):
        asyncio.run(main())
    [record] = caplog.records
    assert record.route == "x/y" and record.topic == "x/y"
    assert record.exc_info and "kaput" in str(record.exc_info[1])


def test_non_json_and_invalid_utf8_payloads_reach_handler_as_bytes():
    async def main():
        got = []
        router = Router()
        router.on("p", lambda payload, client: got.append(payload))
        d, acked, _ = make(router)
        for raw in (b"plain text", b"\xff\xfe\xfa", b'{"ok": 1}'):
            d.submit(D("p", raw))
        assert await d.drain(5)
        assert got == [b"plain text", b"\xff\xfe\xfa", {"ok": 1}]
    asyncio.run(main())


def test_oversized_payload_rejected_without_calling_handler():
    async def main():
        calls = []
        router = Router()
        router.on("big", lambda payload, client: calls.append(1), shared=True)
        d, acked, dead = make(router, max_payload_bytes=10)
        d.submit(D("big", b"x" * 11, mid=5))
        d.submit(D("big", b"x" * 10, mid=6))
        assert await d.drain(5)
        assert calls == [1]
        assert [x.mid for x in acked] == [5, 6]
        assert d.metrics.rejected == 1 and "over max_payload_bytes (10)" in dead[0]["error"]
        # The rejected payload is not re-published (a 10 MB one became 14.6 MB of base64):
        # its size and digest identify it.
        assert dead[0]["payload"] is None and dead[0]["payload_encoding"] == "omitted"
        assert dead[0]["payload_bytes"] == 11
        assert dead[0]["payload_sha256"] == hashlib.sha256(b"x" * 11).hexdigest()
    asyncio.run(main())


def test_unrouted_topic_is_counted_acked_and_logged_once(caplog):
    async def main():
        router = Router()
        router.on("a", lambda payload, client: None)
        d, acked, _ = make(router)
        for i in range(5):
            d.submit(D(f"nowhere/{i}", mid=i))
        await d.drain(1)
        assert d.metrics.unrouted == 5 and len(acked) == 5
    with caplog.at_level(logging.WARNING, logger="routemq.dispatch"):
        asyncio.run(main())
    assert len(caplog.records) == 1 and "nowhere/0" in caplog.records[0].getMessage()


def test_qos0_is_never_acked():
    async def main():
        router = Router()
        router.on("a", lambda payload, client: None)
        d, acked, _ = make(router)
        d.submit(D("a", qos=0))
        assert await d.drain(1)
        assert acked == [] and d.metrics.processed == 1
    asyncio.run(main())


def test_subscription_identifier_picks_the_route():
    async def main():
        got = []
        router = Router()
        single = router.on("s/{id}/data", lambda id, payload, client: got.append(("single", id)))
        shared = router.on("s/+/data", lambda payload, client: got.append(("shared",)),
                           shared=True)
        d, _, _ = make(router)
        d.hold([single, shared], {1: single, 2: shared})
        d.submit(D("s/1/data", subscription_ids=(2,)))
        d.submit(D("s/2/data", subscription_ids=(1,)))
        d.submit(D("s/3/data"))  # no identifier (MQTT 3.1.1): the most specific held route
        await d.drain(1)
        assert sorted(got) == [("shared",), ("single", "2"), ("single", "3")]
    asyncio.run(main())


def test_a_route_not_held_still_handles_what_arrives_for_it():
    """A delivery arrives only on a subscription the worker's session held: a route that
    just moved to another instance still has its in-flight and queued messages here, and
    nobody else will get them. Only a topic no route matches is unrouted."""
    async def main():
        got = []
        router = Router()
        moved = router.on("m/{id}", lambda id, payload, client: got.append(("m", id)),
                          shared=True)
        plain = router.on("p/{id}", lambda id, payload, client: got.append(("p", id)))
        kept = router.on("k", lambda payload, client: got.append(("k",)), shared=True)
        d, acked, _ = make(router)
        d.hold([kept], {1: moved, 2: plain, 3: kept})
        d.submit(D("m/1", mid=1))                          # no identifier: any route
        d.submit(D("m/2", mid=2, subscription_ids=(1,)))   # its identifier
        d.submit(D("p/3", mid=3, subscription_ids=(2,)))   # a plain filter left in the session
        d.submit(D("nowhere", mid=4))
        assert await d.drain(1)
        assert sorted(got) == [("m", "1"), ("m", "2"), ("p", "3")]
        assert sorted(x.mid for x in acked) == [1, 2, 3, 4]
        assert d.metrics.unrouted == 1 and d.metrics.processed == 3
    asyncio.run(main())


def test_middleware_is_resolved_once_and_runs_in_order():
    async def main():
        calls = []

        class Tag:
            def __init__(self, name):
                self.name = name

            async def handle(self, context, next_handler):
                calls.append(self.name)
                return await next_handler(context)

        async def fn_mw(context, next_handler):
            calls.append("fn")
            return await next_handler(context)

        def handler(id, payload, client):  # a plain function works too
            calls.append(("handler", id, payload))
            return "done"

        route = Route("a/{id}", handler, middleware=[Tag("one"), fn_mw, Tag("two")])
        assert await route.call("a/1", {"x": 1}, None, {"id": "1"}) == "done"
        assert calls == ["one", "fn", "two", ("handler", "1", {"x": 1})]
    asyncio.run(main())


def test_backpressure_pauses_reading_over_high_water_and_resumes_at_half():
    async def main():
        gate = asyncio.Event()
        events = []

        class Client:
            def pause_reading(self):
                events.append(("pause", d.queued))

            def resume_reading(self):
                events.append(("resume", d.queued))

        async def handler(n, payload, client):
            await gate.wait()

        router = Router()
        router.on("s/{n}", handler, shared=True)
        router.on("o/{n}", handler)
        d = Dispatcher(router, client=Client(), ack=lambda m: None, max_inflight=4,
                       high_water=20)
        d.hold(router.routes)
        for i in range(30):
            d.submit(D(f"s/{i}" if i % 3 else f"o/{i}", mid=i))
        assert events == [("pause", 20)] and d.paused  # once, at the mark
        gate.set()
        assert await d.drain(5)
        assert events[1] == ("resume", 10) and not d.paused and d.queued == 0
        assert len(events) == 2
    asyncio.run(main())


def test_a_topic_is_resolved_once_and_its_parameters_stay_unshared():
    """The dispatcher remembers a topic's route and parameters; what a handler or a
    middleware does with its copy never reaches the next message of that topic."""
    async def main():
        seen = []

        class Meddler:
            async def handle(self, context, next_handler):
                context["params"]["id"] = "changed"
                return await next_handler(context)

        async def plain(id, payload, client):
            seen.append(("plain", id))

        async def with_message(id, payload, client, message):
            seen.append(("message", id, dict(message.params)))
            message.params["id"] = "changed"

        async def meddled(id, payload, client):
            seen.append(("meddled", id))

        router = Router()
        router.on("p/{id}", plain, shared=True)
        router.on("m/{id}", with_message, shared=True)
        router.on("x/{id}", meddled, shared=True, middleware=[Meddler()])
        d, acked, _ = make(router)
        for topic in ("p/1", "p/1", "m/2", "m/2", "x/3", "x/3"):
            d.submit(D(topic))
        assert await d.drain(5)
        assert seen == [("plain", "1"), ("plain", "1"), ("message", "2", {"id": "2"}),
                        ("message", "2", {"id": "2"}), ("meddled", "changed"),
                        ("meddled", "changed")]
        assert d.resolve(D("p/1"))[1] == {"id": "1"} and d.resolve(D("x/3"))[1] == {"id": "3"}
        calls = []
        original = d._resolve
        d._resolve = lambda delivery: calls.append(delivery.topic) or original(delivery)
        d.resolve(D("p/1")), d.resolve(D("p/9")), d.resolve(D("p/9"))
        assert calls == ["p/9"]  # p/1 remembered, p/9 looked up once
        d.hold(router.routes)
        d.resolve(D("p/1"))
        assert calls == ["p/9", "p/1"]  # a new hold forgets
    asyncio.run(main())
