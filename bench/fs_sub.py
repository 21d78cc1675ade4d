"""The peer: a FastStream 0.7.8 MQTT subscriber written as FastStream's documentation does.

    .venvs/bench/bin/python -m bench.fs_sub --port P --filter '$share/g/bench/+' --qos 1 \\
        --out DIR --id N [--log-level INFO]

An `MQTTBroker` on 127.0.0.1:P with FastStream's defaults (MQTT 5, its ack policy: QoS 1
acknowledged after the handler), one `@broker.subscriber(topic, qos=, shared=group)` whose
handler takes the payload decoded from JSON (annotated `dict`, so FastStream decodes and
validates it) and counts it, run by `FastStream(broker).run()`, which stops on SIGTERM.
Its per-message log lines are FastStream's default (INFO); `--log-level DEBUG` emits them
at DEBUG, i.e. silences them, to see what they cost.

It writes the same status and tally files as bench/bare_sub.py (its Counter; that module
imports paho only when it runs a paho client, and this venv has none).
"""
from __future__ import annotations

import asyncio
import logging

from faststream import FastStream
from faststream.mqtt import MQTTBroker, QoS

from bench.bare_sub import Counter, arguments


def split_shared(topic_filter: str) -> tuple[str | None, str]:
    """`$share/<group>/<topic>` -> (group, topic), as FastStream takes them apart;
    a filter without `$share/` -> (None, filter)."""
    if topic_filter.startswith("$share/"):
        group, _, topic = topic_filter[len("$share/"):].partition("/")
        return group, topic
    return None, topic_filter


def build(counter: Counter, port: int, topic_filter: str, qos: int,
          log_level: int = logging.INFO) -> FastStream:
    """The application: one broker, one shared subscriber, readiness after start-up (the
    subscription is acknowledged by then)."""
    group, topic = split_shared(topic_filter)
    broker = MQTTBroker(f"mqtt://127.0.0.1:{port}", log_level=log_level)

    @broker.subscriber(topic, qos=QoS(qos), shared=group)
    async def consume(body: dict) -> None:
        counter.tick()

    def ready() -> None:
        counter.ready = True

    return FastStream(broker, after_startup=[ready])


def main() -> None:
    ap = arguments(__doc__.split("\n\n")[0])
    ap.add_argument("--log-level", default="INFO",
                    help="level of FastStream's per-message log lines (default: its INFO)")
    args = ap.parse_args()
    counter = Counter(args.out, args.id)
    app = build(counter, args.port, args.filter, args.qos,
                getattr(logging, args.log_level.upper()))
    counter.report_in_background()
    asyncio.run(app.run())
    counter.write_tally()


if __name__ == "__main__":
    main()
