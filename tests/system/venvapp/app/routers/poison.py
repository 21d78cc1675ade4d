"""poison/{batch}: shared over 4 instances, QoS 1. Message seq 7 takes its worker process
down (os._exit, as a segfault in an extension or the OOM killer would); every other one logs
"processed" (batch, seq) after 50 ms, so that others are in flight beside it."""
import asyncio
import logging
import os

from routemq.router import Router

log = logging.getLogger("app.poison")
router = Router()


@router.on("poison/{batch}", shared=True, worker_count=4, qos=1)
async def handle(batch, payload, client):
    if payload["seq"] == 7:
        os._exit(1)
    await asyncio.sleep(0.05)
    log.info("processed", extra={"batch": batch, "seq": payload["seq"]})
