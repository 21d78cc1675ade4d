"""The benchmark application: one shared route whose handler only tallies what it got.

The tally is kept in memory (a counter, the first and last receive times and each message's
`seq` in a compact array) and written once, at exit, to $BENCH_OUT/routemq-<instance>.json,
so the measurement pays no per-message I/O. The bench reads the worker's own health file to
know when everything arrived, then stops the worker with SIGTERM (a clean exit runs atexit).
"""
import atexit
import json
import os
import time
from array import array

from routemq.router import Router

OUT = os.environ.get("BENCH_OUT", "/tmp")
INSTANCE = os.environ.get("BENCH_INSTANCE", str(os.getpid()))
QOS = int(os.environ.get("BENCH_QOS", "0"))

_seqs = array("q")
_times = [0.0, 0.0]  # first and last receive time (time.monotonic: one clock machine-wide)

router = Router()


@router.on("bench/{device}", shared=True, worker_count=4, qos=QOS)
async def consume(device, payload, client):
    now = time.monotonic()
    if not _seqs:
        _times[0] = now
    _times[1] = now
    _seqs.append(payload["seq"])


def _write_tally() -> None:
    tally = {"count": len(_seqs), "first": _times[0], "last": _times[1],
             "seqs": _seqs.tolist()}
    with open(os.path.join(OUT, f"routemq-{INSTANCE}.json"), "w") as f:
        json.dump(tally, f)


atexit.register(_write_tally)
