"""The baselines: a bare paho-mqtt subscriber in two styles, and the status/tally files
every counting subscriber of the bench writes (bench/fs_sub.py speaks them too).

    python -m bench.bare_sub --port P --filter '$share/g/bench/+' --qos 1 --out DIR --id N
                             [--style mqtt5|defaults]

--style mqtt5 (the default; kind "bare"): the ceiling. Configured like a RouteMQ worker where
it matters for speed (MQTT 5, the same Receive Maximum, the same QoS), with paho's fastest
usage: `loop_forever` in the main thread, paho's automatic acknowledgement, `on_message` only
counts (no decoding).

--style defaults (kind "paho"): the subscriber a user writes when left to paho's defaults:
`Client(CallbackAPIVersion.VERSION2)` (`Client()` on paho 1.6), MQTT 3.1.1,
`connect(host, port)`, `subscribe(filter, qos)` in on_connect, `loop_forever()`, and
`on_message` doing `json.loads(msg.payload)`.

Files: DIR/bare-N.status ({"ready", "count"}) every 0.2 s from a side thread, and
DIR/bare-N.json ({"count", "first", "last"}, monotonic receive times) at exit, after SIGTERM.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from typing import Any

STYLES = ("mqtt5", "defaults")


class Counter:
    """What a counting subscriber records: messages, first and last receive time, readiness."""

    def __init__(self, out: str, ident: str) -> None:
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.ready = False
        self._status = os.path.join(out, f"bare-{ident}.status")
        self._tally = os.path.join(out, f"bare-{ident}.json")

    def tick(self) -> None:
        """One message received (the only per-message cost the bench adds)."""
        now = time.monotonic()
        if not self.count:
            self.first = now
        self.last = now
        self.count += 1

    def on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        self.tick()

    def report_in_background(self) -> None:
        """Write the status file a few times a second from a daemon thread, never per
        message, so the subscriber pays no I/O while it counts."""
        def loop() -> None:
            while True:
                _write(self._status, {"ready": self.ready, "count": self.count})
                time.sleep(0.2)

        threading.Thread(target=loop, daemon=True).start()

    def write_tally(self) -> None:
        _write(self._tally, {"count": self.count, "first": self.first, "last": self.last})


def _write(path: str, data: dict[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)  # the bench never reads a half-written file


def arguments(description: str) -> argparse.ArgumentParser:
    """The command line every counting subscriber takes."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--filter", required=True, help="e.g. $share/<group>/bench/+")
    ap.add_argument("--qos", type=int, default=0)
    ap.add_argument("--out", required=True, help="directory for the status and tally files")
    ap.add_argument("--id", required=True)
    return ap


def _subscribe_on_connect(client: Any, counter: Counter, args: argparse.Namespace) -> None:
    """Subscribe in on_connect (as paho's examples do); ready once the broker acknowledged.
    Both paho callback APIs (1.6's and 2's VERSION2) fit these signatures."""
    def on_connect(c: Any, *_: Any) -> None:
        c.subscribe(args.filter, args.qos)

    def on_subscribe(c: Any, *_: Any) -> None:
        counter.ready = True

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe


def _mqtt5_client(counter: Counter, args: argparse.Namespace) -> Any:
    # paho is imported here, not at the top: bench/fs_sub.py imports this module's Counter
    # from .venvs/bench, which has no paho.
    import paho.mqtt.client as paho
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    client_id = f"bare-{args.id}-{os.getpid()}"
    if hasattr(paho, "CallbackAPIVersion"):
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=paho.MQTTv5)
    else:
        client = paho.Client(client_id=client_id, protocol=paho.MQTTv5)
    client.on_message = counter.on_message
    _subscribe_on_connect(client, counter, args)
    props = Properties(PacketTypes.CONNECT)
    props.ReceiveMaximum = args.receive_maximum
    client.connect("127.0.0.1", args.port, 60, clean_start=True, properties=props)
    return client


def _defaults_client(counter: Counter, args: argparse.Namespace) -> Any:
    import paho.mqtt.client as paho

    client = (paho.Client(paho.CallbackAPIVersion.VERSION2)
              if hasattr(paho, "CallbackAPIVersion") else paho.Client())
    tick = counter.tick

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        json.loads(msg.payload)  # what every real handler does first
        tick()

    client.on_message = on_message
    _subscribe_on_connect(client, counter, args)
    client.connect("127.0.0.1", args.port)
    return client


def main() -> None:
    ap = arguments(__doc__.split("\n\n")[0])
    ap.add_argument("--style", choices=STYLES, default="mqtt5")
    ap.add_argument("--receive-maximum", type=int, default=64, help="--style mqtt5 only")
    args = ap.parse_args()

    counter = Counter(args.out, args.id)
    client = (_mqtt5_client if args.style == "mqtt5" else _defaults_client)(counter, args)
    counter.report_in_background()
    signal.signal(signal.SIGTERM, lambda *_: client.disconnect())
    client.loop_forever()
    counter.write_tally()


if __name__ == "__main__":
    main()
