"""Routes of the integration tests' application (see tests/integration/apps/recorder.py)."""
import asyncio
import os
import time

from routemq.router import Router
from tests.integration.apps.recorder import record

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
