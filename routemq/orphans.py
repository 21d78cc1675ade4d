"""Broker sessions whose instance left the plan (orphans), and the drainers that end them.

Every instance the master plans has a persistent session at the broker, named by its client
id. When an instance is out of the plan and no process of it runs, its session may still hold
messages (queued while it was dying, and a share of every shared route it had subscribed,
for as long as the session lives). The instances that may have a session are marked in the
runtime directory (runtime.mark_session: a worker marks its instance before connecting and
unmarks it once it ended its session). For each marked instance that is out of the plan with
no process for `grace` seconds, the master runs a drainer (`routemq worker --instance N
--drain`, routemq.drain) that handles what the session holds, unsubscribes and ends it. A
session that turns out to be empty or gone costs one short connection.

Never while the plan leaves a route without a live holder (the whole fleet stopping, say):
then the kept sessions are what saves the messages for the next start, and ending one would
let the broker drop that route's messages.

    >>> class Drainer:                     # a stand-in for the drainer's process
    ...     code = None
    ...     def poll(self): return Drainer.code
    >>> started = []
    >>> o = Orphans(lambda i: started.append(i) or Drainer(), grace=5.0)
    >>> o.tick(0.0, {1, 2}, members={1}, present={1}, covered=True)   # 2: out, no process
    []
    >>> o.tick(6.0, {1, 2}, members={1}, present={1}, covered=True), started
    ([], [2])
    >>> o.snapshot()["2"]["state"]
    'draining'
    >>> Drainer.code = 0                   # it drained and ended the session (and unmarked it)
    >>> o.tick(7.0, {1}, members={1}, present={1}, covered=True), o.snapshot()
    ([2], {})
"""
from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

from routemq.backends import spawn_worker
from routemq.errors import EXIT_BUSY, EXIT_OK

log = logging.getLogger("routemq.orphans")

GRACE = 5.0    # seconds out of the plan with no process before a drainer starts
RETRY = 30.0   # seconds between attempts after a drainer failed
BUSY_RETRY = 5.0  # ... after it found a process of the instance holding its lock


class Proc(Protocol):
    def poll(self) -> int | None: ...
    def terminate(self) -> None: ...
    def wait(self, timeout: float | None = None) -> int: ...


@dataclass
class Orphan:
    since: float                  # first seen out of the plan with no process
    state: str = "waiting"        # waiting | draining | failed
    detail: str = "out of the plan, no process"
    proc: Proc | None = None
    retry_at: float = 0.0
    attempts: int = 0


class Orphans:
    """The master's record of sessions to drain (see the module docstring)."""

    def __init__(self, spawn: Callable[[int], Proc], *, grace: float = GRACE,
                 retry: float = RETRY) -> None:
        self.spawn = spawn
        self.pending: dict[int, Orphan] = {}
        self.grace, self.retry = grace, retry

    def tick(self, now: float, marked: set[int], members: set[int], present: set[int],
             covered: bool) -> list[int]:
        """Start and reap drainers; return the instances whose session was ended now.

        `marked`: the instances that may have a session; `members`: those in the plan;
        `present`: those with a live process; `covered`: every route of the plan has a live
        holder (else no session is drained).
        """
        back = members | present
        for i in sorted(marked - back):
            self.pending.setdefault(i, Orphan(since=now))
        done = []
        for i, orphan in list(self.pending.items()):
            if orphan.proc is not None:
                code = orphan.proc.poll()
                if code is None:
                    continue
                orphan.proc = None
                if code == EXIT_OK:
                    done.append(i)
                    continue
                if code == EXIT_BUSY:
                    orphan.state, orphan.detail = "waiting", "a process of the instance runs"
                    orphan.retry_at = now + BUSY_RETRY
                else:
                    orphan.state = "failed"
                    orphan.detail = f"drainer exited with {code}; retrying"
                    orphan.retry_at = now + self.retry
                    log.error("draining the session of instance %d failed (exit %s); "
                              "retrying in %.0fs", i, code, self.retry)
            if i in back or i not in marked:
                del self.pending[i]  # it came back, or its session was ended meanwhile
                continue
            if covered and now - orphan.since >= self.grace and now >= orphan.retry_at:
                log.info("instance %d is out of the plan with no process: draining its "
                         "broker session", i)
                orphan.proc = self.spawn(i)
                orphan.attempts += 1
                orphan.state, orphan.detail = "draining", f"attempt {orphan.attempts}"
        for i in done:
            del self.pending[i]
        return done

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """master.json's "sessions": each undrained instance's state, since when, why."""
        return {str(i): {"state": o.state, "since": o.since, "detail": o.detail}
                for i, o in sorted(self.pending.items())}

    def stop(self, timeout: float = 5.0) -> None:
        """The master is stopping: its drainers stop too (what they did not finish stays
        unacknowledged in the session, and the next master drains it)."""
        running = [o.proc for o in self.pending.values() if o.proc is not None]
        for proc in running:
            proc.terminate()
        for proc in running:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass


def drainer_spawner(environ: Mapping[str, str]) -> Callable[[int], Proc]:
    """Start `routemq worker --instance N --drain` as a child of the master that stops with
    it, as workers are started (backends.spawn_worker)."""
    return lambda instance: spawn_worker(instance, environ, "--drain").proc
