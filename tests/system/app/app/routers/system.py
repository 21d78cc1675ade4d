"""Routes of the system tests, one behaviour each.

work/{batch}  shared over 4 instances, QoS 1: logs one "processed" record per message (batch
              and seq from the payload), which the tests count per ROUTEMQ_WORKER journal field
fail/{n}      raises: the worker logs the error (journalctl -p warning) and keeps going
block/{n}     blocks the event loop with time.sleep: no more WATCHDOG=1, systemd kills the
              worker. QoS 0 on purpose: a QoS 1 poison message would be redelivered after
              every restart and block again
hog/{mb}      allocates and touches mb MiB: MemoryMax must OOM-kill the worker (QoS 0, same
              reason)
syscalls/{n}  calls os.nice, which the units allow, and os.sched_setaffinity and os.chown,
              which their system call filter refuses: those must raise PermissionError
              (SystemCallErrorNumber=EPERM), not kill the worker with SIGSYS; logs what each
              raised
"""
import logging
import os
import time

from routemq.router import Router

log = logging.getLogger("app.system")
router = Router()


async def work(batch, payload, client):
    seq = payload.get("seq") if isinstance(payload, dict) else None
    log.info("processed", extra={"batch": batch, "seq": seq})


async def fail(n, payload, client):
    raise RuntimeError(f"deliberate failure {n}")


async def block(n, payload, client):
    log.warning("blocking the event loop", extra={"n": n})
    time.sleep(3600)


async def hog(mb, payload, client):
    size = int(mb) * 1024 * 1024
    log.warning("allocating %d MiB", int(mb))
    data = bytearray(size)
    data[::4096] = b"x" * (size // 4096)  # touch every page so it is really resident
    log.warning("allocated %d MiB", len(data) >> 20)


async def syscalls(n, payload, client):
    calls = {"nice": lambda: os.nice(1),
             "sched_setaffinity": lambda: os.sched_setaffinity(0, os.sched_getaffinity(0)),
             "chown": lambda: os.chown("/srv/routemq", -1, os.getgid())}
    raised = {}
    for name, call in calls.items():
        try:
            call()
            raised[name] = "nothing"
        except OSError as exc:
            raised[name] = type(exc).__name__
    log.warning("privileged calls tried", extra={"n": n, "raised": raised})


router.on("work/{batch}", work, shared=True, worker_count=4, qos=1)
router.on("fail/{n}", fail, qos=0)
router.on("block/{n}", block, qos=0)
router.on("hog/{mb}", hog, qos=0)
router.on("syscalls/{n}", syscalls, qos=0)
