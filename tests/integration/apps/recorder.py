"""What the test applications' handlers share: one line per handled message.

Every handled message is recorded as "<worker> <route> <topic> <seq>" in
$TEST_OUT/<worker>.log (line-buffered: a kill -9 cannot lose a recorded line), so tests count
what was processed from the messages themselves (tests/helpers.py parses the lines). <worker>
is TEST_WORKER, else the instance number the worker exports (ROUTEMQ_INSTANCE), else the pid.
"""
import asyncio
import os

OUT = os.environ.get("TEST_OUT", "/tmp")
WORKER = os.environ.get("TEST_WORKER") or os.environ.get("ROUTEMQ_INSTANCE") or str(os.getpid())
_log = open(os.path.join(OUT, f"{WORKER}.log"), "a", buffering=1)


def record(route, topic, payload):
    seq = payload.get("seq") if isinstance(payload, dict) else repr(payload)[:40]
    _log.write(f"{WORKER} {route} {topic} {seq}\n")


def recording(route, delay=0.0):
    """A handler for "<route>/{id}" that takes `delay` seconds (without blocking the loop),
    then records the message."""
    async def handle(id, payload, client):
        if delay:
            await asyncio.sleep(delay)
        record(route, f"{route}/{id}", payload)
    return handle
