"""How a handler's time runs out (routemq.dispatcher): handler timeouts, checked by one
sweep timer, are errors that are acknowledged; a cancelled handler's message and the ordered
backlog behind it stay unacknowledged for the broker to deliver again; a stuck or stubborn
handler cannot hold a drain or a cancel up."""
import asyncio
import time

from routemq.router import Router
from tests.unit.test_dispatcher import D, make, settle


async def until(condition, timeout: float = 2.0) -> None:
    """Until condition() holds, the loop running meanwhile; TimeoutError after `timeout` s."""
    async def poll():
        while not condition():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), timeout)


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
        await until(lambda: d._sweeper is None)  # no timer left behind once nothing runs
    asyncio.run(main())


def test_a_timed_out_handler_is_an_error_acked_and_logged_where_it_waited(caplog):
    async def main():
        async def stuck_here(payload, client):
            await asyncio.sleep(10)

        router = Router()
        router.on("slow", stuck_here, shared=True)
        d, acked, dead = make(router, handler_timeout=0.05)
        d.submit(D("slow", mid=9))
        assert await d.drain(2)
        assert [x.mid for x in acked] == [9] and d.metrics.errors == 1
        assert dead[0]["error"] == "handler timed out after 0.05s"
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
        await settle()
        assert d.queued == 4 and d.inflight == 2
        await d.cancel()
        await settle()
        assert started == ["0", "0"] and acked == []
        assert d.inflight == 0 and d.queued == 0
    asyncio.run(main())


def test_stuck_handler_is_reported_and_drain_times_out():
    async def main():
        gate = asyncio.Event()

        async def hang(payload, client):
            await gate.wait()

        router = Router()
        router.on("h", hang, shared=True)
        d, acked, _ = make(router, handler_timeout=100)
        d.submit(D("h", mid=3))
        await settle()
        assert not d.stuck()
        assert d.stuck(now=time.monotonic() + 200)
        assert await d.drain(0.05) is False
        await d.cancel()
        assert acked == []  # cancelled: left with the broker
    asyncio.run(main())


def test_cancel_gives_up_on_a_handler_that_swallows_cancellation():
    async def main():
        ended = asyncio.Event()

        async def stubborn(payload, client):
            while not ended.is_set():
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    pass  # the handler's bug: it goes on

        router = Router()
        router.on("s", stubborn, shared=True)
        d, acked, _ = make(router)
        d.submit(D("s", mid=1))
        await settle()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert await d.cancel(grace=0.2) == 1
        assert loop.time() - t0 < 2 and acked == []
        ended.set()
        for task in asyncio.all_tasks() - {asyncio.current_task()}:
            task.cancel()
    asyncio.run(main())
