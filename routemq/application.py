"""`Application`, as RouteMQ's shared-subscriptions guide describes it: the router, its
WorkerManager, and `run()`.

    from routemq.application import Application

    app = Application(app_root="/srv/routemq")       # loads app/routers like the workers do
    app.worker_manager.start_workers()                # or start_workers(num_workers=5)
    app.run()                                         # or: master + workers in the foreground

Configuration comes from the one parser every `routemq` command uses (files, environment);
keyword arguments override them, and any key may be given, the password included:
`Application(mqtt_broker="mqtt.example.com", mqtt_password=secret)`.
"""
from __future__ import annotations

from typing import Any

from routemq.router import Router
from routemq.worker_manager import WorkerManager


class Application:
    def __init__(self, app_root: str | None = None, router_directory: str | None = None,
                 *, backend: str = "processes", router: Router | None = None,
                 **settings: Any) -> None:
        self.worker_manager = WorkerManager(router, router_directory=router_directory,
                                            app_root=app_root, backend=backend, **settings)
        self.config = self.worker_manager.config
        self.router = self.worker_manager.router

    def run(self, workers: int | None = None) -> int:
        """`routemq run`: master, workers restarted when they die, the embedded broker when
        none is configured; returns its exit status when stopped (Ctrl-C or SIGTERM)."""
        from routemq.run import run
        return run(self.config, self.router, workers, environ=self.worker_manager.environ)
