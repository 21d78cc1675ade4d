"""The `routemq` command: one subcommand per role, one configuration parser for all.

    routemq check [--workers N] [--json]  load configuration and application as a worker
                                       would; report problems and risks (exit 0 or 2)
    routemq routes [--json]            the application's routes and their subscriptions
    routemq config [--json]            the effective configuration and where each value came from
    routemq plan [--workers N] [--json]  which instance subscribes to which route
    routemq worker --instance N [--drain]  one worker (what routemq-worker@N.service runs)
    routemq master                     the planner (what routemq-master.service runs)
    routemq run [--workers N]          master and workers in the foreground, no systemd needed
    routemq status [--json]            the fleet: workers, routes, master, overall health
    routemq metrics                    the same in Prometheus text format
    routemq dead-letters [replay] [--route PATTERN]  list (or republish) the spooled dead
                                       letters: [--json]; replay [--limit N] [--dry-run]

Exit status: 0 success, 1 runtime failure, 2 bad configuration or application (systemd
units list 2 in RestartPreventExitStatus, so a broken config does not restart in a loop).
`routemq status`: 0 healthy, 1 degraded, 3 unhealthy or nothing running (as systemctl's 3 for
an inactive unit), 2 bad configuration.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import sys
import tempfile
from typing import Any, Callable, Sequence

import configargparse

from routemq import __version__
from routemq.app_checks import check_application, setting, warn_application
from routemq.config import exit_on_config_error, load_config
from routemq.config_keys import MAX_INSTANCES
from routemq.environment import (chosen_venv, reexec_argv, reexec_environ, running_in,
                                 state_directory, user_name, venv_problem)
from routemq.errors import EXIT_CONFIG, EXIT_OK, ConfigError, RegistryError
from routemq.log import setup_logging
from routemq.plan import standalone_plan
from routemq.registry import load_router
from routemq.router import Router

CONFIG_ERROR = "routemq: config error: "

USAGE = __doc__.split("\n\n")[1]


def _json_flag(parser: configargparse.ArgParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def _instance_number(raw: str) -> int:
    """1..MAX_INSTANCES, the instance numbers the polkit rule lets the master start."""
    try:
        value = int(raw, 10)
    except ValueError:
        raise configargparse.ArgumentTypeError(f"not an integer: {raw!r}") from None
    if not 1 <= value <= MAX_INSTANCES:
        raise configargparse.ArgumentTypeError(f"must be between 1 and {MAX_INSTANCES}")
    return value


def _workers_flag(parser: configargparse.ArgParser, what: str) -> None:
    parser.add_argument("--workers", type=_instance_number, default=None, metavar="N",
                        help=f"{what} N instances, 1..{MAX_INSTANCES} (default: worker_count)")


def _plan_args(parser: configargparse.ArgParser) -> None:
    _json_flag(parser)
    _workers_flag(parser, "plan for")


def _worker_args(parser: configargparse.ArgParser) -> None:
    parser.add_argument("--instance", type=_instance_number, required=True, metavar="N",
                        help="the worker's instance number (the %%i of routemq-worker@N), "
                        f"1..{MAX_INSTANCES}")
    parser.add_argument("--drain", action="store_true",
                        help="end a planned-out instance's broker session: handle what it "
                        "holds, unsubscribe, end it; started by the master")


def _run_args(parser: configargparse.ArgParser) -> None:
    _workers_flag(parser, "start")


def load_application(config: Any) -> Router:
    """The application's merged Router, as every command loads it; RegistryError if broken."""
    return load_router(config.router_directory, config.app_root)


def _load_app(config: Any) -> Router:
    try:
        return load_application(config)
    except RegistryError as exc:
        print(f"routemq: application error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from exc


def _load_checked_app(config: Any) -> Router:
    """The application, loaded and checked against the configuration as every daemon does;
    a problem is one line on stderr and exit 2 (not restarted by systemd)."""
    router = _load_app(config)
    errors = check_application(config, router)
    for error in errors:
        print(CONFIG_ERROR + error, file=sys.stderr)
    if errors:
        raise SystemExit(EXIT_CONFIG)
    return router


def runtime_dir_problem(path: str, create: bool = True) -> str | None:
    """Why the runtime directory cannot hold the plan and health files, or None. With
    `create`, a missing directory (and missing parents) is made with mode 0755 whatever the
    umask; without, only what no user could fix is reported (it exists as a non-directory)."""
    if os.path.lexists(path) and not os.path.isdir(path):
        return "exists and is not a directory"
    if not create:
        return None
    missing = []
    head = path
    while head and not os.path.isdir(head):
        missing.append(head)
        head = os.path.dirname(head)
    try:
        for directory in reversed(missing):
            try:
                os.mkdir(directory, 0o755)
            except FileExistsError:  # made meanwhile by another process: fine if a directory
                if not os.path.isdir(directory):
                    raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR),
                                             directory) from None
                continue
            os.chmod(directory, 0o755)  # mkdir's mode is masked by the umask (000 or 077)
    except OSError as exc:
        return f"cannot create it: {exc.strerror or exc}"
    try:  # a real write answers for the effective user, ACLs and read-only mounts alike
        with tempfile.TemporaryFile(dir=path, prefix=".routemq-probe-"):
            pass
    except OSError as exc:
        return f"cannot write in it: {exc.strerror or exc}"
    return None


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip()
             for row in [header, *rows]]
    return "\n".join(lines)


def _routes_table(described: list[dict[str, Any]]) -> str:
    rows = [[d["topic"], d["mqtt_topic"], d["subscription"], str(d["qos"]),
             "yes" if d["shared"] else "no", str(d["worker_count"]), d["handler"]]
            for d in described]
    return _table(rows, ["PATTERN", "FILTER", "SUBSCRIPTION", "QOS", "SHARED", "WORKERS",
                         "HANDLER"])


def cmd_routes(config: Any) -> int:
    router = _load_app(config)
    described = [r.describe(config.mqtt_group_name) for r in router.routes]
    if config.json:
        print(json.dumps({"group": config.mqtt_group_name, "routes": described}, indent=2))
        return 0
    print(_routes_table(described))
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
    router = _load_checked_app(config)  # a broken application is a configuration error
    return run_worker(config, config.instance, router, drain=config.drain)


def check_report(config: Any) -> tuple[dict[str, Any], int]:
    """What `routemq check` reports, and its exit status: the application loaded as a worker
    loads it, the checks every daemon makes, the warnings, and the plan."""
    report: dict[str, Any] = {"ok": False, "errors": [], "warnings": list(config.warnings),
                              "app_root": config.app_root, "python": sys.executable,
                              "venv": sys.prefix if sys.prefix != sys.base_prefix else None}
    problem = runtime_dir_problem(config.runtime_dir, create=False)
    if problem:
        report["errors"].append(f"{setting(config, 'runtime_dir')}: {problem}")
    try:
        router = load_application(config)
    except RegistryError as exc:
        report["errors"].append(f"application: {exc}")
        return report, EXIT_CONFIG
    report["errors"] += check_application(config, router)
    report["warnings"] += warn_application(config, router)
    plan = standalone_plan(router, config.workers or config.worker_count)
    report["warnings"] += list(plan.warnings)
    report.update(routes=[r.describe(config.mqtt_group_name) for r in router.routes],
                  shared=len(router.shared_routes()),
                  instances=len(plan.assignments), plan=json.loads(plan.to_json()))
    report["ok"] = not report["errors"]
    return report, EXIT_OK if report["ok"] else EXIT_CONFIG


def _count(items: list[Any], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def cmd_check(config: Any) -> int:
    report, status = check_report(config)
    if config.json:
        print(json.dumps(report, indent=2))
        return status
    print(f"application {report['app_root']}, python {report['python']}"
          + (f" (venv {report['venv']})" if report["venv"] else ""))
    if report.get("routes"):
        print(_routes_table(report["routes"]))
    for error in report["errors"]:
        print(f"error: {error}")
    for warning in report["warnings"]:
        print(f"warning: {warning}")
    counts = f"{_count(report['errors'], 'error')}, {_count(report['warnings'], 'warning')}"
    if "routes" in report:
        counts = (f"{_count(report['routes'], 'route')} ({report['shared']} shared), plan "
                  f"for {report['instances']} instances, " + counts)
    print(("ok: " if report["ok"] else "failed: ") + counts)
    return status


def cmd_status(config: Any) -> int:
    from routemq.fleet import read_configured_fleet
    from routemq.status import build_status, exit_code
    from routemq.status_text import render_table

    status = build_status(read_configured_fleet(config))
    print(json.dumps(status, indent=2) if config.json else render_table(status))
    return exit_code(status)


def cmd_metrics(config: Any) -> int:
    from routemq.fleet import read_configured_fleet
    from routemq.prometheus import render_metrics
    from routemq.status import build_status

    sys.stdout.write(render_metrics(build_status(read_configured_fleet(config))))
    return 0


def _dead_letter_args(parser: configargparse.ArgParser) -> None:
    parser.add_argument("action", nargs="?", choices=("list", "replay"), default="list",
                        help="list the spooled dead letters (default), or replay them")
    parser.add_argument("--route", metavar="PATTERN", default=None,
                        help="only the letters of this route (its pattern, or a shell-style "
                        "wildcard over it: 'orders/*')")
    parser.add_argument("--limit", type=_positive, default=None, metavar="N",
                        help="replay: at most N letters, oldest first")
    parser.add_argument("--dry-run", action="store_true",
                        help="replay: say what would be republished, change nothing")
    _json_flag(parser)


def _positive(raw: str) -> int:
    try:
        value = int(raw, 10)
    except ValueError:
        raise configargparse.ArgumentTypeError(f"not an integer: {raw!r}") from None
    if value < 1:
        raise configargparse.ArgumentTypeError("must be 1 or more")
    return value


def _letter_row(letter: Any) -> dict[str, Any]:
    from routemq.deadletters import not_replayable, preview

    r = letter.record
    return {"id": letter.id, "time": r["time"], "route": r["route"], "topic": r["topic"],
            "qos": r["qos"], "error": r["error"], "attempts": r.get("attempts", 1),
            "worker": r.get("worker"), "payload_bytes": r.get("payload_bytes"),
            "preview": preview(r), "replayable": not_replayable(r) is None}


def _when(timestamp: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def cmd_dead_letters(config: Any) -> int:
    from routemq.deadletters import spool_for

    spool = spool_for(config)
    if config.action == "replay":
        return _replay(config, spool)
    listing = spool.letters(config.route)
    for problem in listing.problems:
        print(f"routemq: warning: {problem}", file=sys.stderr)
    rows = [_letter_row(letter) for letter in listing.letters]
    if config.json:
        print(json.dumps({"spool": str(spool.directory), "letters": rows,
                          "problems": listing.problems}, indent=2))
        return 0
    if not rows:
        print(f"no dead letters in {spool.directory}")
        return 0
    print(_table([[_when(r["time"]), r["route"], r["topic"], str(r["attempts"]), r["error"],
                   r["preview"]] for r in rows],
                 ["TIME", "ROUTE", "TOPIC", "ATTEMPTS", "ERROR", "PAYLOAD"]))
    print(f"{_count(rows, 'dead letter')} in {spool.directory}")
    return 0


def _replay(config: Any, spool: Any) -> int:
    from routemq.deadletters import BrokerPublisher, replay
    from routemq.session import client_id

    def said(letter: Any) -> None:
        verb = "would republish" if config.dry_run else "republished"
        print(f"{verb} {letter.record['topic']} (qos {letter.record['qos']}, route "
              f"{letter.route}, {_when(letter.record['time'])})")

    publisher = None
    if not config.dry_run and spool.letters(config.route).letters:
        publisher = BrokerPublisher(config, client_id(f"{config.client_id_prefix}-replay",
                                                      os.getpid()))
        try:
            publisher.connect()
        except ConnectionError as exc:
            print(f"routemq: {exc}; nothing replayed", file=sys.stderr)
            return 1
    try:
        result = replay(spool, publisher.publish if publisher else _no_publish,
                        route=config.route, limit=config.limit, dry_run=config.dry_run,
                        on_letter=said)
    except ConnectionError as exc:
        print(f"routemq: {exc}; the rest stays in the spool", file=sys.stderr)
        return 1
    finally:
        if publisher is not None:
            publisher.close()
    for problem in result.problems:
        print(f"routemq: warning: {problem}", file=sys.stderr)
    for letter, why in result.skipped:
        print(f"skipped {letter.id} ({letter.record['topic']}): {why}")
    print(f"{_count(result.replayed, 'dead letter')} "
          f"{'to replay' if config.dry_run else 'replayed'}, {len(result.skipped)} skipped")
    return 0


def _no_publish(topic: str, payload: bytes, qos: int, properties: Any) -> None:
    raise AssertionError("a dry run publishes nothing")


def cmd_master(config: Any) -> int:
    from routemq.master import run_master

    return run_master(config, _load_checked_app(config))


def cmd_run(config: Any) -> int:
    from routemq.run import run

    return run(config, _load_checked_app(config), config.workers)


COMMANDS: dict[str, tuple[Callable[[Any], int], Callable[[Any], None] | None]] = {
    "check": (cmd_check, _plan_args),
    "routes": (cmd_routes, _json_flag),
    "config": (cmd_config, _json_flag),
    "plan": (cmd_plan, _plan_args),
    "worker": (cmd_worker, _worker_args),
    "master": (cmd_master, None),
    "run": (cmd_run, _run_args),
    "status": (cmd_status, _json_flag),
    "metrics": (cmd_metrics, None),
    "dead-letters": (cmd_dead_letters, _dead_letter_args),
}


DAEMONS = {"worker", "master", "run"}
# The commands that import the application, so run under its venv.
APP_COMMANDS = DAEMONS | {"check", "routes", "plan"}


def _export_state_dir(config: Any) -> str | None:
    """Make the handlers' state directory and name it in $STATE_DIRECTORY (inherited by
    `routemq run`'s workers); why it cannot be made, or None."""
    euid = os.geteuid()
    path = state_directory(config.state_dir, os.environ, euid, user_name(euid))
    try:
        path.mkdir(mode=0o750, parents=True, exist_ok=True)
    except OSError as exc:
        return f"state directory {path} ({setting(config, 'state_dir')}): {exc.strerror}"
    os.environ["STATE_DIRECTORY"] = str(path)
    return None


def _enter_venv(config: Any, args: list[str]) -> None:
    """Re-execute `routemq <args>` under the application's venv unless already there
    (routemq.environment); ConfigError when that venv cannot work."""
    venv = chosen_venv(config.venv, config.app_root)
    if venv is None or running_in(venv):
        return
    problem = venv_problem(venv)
    argv = reexec_argv(venv, args)
    if problem is None:
        try:
            os.execve(argv[0], argv, reexec_environ(os.environ))
        except OSError as exc:
            problem = f"cannot run {argv[0]}: {exc.strerror}"
    origin = setting(config, "venv") if config.venv else "app_root's .venv"
    raise ConfigError(f"venv {venv} ({origin}): {problem}", key="venv")


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
        if name == "check" and "--json" in rest:
            print(json.dumps({"ok": False, "errors": [err.detail], "warnings": []}, indent=2))
        exit_on_config_error(err)
    if name in APP_COMMANDS:
        try:
            _enter_venv(config, args)
        except ConfigError as err:
            if name == "check" and "--json" in rest:
                print(json.dumps({"ok": False, "errors": [err.detail], "warnings": []}, indent=2))
            exit_on_config_error(err)
    if name in DAEMONS:
        problem = runtime_dir_problem(config.runtime_dir)
        if problem:
            print(f"{CONFIG_ERROR}{setting(config, 'runtime_dir')}: {problem}", file=sys.stderr)
            return EXIT_CONFIG
        problem = _export_state_dir(config)
        if problem:
            print(CONFIG_ERROR + problem, file=sys.stderr)
            return EXIT_CONFIG
    worker_id = getattr(config, "instance", None)
    # Daemons log to stdout (the journal); the inspection commands keep stdout for their
    # output (`routemq routes --json | jq`) and log to stderr.
    stream = sys.stdout if name in DAEMONS else sys.stderr
    setup_logging(config.log_level, fmt=config.log_format, worker_id=worker_id, role=name,
                  stream=stream)
    for warning in config.warnings if name != "check" else ():  # check reports its own
        logging.getLogger("routemq.config").warning("%s", warning)
    return handler(config)
