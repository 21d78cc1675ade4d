"""Where a subscriber spends its CPU: py-spy on one worker while it takes 100,000 messages.

    python -m bench.profile [--kind routemq|bare] [--qos 1] [--messages 100000]

Starts a private broker, one subscriber of the kind, attaches `py-spy record` (from
.venvs/bench, installed by scripts/bench.sh --profile), publishes, and prints the
functions with the most samples, self and inclusive, over all threads (idle time excluded).
The raw collapsed stacks stay in bench/results/profile-<kind>-q<qos>.txt.
"""
from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.e2e import Subscribers, payload_lines, publish
from tests.integration.broker import Mosquitto

ROOT = Path(__file__).resolve().parents[1]
PY_SPY = ROOT / ".venvs" / "bench" / "bin" / "py-spy"


def summarize(collapsed: Path, top: int = 25) -> str:
    """Self and inclusive sample counts per function from py-spy's collapsed stacks."""
    self_n: collections.Counter[str] = collections.Counter()
    incl_n: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1]
                  + ")" if " (" in f else f for f in stack.split(";")]
        self_n[frames[-1]] += n
        for f in set(frames):
            incl_n[f] += n
    out = [f"{total} samples"]
    for title, counter in (("self", self_n), ("inclusive", incl_n)):
        out.append(f"-- top {top} by {title} time")
        out += [f"{n / total * 100:6.1f}%  {name}" for name, n in counter.most_common(top)]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", default="routemq", choices=("routemq", "bare"))
    ap.add_argument("--qos", type=int, default=1)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    args = ap.parse_args()
    if not PY_SPY.exists():
        raise SystemExit(f"{PY_SPY} missing: run scripts/bench.sh --profile once")
    work = Path(tempfile.mkdtemp(prefix="routemq-profile-"))
    out = ROOT / "bench" / "results" / f"profile-{args.kind}-q{args.qos}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)  # a fresh clone has no results/ yet
    broker = Mosquitto(work / "broker", persistence=False, max_queued_messages=0).start()
    subs = Subscribers(args.kind, 1, args.qos, broker.port, work, "prof")
    try:
        subs.start()
        subs.wait_ready()
        spy = subprocess.Popen([str(PY_SPY), "record", "-p", str(subs.pids()[0]), "-r",
                                str(args.rate), "--threads", "-f", "raw", "-o", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        publish(broker.port, args.qos, payload_lines(args.messages))
        while subs.count() < args.messages:
            time.sleep(0.1)
        spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
        spy.wait(30)
    finally:
        subs.stop()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(summarize(out))


if __name__ == "__main__":
    main()
