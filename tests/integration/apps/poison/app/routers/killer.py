"""A route whose handler takes its worker process down for one particular message (seq 13),
as a segfault in a C extension or the OOM killer would; every other message takes 100 ms
(so that others are in flight beside it when it strikes) and is recorded (route "p")."""
import asyncio
import os

from routemq.router import Router
from tests.integration.apps.recorder import record

router = Router()


@router.on("p/{id}", shared=True, worker_count=2, qos=1)
async def handle(id, payload, client):
    if payload.get("seq") == 13:
        os._exit(1)
    await asyncio.sleep(0.1)
    record("p", f"p/{id}", payload)
