"""Routes that move: six shared routes on one instance each (m0..m5: a joining instance takes
some of them), one shared route on two instances (pair), one plain route (plain).

Handlers are slow on purpose so deliveries are in flight whenever the plan changes:
TEST_SLOW seconds for the shared routes (default 0.2), TEST_SLOW_PLAIN for the plain route
(default 0.005: it runs one message at a time, so 0.2 s would cap it at 5 messages a second).
See tests/integration/apps/recorder.py for what is recorded.
"""
import os

from routemq.router import Router
from tests.integration.apps.recorder import recording

router = Router()

SHARED_ONE = [f"m{n}" for n in range(6)]
SLOW = float(os.environ.get("TEST_SLOW", "0.2"))
SLOW_PLAIN = float(os.environ.get("TEST_SLOW_PLAIN", "0.005"))

for name in SHARED_ONE:
    router.on(f"{name}/{{id}}", recording(name, SLOW), qos=1, shared=True, worker_count=1)
router.on("pair/{id}", recording("pair", SLOW), qos=1, shared=True, worker_count=2)
router.on("plain/{id}", recording("plain", SLOW_PLAIN), qos=1)
