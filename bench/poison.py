"""What poison detection costs a worker (routemq.poison), per message and per harvest.

    python bench/poison.py        (or python -m bench.poison)

Per message (the budget is 2 µs for begin+end, of < 30 µs for a whole message):
- begin+end around each message, for payloads of 16 B to 64 KiB (hashing grows with the size);
- deaths()/poisonous() with no suspect on the host (one truth test) and with 100 suspects
  (the message is hashed and looked up).
Per harvest (the worker's 1 s ticker and each DUP delivery):
- nothing dead, beside 8 live journals (a listdir, a stat of the tally, a failed flock each);
- one dead journal holding 4 messages (the tally read, rewritten and renamed under its lock).

The machine is shared and noisy, so each figure is the fastest of CHUNKS slices (timeit's
rule: noise only ever adds time), median of 3 runs.
"""
from __future__ import annotations

import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script too

from routemq.poison import Quarantine, message_key  # noqa: E402

TOPIC = "sensors/dev-42/data"
SIZES = (16, 200, 4096, 65536)
CHUNKS = 10
RUNS = 3


def fastest_ns(step: Callable[[], None], per_chunk: int) -> float:
    """Nanoseconds per call of `step`: the fastest of CHUNKS slices of `per_chunk` calls."""
    best = float("inf")
    for _ in range(CHUNKS):
        start = time.perf_counter_ns()
        for _ in range(per_chunk):
            step()
        best = min(best, (time.perf_counter_ns() - start) / per_chunk)
    return best


def median_ns(step: Callable[[], None], per_chunk: int) -> float:
    return statistics.median(fastest_ns(step, per_chunk) for _ in range(RUNS))


def per_message(q: Quarantine) -> list[tuple[str, float]]:
    rows = []
    for size in SIZES:
        payload = os.urandom(size)
        begin, end = q.begin, q.end

        def step() -> None:
            end(begin(TOPIC, payload))
        rows.append((f"begin+end, payload {size} B", median_ns(step, 20_000 if size < 8192
                                                               else 1_000)))
    payload = b'{"seq": 1, "temperature": 21.5}'
    rows.append(("deaths(), no suspect", median_ns(lambda: q.deaths(TOPIC, payload), 50_000)))
    rows.append(("poisonous(), no suspect",
                 median_ns(lambda: q.poisonous(TOPIC, payload), 50_000)))
    q._tally = {message_key(TOPIC, str(i).encode()): 1 for i in range(100)}
    rows.append(("deaths(), 100 suspects", median_ns(lambda: q.deaths(TOPIC, payload), 20_000)))
    q._tally = {}
    return rows


def per_harvest(directory: Path, q: Quarantine) -> list[tuple[str, float]]:
    others = [Quarantine(directory, owner=f"live{i}").__enter__() for i in range(8)]
    try:
        rows = [("harvest(), nothing dead, 8 live journals", median_ns(q.harvest, 200))]
        keys = b"".join(message_key(TOPIC, str(i).encode()) for i in range(4)) + bytes(4096)
        times = []
        for i in range(60):
            (directory / f"dead-{i}.slots").write_bytes(keys)
            start = time.perf_counter_ns()
            assert q.harvest() == 1
            times.append(time.perf_counter_ns() - start)
        rows.append(("harvest(), one dead journal (tally rewritten)", min(times)))
        return rows
    finally:
        for other in others:
            other.close()


def main() -> None:
    logging.getLogger("routemq.poison").setLevel(logging.ERROR)  # one warning per harvest
    with tempfile.TemporaryDirectory(prefix="bench-poison-") as tmp:
        with Quarantine(tmp, owner="bench") as q:
            message_rows = per_message(q)
            harvest_rows = per_harvest(Path(tmp), q)
    print(f"routemq.poison on Python {sys.version.split()[0]} "
          f"(fastest of {CHUNKS} slices, median of {RUNS} runs)")
    for label, ns in message_rows:
        print(f"  {label:<48} {ns / 1000:8.2f} µs")
    for label, ns in harvest_rows:
        print(f"  {label:<48} {ns / 1000:8.1f} µs")


if __name__ == "__main__":
    main()
