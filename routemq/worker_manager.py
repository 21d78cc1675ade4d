"""The seed's WorkerManager: the shared routes of an application and its worker processes.

    manager = WorkerManager(router, group_name="production_workers",
                            router_directory="app.routers")
    manager.get_shared_routes_info()   # [{"topic", "mqtt_topic", "qos", "worker_count"}, ...]
    manager.start_workers(4)           # `routemq worker --instance 1..4` child processes
    [w.pid for w in manager.workers if w.is_alive()]
    manager.stop_workers()             # SIGTERM: each worker drains, then exits

Two back ends: `backend="processes"` (the default: child processes, for development and
tests) and `backend="systemd"` (the routemq-worker@N units, through systemctl; the handles
report the units' MainPID and state, and systemd restarts dead workers itself).
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from routemq.backends import SystemdBackend, WorkerHandle, spawn_worker
from routemq.plan import resolve_worker_count
from routemq.router import Router


class WorkerManager:
    def __init__(self, router: Router, group_name: str | None = None,
                 router_directory: str = "app.routers", *, app_root: str | None = None,
                 worker_count: str | int = "auto", backend: str = "processes",
                 environ: Mapping[str, str] | None = None) -> None:
        if backend not in ("processes", "systemd"):
            raise ValueError(f"backend must be 'processes' or 'systemd', not {backend!r}")
        self.backend = backend
        self._systemd = SystemdBackend(block=True) if backend == "systemd" else None
        self.router = router
        self.group_name = group_name or os.environ.get("MQTT_GROUP_NAME", "routemq")
        self.router_directory = router_directory
        self.app_root = app_root or os.getcwd()
        self.worker_count = worker_count
        self.environ = dict(os.environ if environ is None else environ)
        self.workers: list[WorkerHandle | UnitHandle] = []

    def get_shared_routes_info(self) -> list[dict[str, Any]]:
        """The shared routes, as the seed describes them."""
        return [{"topic": r.topic, "mqtt_topic": r.mqtt_topic, "qos": r.qos,
                 "worker_count": r.worker_count,
                 "subscription": r.get_subscription_topic(self.group_name)}
                for r in self.router.shared_routes()]

    def default_worker_count(self) -> int:
        """WORKER_COUNT from the environment, else `worker_count`, "auto" = the largest
        worker_count among shared routes."""
        setting = self.environ.get("WORKER_COUNT") or self.worker_count
        return resolve_worker_count(setting, self.router.routes)

    def _spawn(self, instance: int) -> WorkerHandle:
        env = dict(self.environ, MQTT_GROUP_NAME=self.group_name,
                   ROUTEMQ_APP_ROOT=self.app_root, ROUTEMQ_ROUTER_DIRECTORY=self.router_directory,
                   WORKER_COUNT=str(self.default_worker_count()))
        return spawn_worker(instance, env)

    def start_workers(self, num_workers: int | None = None) -> list[WorkerHandle | UnitHandle]:
        """Start instances 1..num_workers (default: default_worker_count())."""
        n = num_workers if num_workers is not None else self.default_worker_count()
        if n < 1:
            raise ValueError(f"num_workers must be >= 1, got {n}")
        if self._systemd is not None:
            if not self._systemd.start_many(range(1, n + 1)):
                raise RuntimeError("systemctl start routemq-worker@1..%d failed (see the log)" % n)
            self.workers = [UnitHandle(i, self._systemd) for i in range(1, n + 1)]
            return self.workers
        self.environ["WORKER_COUNT"] = str(n)
        self.workers = [self._spawn(i) for i in range(1, n + 1)]
        return self.workers

    def restart_dead_workers(self) -> list[int]:
        """Start again every worker that exited (the seed's health monitor); same instance
        number, so it resumes its broker session. Returns the restarted instances.
        Under systemd, Restart=on-failure does this: nothing to do here."""
        if self._systemd is not None:
            return []
        restarted = []
        for i, handle in enumerate(self.workers):
            if not handle.is_alive():
                self.workers[i] = self._spawn(handle.instance)
                restarted.append(handle.instance)
        return restarted

    def stop_workers(self, timeout: float = 30.0) -> None:
        """SIGTERM every worker (each drains), wait, then SIGKILL what is left.
        Under systemd: `systemctl stop` of the units (it waits for the drain)."""
        if self._systemd is not None:
            self._systemd.stop_many([w.instance for w in self.workers])
            return
        for handle in self.workers:
            handle.terminate()
        for handle in self.workers:
            if handle.join(timeout) is None:
                handle.proc.kill()
                handle.join(5)


class UnitHandle:
    """A worker unit routemq-worker@N, with the seed's `pid` and `is_alive()`."""

    def __init__(self, instance: int, systemd: SystemdBackend) -> None:
        self.instance = instance
        self._systemd = systemd

    def _unit(self) -> Any:
        return self._systemd.units().get(self.instance)

    @property
    def pid(self) -> int:
        unit = self._unit()
        return unit.main_pid if unit is not None else 0

    def is_alive(self) -> bool:
        unit = self._unit()
        return unit is not None and unit.active
