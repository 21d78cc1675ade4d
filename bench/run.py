"""`make bench`: every benchmark (issues 6 and 14) in one run, a table on stdout and a JSON file.

    python -m bench.run [--messages 100000] [--repeats 3] [--workers 1,2,4] [--qos 0,1]
                        [--kinds routemq,paho,bare,faststream,c] [--skip-dispatch]
                        [--out FILE] [--publish]

Results go to bench/results/latest.json and latest.md (not committed); --publish also
copies them to bench/results/published.json and .md, the run the README shows.

Order: the in-process dispatch benchmark first (nothing else of ours running), then the
end-to-end matrix on one private mosquitto, repeated; within a repeat each (workers, QoS)
pair runs every kind of subscriber (bench/e2e.py) back to back, and the kind that goes first
rotates from one pair to the next, so no kind always meets a warm (or a cold) machine.
A kind whose run fails is reported in its cells; the others still run.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from bench import dispatch, e2e, report
from tests.integration.broker import Mosquitto

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--qos", default="0,1")
    ap.add_argument("--kinds", default=",".join(e2e.KINDS),
                    help="subscriber kinds to run, comma-separated (default: all)")
    ap.add_argument("--dispatch-messages", type=int, default=20_000)
    ap.add_argument("--skip-dispatch", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "latest.json"))
    ap.add_argument("--publish", action="store_true",
                    help="also write bench/results/published.{json,md} (shown in the README)")
    args = ap.parse_args()
    kinds = list(dict.fromkeys(k for k in args.kinds.split(",") if k))  # in order, once
    unknown = sorted(set(kinds) - set(e2e.KINDS))
    if unknown or not kinds:
        ap.error(f"--kinds: unknown {', '.join(unknown) or '(none given)'}; "
                 f"known: {','.join(e2e.KINDS)}")
    started = time.monotonic()
    result = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": report.machine(), "load_before": report.load()}

    result["dispatch"] = []
    if not args.skip_dispatch:
        print("dispatch benchmark ...", flush=True)
        result["dispatch"] = dispatch.run(args.dispatch_messages)

    workers = [int(w) for w in args.workers.split(",")]
    qoses = [int(q) for q in args.qos.split(",")]
    lines = e2e.payload_lines(args.messages)
    work = Path(tempfile.mkdtemp(prefix="routemq-bench-"))
    broker = Mosquitto(work / "broker", persistence=False, max_queued_messages=0).start()
    runs = []
    try:
        n = 0
        pairs = [(w, qos) for w in workers for qos in qoses]
        for repeat in range(args.repeats):
            for p, (w, qos) in enumerate(pairs):
                # Rotate from pair to pair, and for one pair from repeat to repeat.
                first = (repeat + p) % len(kinds)
                for kind in kinds[first:] + kinds[:first]:
                    n += 1
                    r = e2e.run_once(kind, w, qos, lines, broker.port, broker.pid, work,
                                     f"r{n}")
                    runs.append({"repeat": repeat, **r.as_dict()})
                    print(f"  [{repeat + 1}/{args.repeats}] {kind:10} workers={w} qos={qos}: "
                          f"{r.rate:8.0f} msg/s, {r.cpu_us_per_msg:6.1f} µs CPU/msg, "
                          f"lost {r.lost}, dup {r.duplicates} {r.error}", flush=True)
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    result["e2e"] = {"messages": args.messages, "payload_bytes": len(lines[0]),
                     "repeats": args.repeats, "kinds": kinds, "runs": runs,
                     "summary": report.summarize_e2e(runs)}
    result["memory"] = report.summarize_memory(runs)
    result["load_after"] = report.load()
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    text = report.tables(result)
    out.with_suffix(".md").write_text(text + "\n")
    print()
    print(text)
    print(f"\nwritten: {out} and {out.with_suffix('.md')}")
    if args.publish:
        published = ROOT / "bench" / "results" / "published.json"
        shutil.copyfile(out, published)
        shutil.copyfile(out.with_suffix(".md"), published.with_suffix(".md"))
        print(f"published: {published} and {published.with_suffix('.md')}")
    return 1 if any(r["error"] for r in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
