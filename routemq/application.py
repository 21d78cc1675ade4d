"""The seed's `Application`: the router, its WorkerManager, and `run()`.

    from routemq.application import Application

    app = Application(app_root="/srv/routemq")       # loads app/routers like the workers do
    app.worker_manager.start_workers()                # or start_workers(num_workers=5)
    app.run()                                         # or: master + workers in the foreground

Configuration comes from the same places as for `routemq` (files, environment); keyword
arguments override them.
"""
from __future__ import annotations

import os
from typing import Any

from routemq.config import load_config
from routemq.registry import load_router
from routemq.router import Router
from routemq.worker_manager import WorkerManager


class Application:
    def __init__(self, app_root: str | None = None, router_directory: str | None = None,
                 *, backend: str = "processes", router: Router | None = None,
                 **settings: Any) -> None:
        argv = []
        for key, value in {"app_root": app_root, "router_directory": router_directory,
                           **settings}.items():
            if value is not None:
                argv.append(f"--{key.replace('_', '-')}={value}")
        self.config = load_config(argv)
        self.router = router or load_router(self.config.router_directory, self.config.app_root)
        self.worker_manager = WorkerManager(
            self.router, self.config.mqtt_group_name, self.config.router_directory,
            app_root=self.config.app_root, worker_count=self.config.worker_count,
            backend=backend, environ={**os.environ, **self.config.environment()})

    def run(self, workers: int | None = None) -> int:
        """`routemq run`: master, workers restarted when they die, the embedded broker when
        none is configured; returns when stopped (Ctrl-C or SIGTERM)."""
        from routemq.run import run
        return run(self.config, self.router, workers)
