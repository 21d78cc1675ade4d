"""Per-route limits: one/{n} may run one message at a time per worker (max_inflight=1),
many/{n} as many as the worker allows. Each handler takes 0.1 s and writes
"<route> <start> <end>" (monotonic) to $TEST_OUT/<worker>.intervals, then records the message
as the other test applications do (tests/integration/apps/recorder.py)."""
import asyncio
import os
import time

from routemq.router import Router
from tests.integration.apps.recorder import OUT, WORKER, record

router = Router()
_intervals = open(os.path.join(OUT, f"{WORKER}.intervals"), "a", buffering=1)


def timed(name):
    async def handle(n, payload, client):
        start = time.monotonic()
        await asyncio.sleep(0.1)
        _intervals.write(f"{name} {start} {time.monotonic()}\n")
        record(name, f"{name}/{n}", payload)
    return handle


router.on("one/{n}", timed("one"), qos=1, shared=True, worker_count=2, max_inflight=1)
router.on("many/{n}", timed("many"), qos=1, shared=True, worker_count=2)
