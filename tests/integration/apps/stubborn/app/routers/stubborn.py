"""A handler with a bug: it swallows its own cancellation and never ends. A stopping worker
must not wait for it beyond drain_timeout plus a short grace."""
import asyncio

from routemq.router import Router
from tests.integration.apps.recorder import record

router = Router()


@router.on("stubborn/{id}", qos=1)
async def stubborn(id, payload, client):
    record("stubborn", f"stubborn/{id}", payload)  # it started
    while True:
        try:
            await asyncio.sleep(0.1)
        except asyncio.CancelledError:
            pass  # the bug
