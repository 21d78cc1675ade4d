"""Routes of the integration tests' application.

Every handled message is recorded as one line "<worker> <route> <topic> <seq>" in
$TEST_OUT/<worker>.log (line-buffered: a kill -9 cannot lose a recorded line), so tests count
what was processed from the messages themselves.
"""
import asyncio
import os
import time

from routemq.router import Router

OUT = os.environ.get("TEST_OUT", "/tmp")
WORKER = os.environ.get("TEST_WORKER") or os.environ.get("ROUTEMQ_INSTANCE") or str(os.getpid())
_log = open(os.path.join(OUT, f"{WORKER}.log"), "a", buffering=1)


def record(route, topic, payload):
    seq = payload.get("seq") if isinstance(payload, dict) else repr(payload)[:40]
    _log.write(f"{WORKER} {route} {topic} {seq}\n")


router = Router()


@router.on("work/{id}", shared=True, worker_count=4, qos=1)
async def work(id, payload, client):
    record("work", f"work/{id}", payload)


@router.on("slow/{id}", shared=True, worker_count=4, qos=1)
async def slow(id, payload, client):
    await asyncio.sleep(float(os.environ.get("TEST_SLOW", "0.02")))
    record("slow", f"slow/{id}", payload)


@router.on("ordered/{id}", qos=1)
async def ordered(id, payload, client):
    record("ordered", f"ordered/{id}", payload)


@router.on("check/{kind}", shared=True, worker_count=4, qos=1)
async def check(kind, payload, client):
    if kind == "raise":
        raise RuntimeError("handler failed on purpose")
    record("check", f"check/{kind}", payload if isinstance(payload, dict) else
           {"seq": "bytes" if isinstance(payload, bytes) else type(payload).__name__})


@router.on("block/{seconds}", shared=True, worker_count=4, qos=0)
def block(seconds, payload, client):
    time.sleep(float(seconds))  # a sync handler that blocks the event loop on purpose
    record("block", f"block/{seconds}", {"seq": seconds})
