"""The `routemq` command: one subcommand per role, one configuration parser for all.

    routemq routes [--json]            the application's routes and their subscriptions
    routemq config [--json]            the effective configuration and where each value came from
    routemq plan [--workers N] [--json]  which instance subscribes to which route
    routemq worker --instance N        one worker (what routemq-worker@N.service runs)
    routemq master                     the planner (what routemq-master.service runs)
    routemq run [--workers N]          master and workers in the foreground, no systemd needed
    routemq status [--json]            the fleet: workers, routes, master, overall health
    routemq metrics                    the same in Prometheus text format

Exit status: 0 success, 1 runtime failure, 2 bad configuration or application (systemd
units list 2 in RestartPreventExitStatus, so a broken config does not restart in a loop).
`routemq status`: 0 healthy, 1 degraded, 3 unhealthy or nothing running (as systemctl's 3 for
an inactive unit), 2 bad configuration.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, Callable, Sequence

import configargparse

from routemq import __version__
from routemq.config import ConfigError, exit_on_config_error, load_config
from routemq.log import setup_logging
from routemq.registry import RegistryError, load_router
from routemq.router import Router

EXIT_CONFIG = 2

USAGE = __doc__.split("\n\n")[1]


def _json_flag(parser: configargparse.ArgParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def _plan_args(parser: configargparse.ArgParser) -> None:
    _json_flag(parser)
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="plan for N instances (default: worker_count)")


def _worker_args(parser: configargparse.ArgParser) -> None:
    parser.add_argument("--instance", type=int, required=True, metavar="N",
                        help="the worker's instance number (the %%i of routemq-worker@N)")


def _run_args(parser: configargparse.ArgParser) -> None:
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="start N workers (default: worker_count)")


def _load_app(config: Any) -> Router:
    try:
        return load_router(config.router_directory, config.app_root)
    except RegistryError as exc:
        print(f"routemq: application error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from exc


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip()
             for row in [header, *rows]]
    return "\n".join(lines)


def cmd_routes(config: Any) -> int:
    router = _load_app(config)
    described = [r.describe(config.mqtt_group_name) for r in router.routes]
    if config.json:
        print(json.dumps({"group": config.mqtt_group_name, "routes": described}, indent=2))
        return 0
    rows = [[d["topic"], d["mqtt_topic"], d["subscription"], str(d["qos"]),
             "yes" if d["shared"] else "no", str(d["worker_count"]), d["handler"]]
            for d in described]
    print(_table(rows, ["PATTERN", "FILTER", "SUBSCRIPTION", "QOS", "SHARED", "WORKERS",
                        "HANDLER"]))
    return 0


def cmd_config(config: Any) -> int:
    values = config.as_dict(redact=True)
    if config.json:
        print(json.dumps({k: {"value": v, "source": config.sources.get(k, "default")}
                          for k, v in values.items()}, indent=2, default=str))
        return 0
    rows = [[k, json.dumps(v, default=str), config.sources.get(k, "default")]
            for k, v in values.items()]
    print(_table(rows, ["KEY", "VALUE", "SOURCE"]))
    return 0


def cmd_plan(config: Any) -> int:
    from routemq.worker import standalone_plan

    plan = standalone_plan(_load_app(config), config.workers or config.worker_count)
    for warning in plan.warnings:
        print(f"routemq: warning: {warning}", file=sys.stderr)
    if config.json:
        print(plan.to_json())
        return 0
    rows = [[str(i), ", ".join(keys) or "-"] for i, keys in sorted(plan.assignments.items())]
    print(_table(rows, ["INSTANCE", "ROUTES"]))
    return 0


def cmd_worker(config: Any) -> int:
    from routemq.worker import run_worker

    # The application may want to know which instance runs it (logging, metrics labels).
    os.environ["ROUTEMQ_INSTANCE"] = str(config.instance)
    router = _load_app(config)  # a broken application is a configuration error (exit 2)
    return run_worker(config, config.instance, router)


def cmd_status(config: Any) -> int:
    from routemq.fleet import read_configured_fleet
    from routemq.status import build_status, exit_code, render_table

    status = build_status(read_configured_fleet(config))
    print(json.dumps(status, indent=2) if config.json else render_table(status))
    return exit_code(status)


def cmd_metrics(config: Any) -> int:
    from routemq.fleet import read_configured_fleet
    from routemq.prometheus import render_metrics
    from routemq.status import build_status

    sys.stdout.write(render_metrics(build_status(read_configured_fleet(config))))
    return 0


def cmd_master(config: Any) -> int:
    from routemq.master import run_master

    return run_master(config, _load_app(config))


def cmd_run(config: Any) -> int:
    from routemq.run import run

    if config.workers is not None and config.workers < 1:
        print("routemq: config error: --workers must be >= 1", file=sys.stderr)
        return EXIT_CONFIG
    return run(config, _load_app(config), config.workers)


COMMANDS: dict[str, tuple[Callable[[Any], int], Callable[[Any], None] | None]] = {
    "routes": (cmd_routes, _json_flag),
    "config": (cmd_config, _json_flag),
    "plan": (cmd_plan, _plan_args),
    "worker": (cmd_worker, _worker_args),
    "master": (cmd_master, None),
    "run": (cmd_run, _run_args),
    "status": (cmd_status, _json_flag),
    "metrics": (cmd_metrics, None),
}


DAEMONS = {"worker", "master", "run"}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(f"usage: routemq COMMAND [options]\n\n{USAGE}\n\n"
              "`routemq COMMAND --help` lists every option.")
        return 0
    if args[0] in ("--version", "version"):
        print(f"routemq {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"routemq: unknown command {name!r} (one of: {', '.join(COMMANDS)})",
              file=sys.stderr)
        return EXIT_CONFIG
    handler, role_args = COMMANDS[name]
    try:
        config = load_config(rest, add_role_args=role_args, prog=f"routemq {name}")
    except ConfigError as err:
        exit_on_config_error(err)
    worker_id = getattr(config, "instance", None)
    # Daemons log to stdout (the journal); the inspection commands keep stdout for their
    # output (`routemq routes --json | jq`) and log to stderr.
    stream = sys.stdout if name in DAEMONS else sys.stderr
    setup_logging(config.log_level, fmt=config.log_format, worker_id=worker_id, role=name,
                  stream=stream)
    for warning in config.warnings:
        logging.getLogger("routemq.config").warning("%s", warning)
    return handler(config)
