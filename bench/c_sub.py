"""The ceiling: `mosquitto_sub`, the C client of libmosquitto, as a counting subscriber.

    python -m bench.c_sub --port P --filter '$share/g/bench/+' --qos 1 --out DIR --id N

No Python client gets more than what the broker and the publisher leave to a C one on the
same machine, so this kind shows how far the load lets any subscriber go. This wrapper
starts `mosquitto_sub -V 5 -F '%t %p'` and reads its output in large chunks, counting the
lines of the bench's topic with the time of the chunk (bench.bare_sub.Counter's status and
tally files). mosquitto_sub's output is fully buffered into a pipe (as fast as it gets), so
its SUBACK cannot be seen: it also subscribes to a probe topic, and the wrapper publishes an
8 KiB probe there (which flushes the buffer) until one comes back. Its CPU per message is
the wrapper's alone (mosquitto_sub is its child), so the tables show none.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

from bench.bare_sub import Counter, arguments
from bench.e2e import TOPIC

CHUNK = 1 << 20
PROBE_BYTES = 8192  # more than stdio's buffer: printing it writes the buffer out


class Tally:
    """Counts the message lines of a stream read in chunks (a line may span two), and
    notes the probe."""

    def __init__(self, counter: Counter, marker: bytes, probe: bytes) -> None:
        self.counter = counter
        self.marker, self.probe = marker, probe
        self.tail = b""

    def feed(self, chunk: bytes, now: float) -> None:
        """`chunk` read at `now` (time.monotonic)."""
        data = self.tail + chunk
        if not self.counter.ready and self.probe in data:
            self.counter.ready = True
        # The last bytes may hold the start of a marker cut by the chunk: they are kept and
        # read again with the next one, less the markers wholly inside them (counted now).
        n = data.count(self.marker) - self.tail.count(self.marker)
        self.tail = data[-(max(len(self.marker), len(self.probe)) - 1):]
        if n:
            c = self.counter
            if not c.count:
                c.first = now
            c.last = now
            c.count += n


def _probe_until_ready(port: int, topic: str, counter: Counter) -> None:
    while not counter.ready:
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", topic,
                        "-s"], input=b"p" * PROBE_BYTES, stderr=subprocess.DEVNULL,
                       check=False)
        time.sleep(0.2)


def main() -> None:
    args = arguments(__doc__.split("\n\n")[0]).parse_args()
    counter = Counter(args.out, args.id)
    probe = f"bench-probe/{args.id}-{os.getpid()}"
    child = subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(args.port), "-t", args.filter,
         "-t", probe, "-q", str(args.qos), "-V", "5", "-F", "%t %p",
         "-i", f"c-{args.id}-{os.getpid()}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    counter.report_in_background()
    threading.Thread(target=_probe_until_ready, args=(args.port, probe, counter),
                     daemon=True).start()
    tally = Tally(counter, f"\n{TOPIC} ".encode(), f"{probe} ".encode())
    fd = child.stdout.fileno()  # type: ignore[union-attr]
    while True:
        try:
            chunk = os.read(fd, CHUNK)
        except InterruptedError:
            continue
        if not chunk:
            break
        tally.feed(chunk, time.monotonic())
    child.wait()
    counter.write_tally()


if __name__ == "__main__":
    main()
