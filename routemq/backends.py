"""Where worker instances run: child processes (`routemq run`, tests) or systemd units.

Both back ends start and stop instances by number; the master's membership (health files)
decides the plan, so a back end only has to make processes exist or go away:

    backend.start(3)   # `routemq worker --instance 3` as a child, or routemq-worker@3.service
    backend.stop(3)    # SIGTERM: the worker hands its routes over, drains and exits
    backend.poll()     # child processes: restart the ones that died or stalled (systemd
                       # does both itself: Restart=on-failure, WatchdogSec)

Child processes die with their parent (PR_SET_PDEATHSIG): a kill -9 of `routemq run` must not
leave workers behind that a new `routemq run` would then fight for their client ids.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from typing import Callable, Mapping, Protocol, Sequence

from routemq.documents import WorkerState
from routemq.errors import EXIT_CONFIG
from routemq.fleet import UnitState, list_worker_units, query_units, unit_name
from routemq.notify import child_environment
from routemq.runtime import RuntimePaths, read_health
from routemq.timings import CANCEL_GRACE, HANDOVER_WAIT, UNSUBACK_WAIT

log = logging.getLogger("routemq.backend")

RESTART_BURST = 5         # at most this many restarts of one instance ...
RESTART_INTERVAL = 60.0   # ... within this many seconds (systemd's StartLimitBurst/Interval)
STALL_AFTER = 10.0        # seconds without a health update: stalled (the unit's WatchdogSec)
STOP_MARGIN = 10.0        # seconds on top of a worker's own stop budgets before SIGKILL
# States in which a worker does not write its health file on schedule, by design: it waits
# for its plan before its loop runs, or it is stopping (SIGTERM; its drain is bounded).
NOT_JUDGED = (WorkerState.STARTING, WorkerState.JOINING, WorkerState.STOPPING,
              WorkerState.DRAINING)
PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A preexec_fn that makes the child receive `sig` when the thread that started it ends
    (PR_SET_PDEATHSIG), or None where prctl is not available. libc is looked up here, in the
    parent: between fork and exec the child only makes the call."""
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: no signal will come
            os.kill(os.getpid(), sig)
    return preexec


def stop_budget(drain_timeout: float) -> float:
    """Seconds a worker may take after SIGTERM before it is killed: its hand-over, UNSUBACK
    and drain budgets, the grace for cancelled handlers, and a margin (timings.py)."""
    return HANDOVER_WAIT + UNSUBACK_WAIT + drain_timeout + CANCEL_GRACE + STOP_MARGIN


class Backend(Protocol):
    name: str

    def start(self, instance: int) -> None: ...
    def stop(self, instance: int) -> None: ...
    def poll(self) -> list[int]: ...
    def restarts(self) -> dict[int, int]: ...


class WorkerHandle:
    """One worker child process (`worker.pid` / `worker.is_alive()` of
    RouteMQ's shared-subscriptions guide)."""

    def __init__(self, instance: int, proc: subprocess.Popen[bytes]) -> None:
        self.instance = instance
        self.proc = proc

    @property
    def pid(self) -> int:
        return self.proc.pid

    def is_alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def exitcode(self) -> int | None:
        return self.proc.poll()

    def terminate(self) -> None:
        if self.is_alive():
            self.proc.send_signal(signal.SIGTERM)

    def join(self, timeout: float | None = None) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


def spawn_worker(instance: int, environ: Mapping[str, str], *options: str,
                 python: str = sys.executable) -> WorkerHandle:
    """`routemq worker --instance N [options]` as a child that gets SIGTERM (drain and exit)
    when the thread that started it ends: start workers from a thread that lives as long as
    they do (`routemq run`, WorkerManager and the master's drainers use the main thread)."""
    proc = subprocess.Popen([python, "-m", "routemq", "worker", "--instance", str(instance),
                             *options],
                            env=child_environment(environ), preexec_fn=die_with_parent())
    return WorkerHandle(instance, proc)


class ProcessBackend:
    """Workers as child processes, restarted when they die, as systemd's Restart=on-failure
    would: not after a clean exit (0) or a configuration error (2), and not more than
    RESTART_BURST times a minute. With `runtime_dir`, a worker whose health file stops being
    updated is killed and restarted, as systemd's watchdog would (see stalled())."""

    name = "processes"

    def __init__(self, environ: Mapping[str, str], runtime_dir: str | None = None,
                 stall_after: float = STALL_AFTER) -> None:
        self.environ = dict(environ)
        self.paths = RuntimePaths(runtime_dir) if runtime_dir else None
        self.stall_after = stall_after
        self.handles: dict[int, WorkerHandle] = {}
        self._stopping: dict[int, WorkerHandle] = {}
        self._restarts: dict[int, int] = {}
        self._recent: dict[int, deque[float]] = {}
        # instance -> ((pid, updated_at or "stuck"), monotonic time it was first seen)
        self._last_change: dict[int, tuple[tuple[int, object], float]] = {}
        self.failed: dict[int, str] = {}  # instance -> why it is no longer restarted

    def start(self, instance: int) -> None:
        if instance in self.handles and self.handles[instance].is_alive():
            return
        self.failed.pop(instance, None)
        self.handles[instance] = spawn_worker(instance, self.environ)
        log.info("started worker %d (pid %d)", instance, self.handles[instance].pid)

    def stop(self, instance: int) -> None:
        handle = self.handles.pop(instance, None)
        if handle is not None:
            handle.terminate()
            self._stopping[instance] = handle

    def stalled(self, instance: int, handle: WorkerHandle, now: float) -> str | None:
        """Why worker `instance` is to be killed, as systemd's watchdog would (no WATCHDOG=1
        for stall_after seconds): its health file was not updated for that long (a blocked
        loop), or it has said "stuck" (a handler past handler_timeout) for that long; else
        None. Judged by our monotonic clock from the moment a change was first seen, so a
        wall-clock jump kills nobody. A worker is not judged before its health file carries
        its own pid (it is still starting) nor while it says it is starting or stopping."""
        if self.paths is None:
            return None
        health, _ = read_health(self.paths.health(instance), instance)
        if health is None or health.pid != handle.pid or health.updated_at is None \
                or health.state in NOT_JUDGED:
            self._last_change.pop(instance, None)
            return None
        stuck = health.state == WorkerState.STUCK
        key = (handle.pid, "stuck" if stuck else health.updated_at)
        seen = self._last_change.get(instance)
        if seen is None or seen[0] != key:
            self._last_change[instance] = (key, now)
            return None
        silent = now - seen[1]
        if silent <= self.stall_after:
            return None
        return (f"a handler stuck for {silent:.0f}s" if stuck else
                f"no health update for {silent:.0f}s")

    def poll(self) -> list[int]:
        """Reap stopped workers, kill stalled ones, restart dead ones; return the restarted
        instances."""
        for i, handle in list(self._stopping.items()):
            if not handle.is_alive():
                del self._stopping[i]
        restarted = []
        now = time.monotonic()
        for i, handle in list(self.handles.items()):
            code = handle.exitcode
            if code is None:
                why = self.stalled(i, handle, now)
                if why is None:
                    continue
                log.error("worker %d (pid %d) stalled: %s; killing it", i, handle.pid, why)
                handle.proc.kill()
                code = handle.join(5)
                self._last_change.pop(i, None)
                if code is None:
                    continue  # not reaped yet (uninterruptible sleep): the next poll sees it
            if code == 0:
                # A clean exit is someone's SIGTERM (an operator, or the autoscaler of
                # another master): the instance has left the plan; like systemd's
                # Restart=on-failure, do not bring it back.
                log.info("worker %d (pid %d) stopped cleanly", i, handle.pid)
                del self.handles[i]
                continue
            recent = self._recent.setdefault(i, deque())
            while recent and now - recent[0] > RESTART_INTERVAL:
                recent.popleft()
            if code == EXIT_CONFIG or len(recent) >= RESTART_BURST:
                why = ("configuration error (exit 2)" if code == EXIT_CONFIG else
                       f"{RESTART_BURST} restarts within {RESTART_INTERVAL:.0f}s")
                log.error("worker %d exited with %s: %s; not restarting it", i, code, why)
                self.failed[i] = why
                del self.handles[i]
                continue
            recent.append(now)
            self._restarts[i] = self._restarts.get(i, 0) + 1
            log.warning("worker %d (pid %d) exited with %s; restarting it", i, handle.pid, code)
            self.handles[i] = spawn_worker(i, self.environ)
            restarted.append(i)
        return restarted

    def restarts(self) -> dict[int, int]:
        return dict(self._restarts)

    def stop_all(self, timeout: float) -> None:
        """SIGTERM every worker (each drains), wait up to `timeout`, then SIGKILL the rest."""
        for i in list(self.handles):
            self.stop(i)
        deadline = time.monotonic() + timeout
        for handle in self._stopping.values():
            if handle.join(max(0.0, deadline - time.monotonic())) is None:
                log.error("worker %d did not stop within %.0fs; killing it",
                          handle.instance, timeout)
                handle.proc.kill()
                handle.join(5)
        self._stopping.clear()


class SystemdBackend:
    """Workers as routemq-worker@N units. The master runs as the routemq user; the polkit rule
    shipped with the package lets it start and stop these units and nothing else."""

    name = "systemd"

    def __init__(self, systemctl: str = "systemctl", block: bool = False) -> None:
        self.systemctl = systemctl
        # The master's loop must not wait for a stop (the worker's drain): --no-block.
        self.block = block

    def _run(self, verb: str, instances: Sequence[int]) -> bool:
        cmd = [self.systemctl, verb, *([] if self.block else ["--no-block"]),
               *(unit_name(i) for i in instances)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            log.error("%s failed: %s", " ".join(cmd), done.stderr.strip() or done.returncode)
        return done.returncode == 0

    def start(self, instance: int) -> None:
        self._run("start", [instance])

    def stop(self, instance: int) -> None:
        self._run("stop", [instance])

    def start_many(self, instances: Sequence[int]) -> bool:
        return self._run("start", instances)

    def stop_many(self, instances: Sequence[int]) -> bool:
        return self._run("stop", instances)

    def units(self) -> dict[int, UnitState]:
        """The loaded routemq-worker@N units and their state ({} when systemd cannot tell)."""
        listed, _ = list_worker_units(self.systemctl)
        states, _ = query_units(listed or [], self.systemctl)
        return states or {}

    def poll(self) -> list[int]:
        return []  # Restart=on-failure does it

    def restarts(self) -> dict[int, int]:
        return {}  # `routemq status` reads NRestarts from systemd itself
