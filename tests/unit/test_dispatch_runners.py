"""How the Dispatcher runs handlers: runner tasks instead of a task per message
(routemq.dispatcher's module docstring), and what a handler can still count on."""
import asyncio
import contextvars

from routemq.router import Router
from tests.dispatching import D, make, until

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def test_a_batch_of_handlers_that_never_wait_runs_in_one_task_in_arrival_order():
    seen: list[tuple[str, object]] = []

    async def handler(n, payload, client):
        seen.append((n, asyncio.current_task()))

    async def main():
        router = Router()
        router.on("s/{n}", handler, shared=True)
        d, acked, _ = make(router, max_inflight=64)
        for i in range(50):
            d.submit(D(f"s/{i}", mid=i))
        assert await d.drain(5)
        assert [n for n, _ in seen] == [str(i) for i in range(50)]
        assert len({id(task) for _, task in seen}) == 1  # one runner took them all
        assert None not in {task for _, task in seen}
        assert [a.mid for a in acked] == list(range(50))
    asyncio.run(main())


def test_handlers_that_wait_still_run_concurrently_up_to_max_inflight():
    running, peak = [0], [0]
    gate = asyncio.Event()

    async def handler(n, payload, client):
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        await gate.wait()
        running[0] -= 1

    async def main():
        router = Router()
        router.on("s/{n}", handler, shared=True)
        d, acked, _ = make(router, max_inflight=8)
        for i in range(20):
            d.submit(D(f"s/{i}", mid=i))
        await until(lambda: running[0] == 8)
        assert d.inflight == 8 and d.queued == 12
        gate.set()
        assert await d.drain(5)
        assert peak[0] == 8 and len(acked) == 20
    asyncio.run(main())


def test_a_mix_of_waiting_and_immediate_handlers_never_leaves_a_message_behind():
    """Every fifth handler waits: the others must not queue behind it (a fresh runner takes
    them), and everything ends acked."""
    order: list[int] = []

    async def handler(n, payload, client):
        if int(n) % 5 == 0:
            await asyncio.sleep(0.01)
        order.append(int(n))

    async def main():
        router = Router()
        router.on("s/{n}", handler, shared=True)
        d, acked, _ = make(router, max_inflight=16)
        for i in range(200):
            d.submit(D(f"s/{i}", mid=i))
        assert await d.drain(5)
        assert sorted(order) == list(range(200))
        assert order.index(1) < order.index(0)  # 1 did not wait for 0's sleep
        assert sorted(a.mid for a in acked) == list(range(200))
    asyncio.run(main())


def test_each_message_starts_from_the_same_contextvars():
    seen: list[str] = []

    async def handler(n, payload, client):
        seen.append(request_id.get())
        request_id.set(f"req-{n}")  # a handler that tags its own work

    async def main():
        router = Router()
        router.on("s/{n}", handler, shared=True)
        router.on("o/{n}", handler)  # not shared: one at a time, the next started by the last
        d, _, _ = make(router)
        for i in range(5):
            d.submit(D(f"s/{i}", mid=i))
            d.submit(D(f"o/{i}", mid=100 + i))
        assert await d.drain(5)
        assert seen == ["-"] * 10
    asyncio.run(main())


def test_asyncio_timeout_works_in_a_handler_and_after_one_that_swallowed_its_timeout():
    """A handler that swallows the sweep's cancellation must not leave the task cancelling
    for the next message: its own asyncio.timeout would never turn into TimeoutError."""
    results: dict[str, str] = {}

    async def swallow(payload, client):
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            results["swallow"] = "cancelled"

    async def timed(payload, client):
        try:
            async with asyncio.timeout(0.01):  # needs a current task from the first step
                await asyncio.sleep(5)
        except TimeoutError:
            results["timed"] = "TimeoutError"

    async def main():
        router = Router()
        router.on("a", swallow, shared=True, timeout=0.05)
        router.on("b", timed, shared=True)
        d, acked, _ = make(router, max_inflight=1)
        d.submit(D("a", mid=1))
        d.submit(D("b", mid=2))
        assert await d.drain(5)
        assert results == {"swallow": "cancelled", "timed": "TimeoutError"}
        assert [a.mid for a in acked] == [1, 2]
    asyncio.run(main())


def test_cancel_leaves_started_and_unstarted_messages_unacked_and_the_dispatcher_idle():
    started: list[str] = []

    async def handler(n, payload, client):
        started.append(n)
        await asyncio.sleep(5)

    async def main():
        router = Router()
        router.on("s/{n}", handler, shared=True)
        router.on("o/{n}", handler)
        d, acked, _ = make(router, max_inflight=4)
        for i in range(6):
            d.submit(D(f"s/{i}", mid=i))
        d.submit(D("o/0", mid=10))
        d.submit(D("o/1", mid=11))
        # Cancelled before any runner ran: all started jobs are still waiting for one.
        assert await d.cancel(grace=1) == 0
        assert started == [] and acked == [] and d.idle
        assert d.inflight == 0 and d.queued == 0
        # The dispatcher still works afterwards (the ordered route was released too).
        d.submit(D("o/2", mid=12))
        await until(lambda: started == ["2"])
        assert await d.cancel(grace=1) == 0
        assert acked == [] and d.idle
    asyncio.run(main())


def test_an_internal_error_after_a_handler_is_logged_and_the_runner_goes_on(caplog):
    calls: list[int] = []

    async def handler(n, payload, client):
        calls.append(int(n))

    def ack(delivery):
        if delivery.mid == 3:
            raise RuntimeError("ack failed")
        acked.append(delivery.mid)

    acked: list[int] = []

    async def main():
        router = Router()
        router.on("s/{n}", handler, shared=True)
        d, _, _ = make(router)
        d.ack = ack
        for i in range(6):
            d.submit(D(f"s/{i}", mid=i))
        assert await d.drain(5)
        assert calls == list(range(6)) and acked == [0, 1, 2, 4, 5]
    asyncio.run(main())
    assert "processing s/3 failed" in caplog.text
