"""Where worker instances run: child processes (`routemq run`, tests) or systemd units.

Both back ends start and stop instances by number; the master's membership (health files)
decides the plan, so a back end only has to make processes exist or go away:

    backend.start(3)   # `routemq worker --instance 3` as a child, or routemq-worker@3.service
    backend.stop(3)    # SIGTERM: the worker hands its routes over, drains and exits
    backend.poll()     # child processes: restart the ones that died (systemd does it itself)
"""
from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections import deque
from typing import Mapping, Protocol, Sequence

from routemq.fleet import UNIT_TEMPLATE, UnitState, list_worker_units, query_units
from routemq.notify import child_environment

log = logging.getLogger("routemq.backend")

EXIT_CONFIG = 2           # the worker's "bad configuration": restarting cannot help
RESTART_BURST = 5         # at most this many restarts of one instance ...
RESTART_INTERVAL = 60.0   # ... within this many seconds (systemd's StartLimitBurst/Interval)


class Backend(Protocol):
    name: str

    def start(self, instance: int) -> None: ...
    def stop(self, instance: int) -> None: ...
    def poll(self) -> list[int]: ...
    def running(self) -> set[int]: ...
    def restarts(self) -> dict[int, int]: ...


class WorkerHandle:
    """One worker child process (the seed's `worker.pid` / `worker.is_alive()`)."""

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


def spawn_worker(instance: int, environ: Mapping[str, str],
                 python: str = sys.executable) -> WorkerHandle:
    proc = subprocess.Popen([python, "-m", "routemq", "worker", "--instance", str(instance)],
                            env=child_environment(environ))
    return WorkerHandle(instance, proc)


class ProcessBackend:
    """Workers as child processes, restarted when they die, as systemd's Restart=on-failure
    would: not after a clean exit (0) or a configuration error (2), and not more than
    RESTART_BURST times a minute."""

    name = "processes"

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = dict(environ)
        self.handles: dict[int, WorkerHandle] = {}
        self._stopping: dict[int, WorkerHandle] = {}
        self._restarts: dict[int, int] = {}
        self._recent: dict[int, deque[float]] = {}
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

    def poll(self) -> list[int]:
        """Reap stopped workers and restart dead ones; return the restarted instances."""
        for i, handle in list(self._stopping.items()):
            if not handle.is_alive():
                del self._stopping[i]
        restarted = []
        now = time.monotonic()
        for i, handle in list(self.handles.items()):
            code = handle.exitcode
            if code is None:
                continue
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

    def running(self) -> set[int]:
        return set(self.handles)

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
               *(UNIT_TEMPLATE.format(i) for i in instances)]
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

    def running(self) -> set[int]:
        return {i for i, unit in self.units().items()
                if unit.active_state in ("active", "activating", "reloading")}

    def restarts(self) -> dict[int, int]:
        return {}  # `routemq status` reads NRestarts from systemd itself
