"""The issue's example: route A shared on one worker, B shared on three, C not shared."""
from routemq.router import Router
from tests.integration.apps.recorder import recording

router = Router()
router.on("a/{id}", recording("a"), shared=True, worker_count=1, qos=1)
router.on("b/{id}", recording("b"), shared=True, worker_count=3, qos=1)
router.on("c/{id}", recording("c"), qos=1)
