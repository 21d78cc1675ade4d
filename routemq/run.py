"""`routemq run [--workers N]`: the whole product in the foreground, without systemd.

The master and N workers (child processes `routemq worker --instance i`), a dead worker
restarted (WorkerHealthMonitor in RouteMQ's shared-subscriptions guide), and, when no
MQTT_BROKER is configured, a private mosquitto on a free loopback port (the embedded default).

One `routemq run` (or `routemq master`) per runtime directory: a second one exits 1 at once,
before it starts a broker or a worker. Its children die with it: kill -9 of `routemq run`
sends SIGTERM to every worker (they drain into the broker) and to the private broker.

Stopping (Ctrl-C or SIGTERM), in this order:
1. the master's loop ends and master.json goes, so workers do not wait for a hand-over;
2. every worker gets SIGTERM, drains its in-flight messages and exits (SIGKILL after
   drain_timeout plus a margin);
3. the private broker stops last: the workers' acknowledgements must reach it.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Mapping

from routemq.backends import ProcessBackend, stop_budget
from routemq.embedded import EmbeddedBroker
from routemq.errors import (EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EmbeddedBrokerError,
                            MasterError)
from routemq.master import Master
from routemq.router import Router
from routemq.runtime import RuntimePaths, ensure_dir, master_lock_holder, running_master

log = logging.getLogger("routemq.run")


def other_master(paths: RuntimePaths) -> str | None:
    """Why this runtime directory is taken (one line), or None. The lock is the rule; a
    fresh master.json of a live pid also counts (a master of a version without the lock)."""
    holder = master_lock_holder(paths)
    if holder is None:
        holder = running_master(paths, time.time())
    if holder is None:
        return None
    return (f"another master (pid {holder or 'unknown'}) is running on {paths.root}; "
            f"stop it first, or give this one its own runtime_dir")


def run(config: Any, router: Router, workers: int | None = None,
        environ: Mapping[str, str] | None = None) -> int:
    """EXIT_OK after a clean stop; EXIT_FAILURE when another master runs here or the broker
    is unavailable; EXIT_CONFIG when the runtime directory cannot be made. The workers get
    `environ` (default os.environ: what `config` was read from) and the command line's keys."""
    paths = RuntimePaths(config.runtime_dir)
    taken = other_master(paths)
    if taken:
        log.error("%s", taken)
        return EXIT_FAILURE
    try:
        ensure_dir(paths.workers)  # 0755 whatever the umask, before anyone writes in it
    except OSError as exc:
        log.error("cannot create the runtime directory %s: %s", paths.workers,
                  exc.strerror or exc)
        return EXIT_CONFIG
    children = config.environment()
    broker = None
    if not config.mqtt_broker:
        broker = EmbeddedBroker()
        try:
            broker.start()
        except EmbeddedBrokerError as exc:
            log.error("%s", exc)
            return EXIT_FAILURE
        children.update(MQTT_BROKER=broker.host, MQTT_PORT=str(broker.port))
    children["ROUTEMQ_RUNTIME_DIR"] = config.runtime_dir
    backend = ProcessBackend({**(os.environ if environ is None else environ), **children},
                             runtime_dir=config.runtime_dir)
    master = Master(config, router, backend, workers=workers)
    try:
        master.claim()
        for i in sorted(master.membership.members):
            backend.start(i)
        if broker is not None:
            print(f"routemq run: try  mosquitto_pub -h {broker.host} -p {broker.port} "
                  f"-t <topic> -m '<payload>' -q 1", flush=True)
        return asyncio.run(master.run())
    except MasterError as exc:
        log.error("%s", exc)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        master.close()
        backend.stop_all(stop_budget(config.drain_timeout))
        if master.claimed:
            try:
                os.unlink(master.paths.plan)  # the fleet is gone; no worker should wait for it
            except FileNotFoundError:
                pass
        if broker is not None:
            broker.stop()
        log.info("stopped")
