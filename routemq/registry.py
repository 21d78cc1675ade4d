"""Discover the router modules of an application and merge their routes.

A RouteMQ project keeps one router per module:

    /srv/routemq/                  <- the application root (config `app_root`)
        app/__init__.py
        app/routers/__init__.py    <- the router package (config `router_directory`,
        app/routers/sensors.py        default "app.routers"); each module defines `router`
        app/controllers/sensor_controller.py

`RouterRegistry(router_directory, app_root).discover_and_load_routers()` imports every
module of the package (subpackages included, `_private` modules skipped) and merges each
module's `router` into one Router. A module that fails to import is an error naming its
file: silently running with fewer routes than the application defines loses messages.
"""
from __future__ import annotations

import importlib
import logging
import os
import pkgutil
import sys
import traceback

from routemq.errors import RegistryError, RouteError
from routemq.router import Router

log = logging.getLogger("routemq.registry")


_inserted_roots: list[str] = []  # application roots this module put on sys.path


def _use_app_root(app_root: str) -> None:
    """Put `app_root` first on sys.path and take away roots of earlier applications."""
    for old in _inserted_roots:
        while old in sys.path:
            sys.path.remove(old)
    _inserted_roots[:] = [app_root]
    sys.path.insert(0, app_root)
    importlib.invalidate_caches()


def _inside(path: str, root: str) -> bool:
    return bool(path) and os.path.realpath(path).startswith(os.path.realpath(root) + os.sep)


def _forget_foreign(top: str, app_root: str) -> None:
    """Drop an already-imported package `top` that lives outside `app_root`, so that the
    application's own `app` package is imported rather than another one of the same name."""
    mod = sys.modules.get(top)
    if mod is None:
        return
    paths = list(getattr(mod, "__path__", [])) or [getattr(mod, "__file__", "") or ""]
    if any(_inside(p, app_root) for p in paths):
        return
    for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
        del sys.modules[name]


def _module_file(finder: object, name: str, ispkg: bool) -> str:
    base = os.path.join(getattr(finder, "path", ""), name.rsplit(".", 1)[-1])
    return os.path.join(base, "__init__.py") if ispkg else base + ".py"


# What importing application code may raise. SystemExit and KeyboardInterrupt too: a router
# module that calls sys.exit(0) at import would otherwise end the worker with status 0, so
# systemd would not restart it and nothing would say why.
IMPORT_FAILURES = (Exception, SystemExit, KeyboardInterrupt)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _import_error(what: str, exc: BaseException) -> RegistryError:
    # Point at the application's line (router.on("a/#/b", ...)), not at the routemq or
    # importlib frame below it that raised.
    frames = traceback.extract_tb(exc.__traceback__)
    tb = [f for f in frames if not f.filename.startswith((_PACKAGE_DIR, "<frozen "))] or frames
    where = f" ({tb[-1].filename}:{tb[-1].lineno})" if tb else ""
    if isinstance(exc, SystemExit):
        return RegistryError(f"cannot import {what}: it called sys.exit({exc.code!r}) while "
                             f"being imported{where}")
    return RegistryError(f"cannot import {what}: {type(exc).__name__}: {exc}{where}")


class RouterRegistry:
    """Loads every router module of `router_directory` found below `app_root`."""

    def __init__(self, router_directory: str = "app.routers",
                 app_root: str | os.PathLike[str] | None = None) -> None:
        self.router_directory = router_directory.replace("/", ".").strip(".")
        self.app_root = os.path.abspath(os.fspath(app_root) if app_root else os.getcwd())
        self.modules: list[str] = []

    def discover_and_load_routers(self) -> Router:
        """One Router holding the routes of every router module, in module-name order."""
        if not os.path.isdir(self.app_root):
            raise RegistryError(f"application root {self.app_root} is not a directory")
        _use_app_root(self.app_root)
        _forget_foreign(self.router_directory.split(".")[0], self.app_root)
        try:
            package = importlib.import_module(self.router_directory)
        except ModuleNotFoundError as exc:
            if exc.name and self.router_directory.startswith(exc.name):
                raise RegistryError(
                    f"router package {self.router_directory!r} not found under {self.app_root} "
                    f"(expected {os.path.join(self.app_root, *self.router_directory.split('.'))}"
                    f"/__init__.py)") from exc
            raise _import_error(f"router package {self.router_directory!r}", exc) from exc
        except IMPORT_FAILURES as exc:
            raise _import_error(f"router package {self.router_directory!r}", exc) from exc

        where = list(getattr(package, "__path__", [])) or [package.__file__ or ""]
        if not any(_inside(p, self.app_root) for p in where):
            raise RegistryError(f"router package {self.router_directory!r} not found under "
                                f"{self.app_root} (an unrelated one is at {where[0]})")
        main = Router()
        if isinstance(getattr(package, "router", None), Router):
            self._merge(main, package.router, self.router_directory)
        if not hasattr(package, "__path__"):
            return main  # a single router module rather than a package
        found: dict[str, str] = {}
        walk = pkgutil.walk_packages(package.__path__, prefix=self.router_directory + ".",
                                     onerror=self._walk_error)
        try:
            for finder, name, ispkg in walk:  # imports each subpackage to look inside it
                if not name.rsplit(".", 1)[-1].startswith("_"):
                    found[name] = _module_file(finder, name, ispkg)
        except RegistryError:
            raise
        except IMPORT_FAILURES as exc:  # walk_packages lets SystemExit through onerror
            raise _import_error(f"a router subpackage of {self.router_directory!r}",
                                exc) from exc
        for name in sorted(found):
            self._load(main, name, found[name])
        log.info("loaded %d routes from %d router modules of %s",
                 len(main.routes), len(self.modules), self.router_directory)
        return main

    @staticmethod
    def _walk_error(name: str) -> None:
        exc = sys.exc_info()[1]
        raise _import_error(f"router package {name!r}", exc) if exc else \
            RegistryError(f"cannot import router package {name!r}")

    def _load(self, main: Router, name: str, path: str) -> None:
        try:
            module = importlib.import_module(name)
        except IMPORT_FAILURES as exc:
            raise _import_error(f"router module {path}", exc) from exc
        router = getattr(module, "router", None)
        if router is None:
            if not hasattr(module, "__path__"):
                log.warning("router module %s defines no `router`; skipped", name)
            return
        if not isinstance(router, Router):
            raise RegistryError(f"router module {module.__file__}: `router` is a "
                                f"{type(router).__name__}, not a routemq.router.Router")
        self._merge(main, router, name)

    def _merge(self, main: Router, router: Router, name: str) -> None:
        try:
            main.include(router)
        except RouteError as exc:
            raise RegistryError(f"router module {name}: {exc}") from exc
        self.modules.append(name)


def reload_router(router_directory: str = "app.routers",
                  app_root: str | os.PathLike[str] | None = None) -> Router:
    """The application imported afresh (a reload): every module loaded from below `app_root`
    is forgotten first, so that edited files are read again. Whoever holds the previous
    Router keeps its modules; RegistryError leaves nothing of the new version behind."""
    root = os.path.abspath(os.fspath(app_root) if app_root else os.getcwd())
    for name, module in list(sys.modules.items()):
        places = [getattr(module, "__file__", None) or "",
                  *(getattr(module, "__path__", None) or [])]
        if any(_inside(p, root) for p in places):
            del sys.modules[name]
    importlib.invalidate_caches()
    return load_router(router_directory, root)


def load_router(router_directory: str = "app.routers",
                app_root: str | os.PathLike[str] | None = None) -> Router:
    """Shortcut: the merged Router of an application."""
    return RouterRegistry(router_directory, app_root).discover_and_load_routers()
