"""`routemq run [--workers N]`: the whole product in the foreground, without systemd.

The master and N workers (child processes `routemq worker --instance i`), a dead worker
restarted (the seed's WorkerHealthMonitor), and, when no MQTT_BROKER is configured, a private
mosquitto on a free loopback port (the embedded default).

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
from typing import Any

from routemq.backends import ProcessBackend
from routemq.embedded import EmbeddedBroker, EmbeddedBrokerError
from routemq.master import Master, MasterError
from routemq.router import Router
from routemq.worker import UNSUBACK_WAIT

log = logging.getLogger("routemq.run")

STOP_MARGIN = 10.0


def run(config: Any, router: Router, workers: int | None = None) -> int:
    """0 after a clean stop; 1 when the broker or the runtime directory is unavailable."""
    children = config.environment()
    broker = None
    if not config.mqtt_broker:
        broker = EmbeddedBroker()
        try:
            broker.start()
        except EmbeddedBrokerError as exc:
            log.error("%s", exc)
            return 1
        children.update(MQTT_BROKER=broker.host, MQTT_PORT=str(broker.port))
    children["ROUTEMQ_RUNTIME_DIR"] = config.runtime_dir
    backend = ProcessBackend({**os.environ, **children})
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
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        master.close()
        backend.stop_all(config.drain_timeout + UNSUBACK_WAIT + STOP_MARGIN)
        if master.claimed:
            try:
                os.unlink(master.paths.plan)  # the fleet is gone; no worker should wait for it
            except FileNotFoundError:
                pass
        if broker is not None:
            broker.stop()
        log.info("stopped")
