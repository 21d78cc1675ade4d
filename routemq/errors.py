"""RouteMQ's errors, one family, and the exit status each stands for.

    RouteMQError
    ├── ConfigError          bad configuration: one line, exit 2
    ├── RegistryError        the application's routers cannot be loaded: exit 2
    ├── RouteError           a route cannot be registered (also a ValueError)
    ├── NoRouteError         no route matches a topic (also a ValueError, as RouteMQ raises)
    ├── PlanError            a plan cannot be made or read (also a ValueError)
    ├── UsageError           a bad argument to the Python API (also a ValueError)
    ├── BackendError         workers could not be started or stopped (also a RuntimeError)
    ├── WorkerError          a worker cannot go on (bad plan, refused subscription)
    ├── MasterError          the master cannot run (another one owns the runtime directory)
    └── EmbeddedBrokerError  `routemq run`'s private mosquitto cannot start

    try:
        Application(app_root="/srv/app").run()
    except RouteMQError as exc:
        raise SystemExit(exc.exit_code) from exc   # 2 for ConfigError, 1 for most

Exit status of every command (systemd units list EXIT_CONFIG in RestartPreventExitStatus=, so
a broken configuration is not restarted in a loop):

    >>> EXIT_OK, EXIT_FAILURE, EXIT_CONFIG, exit_code(ConfigError("x")), exit_code(OSError())
    (0, 1, 2, 2, 1)

The subclasses that are also ValueError or RuntimeError keep code working that caught those
before the family existed (`except ValueError` around `router.on(...)`).
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1  # a runtime failure: restarting may help
EXIT_CONFIG = 2   # bad configuration or application: restarting cannot help
EXIT_INACTIVE = 3  # `routemq status`: unhealthy or nothing running (systemctl's 3, inactive)
EXIT_BUSY = 75     # the drainer: the session is in use, try again later (EX_TEMPFAIL)

__all__ = ["EXIT_BUSY", "EXIT_CONFIG", "EXIT_FAILURE", "EXIT_INACTIVE", "EXIT_OK",
           "BackendError", "ConfigError", "EmbeddedBrokerError", "MasterError", "NoRouteError",
           "PlanError", "RegistryError", "RouteError", "RouteMQError", "UsageError",
           "WorkerError", "exit_code"]


class RouteMQError(Exception):
    """The base of every error RouteMQ raises on purpose; `exit_code` is the command's exit
    status when it ends on this error."""

    exit_code = EXIT_FAILURE


class ConfigError(RouteMQError):
    """A configuration problem; str() is one line: ``routemq: config error: <detail>``."""

    exit_code = EXIT_CONFIG

    def __init__(self, detail: str, *, key: str | None = None, source: str | None = None) -> None:
        # A newline in a path or value would split the line journald and the operator see.
        self.detail = detail.replace("\r", "\\r").replace("\n", "\\n")
        self.key = key
        self.source = source
        super().__init__(f"routemq: config error: {self.detail}")


class RegistryError(RouteMQError):
    """The application's routers could not be loaded; the message says which file and why."""

    exit_code = EXIT_CONFIG


class RouteError(RouteMQError, ValueError):
    """A route cannot be registered: bad pattern, handler, qos or worker_count, or a duplicate
    subscription. The message names the route."""


class NoRouteError(RouteMQError, ValueError):
    """No route matches a topic (a ValueError, as RouteMQ raises)."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"No route found for topic: {topic}")
        self.topic = topic


class PlanError(RouteMQError, ValueError):
    """A plan cannot be computed from its input, or a plan file cannot be read."""


class UsageError(RouteMQError, ValueError):
    """A bad argument to the Python API (WorkerManager, Application)."""


class BackendError(RouteMQError, RuntimeError):
    """A back end could not start or stop worker instances (systemctl failed)."""


class WorkerError(RouteMQError):
    """A fatal condition with a one-line explanation (bad plan, refused subscription)."""


class MasterError(RouteMQError):
    """The master cannot run (e.g. another master owns the runtime directory)."""


class EmbeddedBrokerError(RouteMQError):
    """`routemq run`'s private mosquitto cannot be found or started."""


def exit_code(exc: BaseException) -> int:
    """The exit status for a command that ends on `exc`: its own for RouteMQ's errors, else
    EXIT_FAILURE."""
    return exc.exit_code if isinstance(exc, RouteMQError) else EXIT_FAILURE
