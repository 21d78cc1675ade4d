"""The ceiling: a bare paho-mqtt subscriber that only counts (no routing, no decoding).

    python -m bench.bare_sub --port P --filter '$share/g/bench/+' --qos 1 --out DIR --id N

Configured like a RouteMQ worker where it matters for speed (MQTT 5, the same Receive
Maximum, the same QoS), but with paho's fastest usage: `loop_forever` in the main thread and
paho's automatic acknowledgement. It writes DIR/bare-N.status ({"ready", "count"}) every
0.2 s from a side thread, and DIR/bare-N.json ({"count", "first", "last"}) on SIGTERM.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


class Counter:
    def __init__(self) -> None:
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.ready = False

    def on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        now = time.monotonic()
        if not self.count:
            self.first = now
        self.last = now
        self.count += 1


def _write(path: str, data: dict[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--filter", required=True)
    ap.add_argument("--qos", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--id", required=True)
    ap.add_argument("--receive-maximum", type=int, default=64)
    args = ap.parse_args()

    counter = Counter()
    if hasattr(paho, "CallbackAPIVersion"):
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"bare-{args.id}-"
                             f"{os.getpid()}", protocol=paho.MQTTv5)
    else:
        client = paho.Client(client_id=f"bare-{args.id}-{os.getpid()}", protocol=paho.MQTTv5)

    def on_connect(c: Any, *_: Any) -> None:
        c.subscribe(args.filter, args.qos)

    def on_subscribe(c: Any, *_: Any) -> None:
        counter.ready = True

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = counter.on_message
    props = Properties(PacketTypes.CONNECT)
    props.ReceiveMaximum = args.receive_maximum
    client.connect("127.0.0.1", args.port, 60, clean_start=True, properties=props)

    status = os.path.join(args.out, f"bare-{args.id}.status")

    def report() -> None:  # side thread: a few writes per second, never per message
        while True:
            _write(status, {"ready": counter.ready, "count": counter.count})
            time.sleep(0.2)

    threading.Thread(target=report, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: client.disconnect())
    client.loop_forever()
    _write(os.path.join(args.out, f"bare-{args.id}.json"),
           {"count": counter.count, "first": counter.first, "last": counter.last})


if __name__ == "__main__":
    main()
