"""WorkerManager, as RouteMQ's shared-subscriptions guide describes it: the shared routes of
an application and its worker processes, over the back ends `routemq run` and the master use.

    manager = WorkerManager(router, group_name="production_workers",
                            router_directory="app.routers")
    manager.get_shared_routes_info()   # [{"topic", "mqtt_topic", "qos", "worker_count"}, ...]
    manager.start_workers(4)           # `routemq worker --instance 1..4` child processes
    [w.pid for w in manager.workers if w.is_alive()]
    manager.restart_dead_workers()     # as `routemq run` does: not after exit 0 or 2
    manager.stop_workers()             # SIGTERM: each worker drains, then exits

Settings come from the one configuration parser (routemq.config.load_config): keyword
arguments first, then `environ` (default os.environ), the config files, the defaults. Any key
can be given, the password included: `WorkerManager(router, mqtt_password="s")` passes it to
the workers in their environment, never on a command line.

Two back ends (routemq.backends): `backend="processes"` (the default: child processes,
restarted and watched as under `routemq run`) and `backend="systemd"` (the routemq-worker@N
units, through systemctl; the handles report the units' MainPID and state, and systemd
restarts dead workers itself).
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from routemq.backends import ProcessBackend, SystemdBackend, WorkerHandle, stop_budget
from routemq.config import load_config, settings_environment
from routemq.errors import BackendError, UsageError
from routemq.fleet import unit_name
from routemq.plan import resolve_worker_count
from routemq.registry import load_router
from routemq.router import Router

BACKENDS = ("processes", "systemd")


class WorkerManager:
    """The workers of one application; `router` None loads it from router_directory under
    app_root, as the workers do."""

    def __init__(self, router: Router | None, group_name: str | None = None,
                 router_directory: str | None = None, *, app_root: str | None = None,
                 worker_count: str | int | None = None, backend: str = "processes",
                 environ: Mapping[str, str] | None = None, **settings: Any) -> None:
        if backend not in BACKENDS:
            raise UsageError(f"backend must be 'processes' or 'systemd', not {backend!r}")
        given = {"mqtt_group_name": group_name, "router_directory": router_directory,
                 "app_root": app_root, "worker_count": worker_count, **settings}
        self.environ = {**(os.environ if environ is None else environ),
                        **settings_environment(given)}
        self.config = load_config([], self.environ)
        # The children get the paths this process resolved, whatever their working directory.
        self.environ.update(settings_environment({"app_root": self.config.app_root,
                                                  "runtime_dir": self.config.runtime_dir}))
        self.router = router or load_router(self.config.router_directory, self.config.app_root)
        self.group_name: str = self.config.mqtt_group_name
        self.router_directory: str = self.config.router_directory
        self.app_root: str = self.config.app_root
        self.backend = backend
        self._backend: ProcessBackend | SystemdBackend = (
            SystemdBackend(block=True) if backend == "systemd" else
            ProcessBackend(self.environ, runtime_dir=self.config.runtime_dir))
        self.workers: list[WorkerHandle | UnitHandle] = []

    def get_shared_routes_info(self) -> list[dict[str, Any]]:
        """The shared routes, with the keys of the guide, and each one's subscription."""
        return [{"topic": r.topic, "mqtt_topic": r.mqtt_topic, "qos": r.qos,
                 "worker_count": r.worker_count,
                 "subscription": r.get_subscription_topic(self.group_name)}
                for r in self.router.shared_routes()]

    def default_worker_count(self) -> int:
        """worker_count from the configuration (WORKER_COUNT, ...); "auto" = the largest
        worker_count among shared routes."""
        return resolve_worker_count(self.config.worker_count, self.router.routes)

    def start_workers(self, num_workers: int | None = None) -> list[WorkerHandle | UnitHandle]:
        """Start instances 1..num_workers (default: default_worker_count()); one already
        running is left alone."""
        n = num_workers if num_workers is not None else self.default_worker_count()
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise UsageError(f"num_workers must be an integer >= 1, got {n!r}")
        instances = range(1, n + 1)
        if isinstance(self._backend, SystemdBackend):
            if not self._backend.start_many(instances):
                raise BackendError(f"systemctl start {unit_name(1)}..{unit_name(n)} failed "
                                   "(see the log)")
            self.workers = [UnitHandle(i, self._backend) for i in instances]
            return self.workers
        # Without a master each worker plans for itself, over instances 1..WORKER_COUNT.
        self.environ["WORKER_COUNT"] = self._backend.environ["WORKER_COUNT"] = str(n)
        for i in instances:
            self._backend.start(i)
        self.workers = [self._backend.handles[i] for i in instances]
        return self.workers

    def restart_dead_workers(self) -> list[int]:
        """Start again each worker that died or stalled (same instance number, so it resumes
        its broker session), as `routemq run` does: not one that exited 0 (stopped on
        purpose) or 2 (bad configuration), nor one that keeps failing. Returns the restarted
        instances. Under systemd, Restart=on-failure does this: nothing to do here."""
        restarted = self._backend.poll()
        if isinstance(self._backend, ProcessBackend):  # a restarted process has a new handle
            self.workers = [self._backend.handles.get(w.instance, w) for w in self.workers]
        return restarted

    def stop_workers(self, timeout: float | None = None) -> None:
        """SIGTERM every worker (each drains), wait up to `timeout` (default: the workers'
        own stop budget), then SIGKILL what is left. Under systemd: `systemctl stop` of the
        units, which waits for the drain."""
        if isinstance(self._backend, SystemdBackend):
            self._backend.stop_many([w.instance for w in self.workers])
            return
        self._backend.stop_all(stop_budget(self.config.drain_timeout) if timeout is None
                               else timeout)


class UnitHandle:
    """A worker unit routemq-worker@N, with the guide's `pid` and `is_alive()`."""

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
