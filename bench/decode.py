"""PUBLISH decoding cost: routemq.packets against paho's own handling of the same bytes.

Each case is a burst of QoS 1 PUBLISH packets (a ~100-byte JSON payload, topic
`sensors/dev-<n>/data`) already received, as the worker finds them after one read of up to
64 KiB:

- `packets`: `Splitter.feed()` of the 64 KiB chunks, then `decode_publish()` of every packet;
- `paho`: a paho client whose socket hands out the same bytes from memory (no system call,
  as with the worker's read-ahead) reads them packet by packet with `_packet_read()` (what
  the worker's loop driver calls): framing, `_handle_publish`, the `MQTTMessage` (and its
  `Properties`), the `on_message` callback (an empty one). Its PUBACK is left out
  (`_send_puback` stubbed): writing acks is not decoding.

Cases: MQTT 5 with one subscription identifier (the worker's usual delivery), MQTT 3.1.1,
and MQTT 5 with a request's properties (response topic, correlation data, content type,
two user properties, subscription identifier).

The machine is shared and noisy, so each run times CHUNKS slices of its packets and keeps the
fastest slice (noise only ever adds time); the figure is the median of REPEATS runs, taken in
turns over all cases. Run: `python3 -m bench.decode [--messages N]`.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from typing import Any, Callable

import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from routemq.packets import Splitter, TopicAliases, decode_publish
from tests.mqtt_wire import vbi

READ = 65536  # bytes per socket read, as the worker's read-ahead
CHUNKS = 10
REPEATS = 5


def _payload(seq: int) -> bytes:
    return json.dumps({"seq": seq, "device": "dev-42", "temperature": 21.5,
                       "humidity": 40.25, "ts": 1764280000.125, "status": "ok"},
                      separators=(",", ":")).encode()


def _properties(kind: str) -> bytes:
    props = Properties(PacketTypes.PUBLISH)
    props.SubscriptionIdentifier = 7
    if kind == "request":
        props.ResponseTopic = "replies/dev-42"
        props.CorrelationData = b"req-000042"
        props.ContentType = "application/json"
        props.UserProperty = [("tenant", "acme"), ("trace", "4bf92f3577b34da6")]
    return bytes(props.pack())


def stream(kind: str, messages: int) -> bytes:
    """`messages` QoS 1 PUBLISH packets for a client speaking `kind`'s protocol."""
    props = b"" if kind == "3.1.1" else _properties(kind)
    out = []
    for i in range(messages):
        topic = f"sensors/dev-{i % 100}/data".encode()
        body = (len(topic).to_bytes(2, "big") + topic + (i % 65535 + 1).to_bytes(2, "big")
                + props + _payload(i))
        out.append(b"\x32" + vbi(len(body)) + body)
    return b"".join(out)


def protocol_of(kind: str) -> int:
    return 4 if kind == "3.1.1" else 5


class _MemorySock:
    """A socket whose recv() hands out `data` from memory; BlockingIOError at its end."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def recv(self, bufsize: int) -> bytes:
        if self.pos >= len(self.data):
            raise BlockingIOError
        start, self.pos = self.pos, self.pos + bufsize
        return self.data[start:self.pos]

    def close(self) -> None:
        pass


def paho_reader(kind: str) -> Callable[[bytes], int]:
    kwargs: dict[str, Any] = {"client_id": "bench-decode",
                              "protocol": mqtt.MQTTv5 if kind != "3.1.1" else mqtt.MQTTv311}
    if hasattr(mqtt, "CallbackAPIVersion"):
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
    else:
        client = mqtt.Client(**kwargs)
    got = [0]

    def on_message(c: Any, u: Any, m: Any) -> None:
        got[0] += 1

    client.on_message = on_message
    client._send_puback = lambda mid: mqtt.MQTT_ERR_SUCCESS  # decoding only, no writes

    def read(data: bytes) -> int:
        got[0] = 0
        client._sock = _MemorySock(data)
        packet_read = client._packet_read
        while packet_read() == mqtt.MQTT_ERR_SUCCESS:
            pass
        return got[0]
    return read


def packets_reader(kind: str) -> Callable[[bytes], int]:
    protocol = protocol_of(kind)
    splitter = Splitter(protocol=protocol)
    aliases = TopicAliases(0)

    def read(data: bytes) -> int:
        n = 0
        for at in range(0, len(data), READ):
            splitter.feed(data[at:at + READ])
            for first, body in splitter:
                decode_publish(first, body, protocol, aliases)
                n += 1
        return n
    return read


def _measure(read: Callable[[bytes], int], slices: list[bytes], per_slice: int) -> float:
    gc.collect()
    best = float("inf")
    for data in slices:
        started = time.perf_counter()
        got = read(data)
        best = min(best, (time.perf_counter() - started) / per_slice)
        assert got == per_slice, (got, per_slice)
    return best * 1e6


def run(messages: int = 20_000, repeats: int = REPEATS) -> list[dict[str, Any]]:
    """Median µs per PUBLISH for each (case, decoder)."""
    per_slice = messages // CHUNKS
    cases = []
    for kind in ("5+subid", "3.1.1", "request"):
        raw = stream(kind, per_slice)
        slices = [raw] * CHUNKS  # the same bytes each time: a slice is packets, not a file
        for name, make in (("paho", paho_reader), ("packets", packets_reader)):
            cases.append(((kind, name), make(kind), slices))
    times: dict[tuple[str, str], list[float]] = {key: [] for key, *_ in cases}
    for _ in range(repeats):
        for key, read, slices in cases:
            times[key].append(_measure(read, slices, per_slice))
    return [{"case": kind, "decoder": name, "us_per_publish": round(statistics.median(t), 3),
             "runs": [round(x, 3) for x in t]} for (kind, name), t in times.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=REPEATS)
    args = ap.parse_args()
    rows = run(args.messages, args.repeats)
    print(f"paho-mqtt {paho.mqtt.__version__}, {args.messages} PUBLISH per run, "
          f"median of {args.repeats} runs (fastest of {CHUNKS} slices each)")
    print(f"{'case':<10} {'paho µs':>9} {'packets µs':>11} {'speed-up':>9}")
    by = {(r["case"], r["decoder"]): r["us_per_publish"] for r in rows}
    for kind in ("5+subid", "3.1.1", "request"):
        theirs, ours = by[(kind, "paho")], by[(kind, "packets")]
        print(f"{kind:<10} {theirs:>9.2f} {ours:>11.2f} {theirs / ours:>8.1f}x")


if __name__ == "__main__":
    main()
