"""An always-failing QoS 1 route for the dead-letter tests, with one retry: every run is
recorded (route "dl"; a message with user properties also as route "dl-props", its topic
being the properties), then it raises, until the test creates $TEST_OUT/replay-ok (before
replaying), after which it succeeds."""
import os

from routemq.router import Router
from tests.integration.apps.recorder import OUT, record

router = Router()


@router.on("dl/{id}", shared=True, worker_count=2, qos=1, retries=1, retry_backoff=0.05)
async def always_fails(id, payload, client, message):
    record("dl", f"dl/{id}", payload)
    if message.user_properties:
        record("dl-props", ",".join(f"{k}={v}" for k, v in message.user_properties), payload)
    if not os.path.exists(os.path.join(OUT, "replay-ok")):
        raise RuntimeError(f"dl/{id} fails on purpose")
