"""A stopping worker's side of make-before-break: wait until the master has moved this
instance's routes, then say what the worker may let go of.

    standalone, plan = await wait_for_handover(paths, instance, tick=report_stopping)
    release = release_on_stop(subscribed, instance, plan, standalone=standalone)

The master writes a plan without this instance only once the new owners of its routes have
subscribed (routemq.master, routemq.membership), so a route is never without a subscriber;
what to release from there is membership.release_on_stop (pure).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from routemq.plan import Plan
from routemq.runtime import RuntimePaths, read_plan, running_master
from routemq.timings import HANDOVER_WAIT

log = logging.getLogger("routemq.worker")

POLL = 0.2  # seconds between two looks at the plan


async def wait_for_handover(paths: RuntimePaths, instance: int, tick: Callable[[], None],
                            wait: float = HANDOVER_WAIT) -> tuple[bool, Plan | None]:
    """(standalone, plan): standalone when no master runs on `paths`; `plan` is the master's
    plan once it no longer lists `instance`, None if that did not happen within `wait`
    seconds (the instance then keeps its subscriptions and session; the master drains the
    session once it has planned the instance out). `tick()` runs on every look: the caller
    writes its "stopping" health file there and feeds the watchdog."""
    if running_master(paths, time.time()) is None:
        return True, None
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        tick()
        plan = read_plan(paths.plan, trusted_only=True)
        if plan is not None and instance not in plan.assignments:
            return False, plan
        if running_master(paths, time.time()) is None:
            return True, None  # the master stopped first (`routemq run` stopping)
        await asyncio.sleep(POLL)
    log.warning("the master did not move this instance's routes within %.0fs; keeping its "
                "subscriptions in its broker session", wait)
    return False, None
