"""In-process dispatch cost: what one message costs a worker between paho and the handler.

Feeds `routemq.mqtt.Message` deliveries straight into a `Dispatcher` on an asyncio loop, in
bursts as the worker's inbox pump does, with a no-op async handler and an ack that only
counts; the cost per message covers route lookup, parameters, payload decoding, the
handler call (and its middleware), metrics and the ack call. Cases:

- routes: 1, 100, 1,000, 10,000 routes held by the worker, shaped like real applications
  (`app<k>/{device}/metric<m>`: 100 first levels, literal and parameter levels);
- hit (the topic matches a route) and miss (it matches none: counted, acked, dropped);
- 0 and 5 pass-through middleware on every route;
- lookup by topic tree (no MQTT 5 subscription identifier on the delivery) — the case
  whose cost must not grow with the route count; `subid` rows show the MQTT 5 path, where
  the broker names the subscription and the route is checked, not searched.

The machine is shared and noisy, so each run times CHUNKS (10) slices of its messages and keeps
the fastest slice (timeit's rule: noise only ever adds time); the figure reported is the
median of 3 such runs, taken in turns over all cases.
"""
from __future__ import annotations

import asyncio
import gc
import json
import logging
import statistics
import time
from typing import Any

from routemq.dispatcher import Dispatcher
from routemq.mqtt import Message
from routemq.router import Router

ROUTE_COUNTS = (1, 100, 1_000, 10_000)
BURST = 32  # deliveries per pump, about what a busy worker's inbox holds per wake-up
CHUNKS = 10


class PassThrough:
    """RouteMQ-style middleware that only calls the next handler."""

    async def handle(self, context: dict[str, Any], next_handler: Any) -> Any:
        return await next_handler(context)


async def _handler(device: str, payload: Any, client: Any) -> None:
    return None


def build_router(n_routes: int, middleware: int) -> Router:
    router = Router()
    mw = [PassThrough() for _ in range(middleware)]
    for i in range(n_routes):
        router.on(f"app{i % 100}/{{device}}/metric{i // 100}", _handler, qos=1,
                  middleware=mw, shared=True, worker_count=2)
    return router


def _payload(seq: int) -> bytes:
    return json.dumps({"seq": seq, "device": "dev-42", "temperature": 21.5,
                       "humidity": 40.25, "ts": 1764280000.125, "status": "ok"},
                      separators=(",", ":")).encode()


async def _measure(router: Router, topic: str, messages: int, sub_id: int | None) -> float:
    acked = [0]

    def ack(_: Any) -> None:
        acked[0] += 1

    dispatcher = Dispatcher(router, client=None, ack=ack, max_inflight=64,
                            handler_timeout=60.0)
    dispatcher.hold(router.routes, {i + 1: r for i, r in enumerate(router.routes)})
    ids = (sub_id,) if sub_id is not None else ()
    payloads = [_payload(i) for i in range(BURST)]
    batches = [[Message(topic, p, 1, False, i + 1, False, ids, 0) for i, p in
                enumerate(payloads)] for _ in range(messages // BURST)]
    submit = dispatcher.submit
    gc.collect()
    per_chunk = max(1, len(batches) // CHUNKS)
    best = float("inf")
    for c in range(0, len(batches), per_chunk):
        chunk = batches[c:c + per_chunk]
        started = time.perf_counter()
        for batch in chunk:
            for delivery in batch:
                submit(delivery)
            await dispatcher.drain(60)
        best = min(best, (time.perf_counter() - started) / (len(chunk) * BURST))
    assert acked[0] == len(batches) * BURST, (acked[0], len(batches) * BURST)
    return best * 1e6


def run(messages: int = 20_000, repeats: int = 3) -> list[dict[str, Any]]:
    """Median µs per message for every (routes, middleware, hit/miss, lookup) case.

    Repeats are interleaved (all cases once, then all again): a burst of load from another
    process then spoils one run of several cases instead of every run of one case.
    """
    # A worker logs an unrouted topic at most once per 10 s; keep that line off the table.
    quiet = logging.getLogger("routemq")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    cases = []
    for n in ROUTE_COUNTS:
        for mw in (0, 5):
            router = build_router(n, mw)
            hit_index = (n - 1) // 2
            hit_topic = f"app{hit_index % 100}/dev-42/metric{hit_index // 100}"
            for case, topic, sub_id in (("hit", hit_topic, None),
                                        ("miss", "app7/dev-42/nothing", None),
                                        ("hit-subid", hit_topic, hit_index + 1)):
                cases.append(((n, mw, case), router, topic, sub_id))
    times: dict[tuple[int, int, str], list[float]] = {key: [] for key, *_ in cases}
    for _ in range(repeats):
        for key, router, topic, sub_id in cases:
            times[key].append(asyncio.run(_measure(router, topic, messages, sub_id)))
    return [{"routes": n, "middleware": mw, "case": case,
             "us_per_msg": round(statistics.median(t), 2), "runs": [round(x, 2) for x in t]}
            for (n, mw, case), t in times.items()]


if __name__ == "__main__":
    for row in run():
        print(row)
