"""A rolling restart of the worker instances after a reload (`systemctl reload routemq.target`,
SIGHUP to `routemq run`): one instance at a time, make before break (pure; the master acts).

For each instance N, in order:

1. OUT: N is left out of the plan. The master's hand-over gives N's routes to the others,
   which subscribe before N lets go (a non-shared route always has a subscriber).
2. STOP: once no route is planned on N and the hand-over is complete, N is stopped. Planned
   out and empty, it handles what the broker still delivers until quiet, ends its session and
   exits.
3. START: once its old process is gone, N is started again: the new version of the
   application.
4. BACK: once the new process runs, N is planned in again; when the hand-over back is complete
   the next instance begins.

A lone instance has nobody to hand over to: it is stopped with its subscriptions and session
kept (the broker queues its messages meanwhile) and started again. A step that does not
finish within its time limit is logged and the rollout goes on, as the hand-over does.

    >>> r = Rollout([1, 2], now=0.0)
    >>> r.tick(0.0, View(others_present=True))
    [('replan',)]
    >>> r.excluded(), r.step
    ({1}, <Step.OUT: 'out'>)
    >>> r.tick(1.0, View(others_present=True, handed_over=True, pid=100))
    [('stop', 1)]
    >>> r.tick(2.0, View(others_present=True, old_alive=False))
    [('start', 1)]
    >>> r.tick(3.0, View(others_present=True, pid=101))
    [('replan',)]
    >>> r.excluded(), r.tick(4.0, View(others_present=True, applied=True))
    (set(), [])
    >>> r.subject(), r.tick(5.0, View(others_present=True)), r.current
    (2, [('replan',)], 2)
"""
from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("routemq.rollout")

Action = tuple[Any, ...]  # ("replan",), ("stop", n), ("start", n)
# Seconds a step may take before the rollout goes on without it: the hand-overs wait up to
# HANDOVER_TIMEOUT (60 s); a stop is bounded by the unit's TimeoutStopSec (50 s).
STEP_LIMIT = {"out": 90.0, "stop": 90.0, "start": 120.0, "back": 90.0}


class Step(enum.Enum):
    OUT = "out"
    STOP = "stop"
    START = "start"
    BACK = "back"


@dataclass(frozen=True)
class View:
    """What the master knows of the current instance this tick."""

    others_present: bool = False  # another planned instance is alive to take its routes
    handed_over: bool = False     # no route planned on it, and no hand-over in progress
    pid: int | None = None        # the pid of its live process (fresh health file), if any
    old_alive: bool = True        # the process that was asked to stop still exists
    applied: bool = False         # it runs the current plan (planned in, hand-over done)


@dataclass
class Rollout:
    pending: list[int]
    now: float = 0.0
    current: int | None = None
    step: Step | None = None
    old_pid: int | None = None
    deadline: float = 0.0
    done: list[int] = field(default_factory=list)

    def subject(self) -> int | None:
        """The instance the next tick's View must describe: the current one, or the next."""
        return self.current if self.current is not None else \
            (self.pending[0] if self.pending else None)

    def excluded(self) -> set[int]:
        """Instances the plan must leave out now."""
        if self.current is not None and self.step in (Step.OUT, Step.STOP, Step.START):
            return {self.current}
        return set()

    @property
    def finished(self) -> bool:
        return self.current is None and not self.pending

    def state(self) -> dict[str, Any]:
        """For master.json and `routemq status`."""
        return {"instance": self.current, "step": self.step.value if self.step else None,
                "done": list(self.done), "pending": list(self.pending)}

    def _enter(self, step: Step, now: float) -> None:
        self.step, self.deadline = step, now + STEP_LIMIT[step.value]

    def _late(self, now: float) -> bool:
        if now < self.deadline:
            return False
        log.warning("reload: instance %s did not finish step %r within %.0fs; going on",
                    self.current, self.step.value if self.step else None,
                    STEP_LIMIT[self.step.value] if self.step else 0)
        return True

    def tick(self, now: float, view: View) -> list[Action]:
        """The actions for this tick; `view` describes `current` (or the next one)."""
        if self.current is None:
            if not self.pending:
                return []
            self.current = self.pending.pop(0)
            log.info("reload: restarting instance %d (%d after it)", self.current,
                     len(self.pending))
            if view.others_present:
                self._enter(Step.OUT, now)
                return [("replan",)]
            self.old_pid = view.pid
            self._enter(Step.STOP, now)
            return [("stop", self.current)]
        n = self.current
        if self.step is Step.OUT and (view.handed_over or self._late(now)):
            self.old_pid = view.pid
            self._enter(Step.STOP, now)
            return [("stop", n)]
        if self.step is Step.STOP and (self.old_pid is None or not view.old_alive
                                       or self._late(now)):
            self._enter(Step.START, now)
            return [("start", n)]
        if self.step is Step.START and ((view.pid is not None and view.pid != self.old_pid)
                                        or self._late(now)):
            self._enter(Step.BACK, now)
            return [("replan",)]
        if self.step is Step.BACK and (view.applied or self._late(now)):
            self.done.append(n)
            self.current, self.step = None, None
            if not self.pending:
                log.info("reload: every instance runs the new version (%s)", self.done)
        return []
