"""Which routes one worker instance holds: its entry in the master's plan, or, with no master
(no plan file), the plan computed alone from worker_count, the same on every host.

    assignment = Assignment(router, instance=2, plan_path="/run/routemq/plan.json",
                            worker_count="auto")
    routes = assignment.load()       # WorkerError: not in the plan, or a plan not trusted
    ...
    if assignment.changed():         # the master wrote a new plan
        routes = assignment.load()

Only a plan written by this process's user or root, that nobody else can replace, is
followed (runtime.load_plan with trusted_only): the plan decides what this process subscribes
to.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Callable

from routemq.errors import WorkerError
from routemq.plan import Plan, standalone_plan
from routemq.router import Route, Router
from routemq.runtime import load_plan

log = logging.getLogger("routemq.worker")


class Assignment:
    def __init__(self, router: Router, instance: int, plan_path: str,
                 worker_count: str | int) -> None:
        self.router, self.instance, self.path = router, instance, plan_path
        self.worker_count = worker_count
        self.generation = 0  # of the plan loaded last
        self._mtime = 0.0

    @property
    def planned(self) -> bool:
        """A master plans for this runtime directory (its plan file exists)."""
        return os.path.exists(self.path)

    def load(self) -> list[Route]:
        """The routes of this instance in the current plan."""
        if not self.planned:
            plan = standalone_plan(self.router, self.worker_count)
            if self.instance not in plan.assignments:
                raise WorkerError(
                    f"instance {self.instance} is not in the plan: no master plan at "
                    f"{self.path} and workers = {len(plan.assignments)} "
                    f"(worker_count = {self.worker_count})")
            return self._routes_of(plan)
        self._mtime = _mtime(self.path)
        plan, problem = load_plan(self.path, trusted_only=True)
        if plan is None:
            raise WorkerError(f"refusing the plan: {problem}" if problem else
                              f"no plan at {self.path}")
        if self.instance not in plan.assignments:
            raise WorkerError(f"instance {self.instance} is not in the plan {self.path}")
        return self._routes_of(plan)

    async def wait(self, wait: float, ping: Callable[[], None]) -> list[Route]:
        """load(), retried for up to `wait` seconds: a new instance is not in the master's
        plan yet; its health file ("joining") tells the master, which adds it within a tick.
        The loop keeps running meanwhile; `ping` keeps the watchdog fed."""
        deadline = time.monotonic() + wait
        while True:
            try:
                return self.load()
            except WorkerError as exc:
                if not self.planned:
                    raise  # standalone: waiting cannot put this instance in the plan
                if time.monotonic() >= deadline:
                    raise WorkerError(f"{exc} after waiting {wait:.0f}s; is routemq-master "
                                      "running?") from None
            ping()
            await asyncio.sleep(0.2)

    def changed(self) -> bool:
        """The plan file was replaced since the last load()."""
        return _mtime(self.path) not in (0.0, self._mtime)

    def _routes_of(self, plan: Plan) -> list[Route]:
        self.generation = plan.generation
        by_key = {r.key: r for r in self.router.routes}
        keys = plan.assignments[self.instance]
        unknown = [k for k in keys if k not in by_key]
        if unknown:
            log.warning("plan names routes this application does not define: %s",
                        ", ".join(unknown))
        return [by_key[k] for k in keys if k in by_key]


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime_ns / 1e9
    except FileNotFoundError:
        return 0.0
