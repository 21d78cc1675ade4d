"""Routes that fail on purpose, for the retry tests. Every attempt is recorded as route
"<name><attempt>" (tests/integration/apps/recorder.py), so the test counts attempts per
message from the records alone.

- flaky/{id}: fails its first two attempts of every message, succeeds on the third;
- backoff/{id}: fails its first attempt and waits $TEST_BACKOFF seconds (default 5) before
  the second, which succeeds: long enough to kill -9 a worker while messages wait.
"""
import os

from routemq import Message
from routemq.router import Router
from tests.integration.apps.recorder import record

router = Router()


@router.on("flaky/{id}", shared=True, worker_count=2, qos=1, retries=2, retry_backoff=0.05)
async def flaky(id, payload, client, message: Message):
    record(f"flaky{message.attempt}", f"flaky/{id}", payload)
    if message.attempt < 3:
        raise ConnectionError(f"flaky/{id}: the database is down (attempt {message.attempt})")


with router.group(retries=1, retry_backoff=float(os.environ.get("TEST_BACKOFF", "5"))) as g:
    @g.on("backoff/{id}", shared=True, worker_count=2, qos=1)
    async def waits(id, payload, client, message: Message):
        record(f"backoff{message.attempt}", f"backoff/{id}", payload)
        if message.attempt == 1:
            raise ConnectionError(f"backoff/{id}: not yet")
