"""Per-route limits (issue 13 part 3): `Router.on(..., max_inflight=, timeout=)` override the
worker's max_inflight and handler_timeout for one route (routemq.dispatcher, no broker)."""
import asyncio

import pytest

from routemq.errors import RouteError
from routemq.router import Router
from tests.unit.test_dispatch_timeouts_and_cancellation import until
from tests.unit.test_dispatcher import D, make


def test_a_limited_route_runs_its_own_count_while_others_use_the_rest():
    async def main():
        running = {"slow": 0, "fast": 0}
        peak = {"slow": 0, "fast": 0}
        release = asyncio.Event()

        def handler(name):
            async def handle(n, payload, client):
                running[name] += 1
                peak[name] = max(peak[name], running[name])
                await release.wait()
                running[name] -= 1
            return handle

        router = Router()
        router.on("slow/{n}", handler("slow"), shared=True, max_inflight=1)
        router.on("fast/{n}", handler("fast"), shared=True)
        d, acked, _ = make(router, max_inflight=8)
        for i in range(5):
            d.submit(D(f"slow/{i}", mid=i + 1))
        for i in range(6):
            d.submit(D(f"fast/{i}", mid=100 + i))
        # The four slow messages beyond its limit wait apart: the fast route gets 6 of the
        # worker's 8 slots at once, not stuck behind them.
        await until(lambda: running == {"slow": 1, "fast": 6})
        assert d.queued == 4
        release.set()
        assert await d.drain(3)
        assert peak == {"slow": 1, "fast": 6}
        assert sorted(x.mid for x in acked) == [1, 2, 3, 4, 5, *range(100, 106)]
        assert not d._held and not any(d._lane_running.values())
    asyncio.run(main())


def test_the_worker_wide_bound_still_holds_with_limited_routes():
    async def main():
        running, peak = [0], [0]
        release = asyncio.Event()

        async def handle(n, payload, client):
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            await release.wait()
            running[0] -= 1

        router = Router()
        router.on("a/{n}", handle, shared=True, max_inflight=3)
        router.on("b/{n}", handle, shared=True, max_inflight=3)
        d, acked, _ = make(router, max_inflight=4)
        for i in range(6):
            d.submit(D(f"a/{i}", mid=i))
            d.submit(D(f"b/{i}", mid=10 + i))
        await until(lambda: running[0] == 4)
        release.set()
        assert await d.drain(3)
        assert peak[0] == 4 and len(acked) == 12
    asyncio.run(main())


def test_a_route_timeout_overrides_the_workers():
    async def main():
        async def handle(ms, payload, client):
            await asyncio.sleep(int(ms) / 1000)

        router = Router()
        router.on("api/{ms}", handle, shared=True, timeout=0.05)
        router.on("db/{ms}", handle, shared=True)  # the worker's: none
        d, acked, dead = make(router, handler_timeout=0)
        d.submit(D("api/1000", mid=1))
        d.submit(D("db/300", mid=2))
        assert await d.drain(3)
        assert [r["error"] for r in dead] == ["handler timed out after 0.05s"]
        assert (d.metrics.processed, d.metrics.errors) == (1, 1) and len(acked) == 2
    asyncio.run(main())


@pytest.mark.parametrize("kwargs, words", [
    ({"max_inflight": 0, "shared": True}, "max_inflight must be an integer >= 1"),
    ({"max_inflight": 4}, "not shared: such a route runs one message at a time"),
    ({"timeout": -1}, "timeout must be a number of seconds"),
    ({"timeout": "5"}, "timeout must be a number of seconds"),
])
def test_bad_limits_are_refused_at_registration(kwargs, words):
    async def h(payload, client):
        pass
    with pytest.raises(RouteError, match=words):
        Router().on("x/y", h, **kwargs)


def test_limits_are_listed_and_groups_pass_them_on():
    async def h(payload, client):
        pass
    router = Router()
    with router.group(prefix="ext") as ext:
        route = ext.on("api", h, shared=True, max_inflight=2, timeout=30)
    assert (route.topic, route.max_inflight, route.timeout) == ("ext/api", 2, 30.0)
    described = route.describe("g")
    assert (described["max_inflight"], described["timeout"]) == (2, 30.0)
    plain = router.on("cmd", h, max_inflight=1)
    assert plain.max_inflight is None  # not shared: one at a time anyway
