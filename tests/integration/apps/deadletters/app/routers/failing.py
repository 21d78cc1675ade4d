"""An always-failing QoS 1 route for the dead-letter tests: every run is recorded (route
"dl"), then it raises, until the test creates $TEST_OUT/replay-ok (before replaying), after
which it succeeds."""
import os

from routemq.router import Router
from tests.integration.apps.recorder import OUT, record

router = Router()


@router.on("dl/{id}", shared=True, worker_count=2, qos=1)
async def always_fails(id, payload, client):
    record("dl", f"dl/{id}", payload)
    if not os.path.exists(os.path.join(OUT, "replay-ok")):
        raise RuntimeError(f"dl/{id} fails on purpose")
