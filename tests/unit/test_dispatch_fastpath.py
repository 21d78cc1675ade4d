"""What the per-message fast path changed: timeouts by sweep, ordered backlogs, the tree's
non-generator `best`, precomputed middleware and handler calls (routemq.dispatcher,
routemq.topics, routemq.router)."""
import asyncio
import random

from hypothesis import given, settings, strategies as st

from routemq.dispatcher import Dispatcher
from routemq.router import Route, Router
from routemq.topics import TopicTree, parse_pattern
from tests.unit.test_dispatcher import D, make


def test_timeout_cancels_only_the_late_handler_and_the_sweep_stops_when_idle():
    async def main():
        async def handler(ms, payload, client):
            await asyncio.sleep(int(ms) / 1000)

        router = Router()
        router.on("t/{ms}", handler, shared=True)
        d, acked, dead = make(router, handler_timeout=0.1)
        d.submit(D("t/5", mid=1))
        d.submit(D("t/2000", mid=2))
        assert await d.drain(3)
        assert sorted(x.mid for x in acked) == [1, 2]
        assert (d.metrics.processed, d.metrics.errors) == (1, 1)
        assert dead[0]["error"] == "handler timed out after 0.1s"
        await asyncio.sleep(0.05)
        assert d._sweeper is None  # no timer left behind once nothing runs
    asyncio.run(main())


def test_timeout_error_keeps_where_the_handler_waited(caplog):
    async def main():
        async def stuck_here(payload, client):
            await asyncio.sleep(5)

        router = Router()
        router.on("w", stuck_here, shared=True)
        d, _, _ = make(router, handler_timeout=0.05)
        d.submit(D("w"))
        assert await d.drain(2)
    asyncio.run(main())
    [record] = [r for r in caplog.records if r.name == "routemq.dispatch"]
    exc = record.exc_info[1]
    assert isinstance(exc, TimeoutError)
    assert isinstance(exc.__cause__, asyncio.CancelledError)


def test_handler_raising_timeout_error_is_reported_as_itself():
    async def main():
        async def handler(payload, client):
            raise TimeoutError("database did not answer")

        router = Router()
        router.on("db", handler, shared=True)
        d, acked, dead = make(router, handler_timeout=30)
        d.submit(D("db", mid=4))
        assert await d.drain(2)
        assert [x.mid for x in acked] == [4]
        assert dead[0]["error"] == "TimeoutError: database did not answer"
    asyncio.run(main())


def test_ordered_route_goes_on_after_a_handler_cancelled_itself():
    async def main():
        seen = []

        async def handler(n, payload, client):
            await asyncio.sleep(0)
            if n == "0":
                raise asyncio.CancelledError
            seen.append(int(n))

        router = Router()
        router.on("o/{n}", handler)
        d, acked, _ = make(router)
        for i in range(5):
            d.submit(D(f"o/{i}", mid=i))
        assert await d.drain(2)
        assert seen == [1, 2, 3, 4]
        assert [x.mid for x in acked] == [1, 2, 3, 4]  # the cancelled one stays unacked
        assert d.queued == 0 and d._ordered == {}
    asyncio.run(main())


def test_cancel_leaves_the_ordered_backlog_unstarted_and_unacked():
    async def main():
        started = []
        gate = asyncio.Event()

        async def handler(n, payload, client):
            started.append(n)
            await gate.wait()

        router = Router()
        router.on("o/{n}", handler)
        router.on("s/{n}", handler, shared=True)
        d, acked, _ = make(router, max_inflight=2)  # the ordered route's runner counts too
        for i in range(3):
            d.submit(D(f"o/{i}", mid=i))
            d.submit(D(f"s/{i}", mid=10 + i))
        await asyncio.sleep(0.01)
        assert d.queued == 4 and d.inflight == 2
        await d.cancel()
        await asyncio.sleep(0.01)
        assert started == ["0", "0"] and acked == []
        assert d.inflight == 0 and d.queued == 0
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


LEVELS = ["a", "b", "+", "{p}", "$x"]


@st.composite
def pattern_sets(draw):
    patterns = set()
    for _ in range(draw(st.integers(1, 12))):
        n = draw(st.integers(1, 4))
        levels = [draw(st.sampled_from(LEVELS)) for _ in range(n)]
        levels = [lv if lv != "{p}" else f"{{p{i}}}" for i, lv in enumerate(levels)]
        if draw(st.booleans()):
            levels.append("#")
        patterns.add("/".join(levels))
    return sorted(patterns)


@settings(max_examples=200, deadline=None)
@given(pattern_sets(), st.lists(st.sampled_from(["a", "b", "c", "$x"]), min_size=1,
                                max_size=5), st.integers(0, 2**16))
def test_tree_best_equals_the_most_specific_of_all_matches(patterns, topic_levels, seed):
    tree = TopicTree()
    parsed = []
    for p in patterns:
        try:
            parsed.append(parse_pattern(p))
        except ValueError:
            continue
    for order, pattern in enumerate(parsed):
        tree.add(pattern, order)
    topic = "/".join(topic_levels)
    accepted = set(random.Random(seed).sample(range(len(parsed)), k=len(parsed) // 2 + 1)) \
        if parsed else set()
    for accept in (None, accepted.__contains__):
        candidates = [(parsed[v].specificity, -v, v, params) for v, params in tree.match(topic)
                      if accept is None or accept(v)]
        got = tree.best(topic, accept)
        if not candidates:
            assert got is None
        else:
            best = max(candidates, key=lambda c: (c[0], c[1]))
            assert got == (best[2], best[3])


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
