"""The issue's example: route A shared on one worker, B shared on three, C not shared."""
from routemq.router import Router
from tests.integration.apps.recorder import record

router = Router()


@router.on("a/{id}", shared=True, worker_count=1, qos=1)
async def a(id, payload, client):
    record("a", f"a/{id}", payload)


@router.on("b/{id}", shared=True, worker_count=3, qos=1)
async def b(id, payload, client):
    record("b", f"b/{id}", payload)


@router.on("c/{id}", qos=1)
async def c(id, payload, client):
    record("c", f"c/{id}", payload)
