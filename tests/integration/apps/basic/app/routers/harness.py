"""Routes of the integration tests' application (see tests/integration/apps/recorder.py).
TEST_SLOW: seconds a slow/{id} message takes (default 0.02)."""
import os
import time

from routemq.router import Router
from tests.integration.apps.recorder import record, recording

router = Router()
router.on("work/{id}", recording("work"), shared=True, worker_count=4, qos=1)
router.on("slow/{id}", recording("slow", float(os.environ.get("TEST_SLOW", "0.02"))),
          shared=True, worker_count=4, qos=1)
router.on("ordered/{id}", recording("ordered"), qos=1)


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
