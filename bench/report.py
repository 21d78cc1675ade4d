"""Summaries (medians over repeats), the printed tables and the machine description.

    python -m bench.report [FILE]   print the tables of a results file again
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
from pathlib import Path
from typing import Any

from bench.e2e import FS_PYTHON

ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), "")
    except OSError:
        pass
    mem_kb = 0
    try:
        with open("/proc/meminfo") as f:
            mem_kb = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        import paho.mqtt as paho_mqtt
        paho_version = getattr(paho_mqtt, "__version__", "?")
    except ImportError:
        paho_version = "?"
    mosq = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout
    return {
        "cpu": model, "cores": os.cpu_count(), "memory_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(), "python": platform.python_version(),
        "paho_mqtt": paho_version,
        "mosquitto": (mosq.splitlines() or ["?"])[0].replace("mosquitto version ", ""),
        "faststream": _faststream_version(),
    }


def _faststream_version() -> str:
    """FastStream and zmqtt as installed in the bench venv ("" when it is missing)."""
    if not FS_PYTHON.exists():
        return ""
    probe = subprocess.run(
        [str(FS_PYTHON), "-c", "from importlib.metadata import version as v; "
         "print(v('faststream'), '(zmqtt', v('zmqtt') + ')')"],
        capture_output=True, text=True)
    return probe.stdout.strip() if probe.returncode == 0 else ""


def load() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


# The subscriber kinds (bench/e2e.py) in table order, and their names in the tables.
LABELS = {"routemq": "RouteMQ", "paho": "paho defaults", "bare": "bare MQTT 5",
          "faststream": "FastStream", "c": "mosquitto_sub (C)"}
# Kinds whose CPU per message has a column (bare MQTT 5's stays in the JSON, for width).
CPU_COLUMN = ("routemq", "paho", "faststream")


def _kind_order(kind: str) -> tuple[int, str]:
    order = list(LABELS)
    return (order.index(kind) if kind in order else len(order), kind)


def _ok(run: dict[str, Any]) -> bool:
    return not run["error"] and run["rate"] > 0


def _one_line(error: str) -> str:
    """An error for a table's footnote: its first line and, for a subscriber's log tail,
    its last (the exception)."""
    lines = [line for line in error.strip().splitlines() if line.strip()] or ["?"]
    text = lines[0] if len(lines) == 1 else f"{lines[0]} … {lines[-1].strip()}"
    return text[:400]


def summarize_e2e(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (workers, qos) with, per kind that ran: medians over the runs that
    succeeded (rate, CPU µs/msg), loss and duplicates summed, the errors, and for each kind
    but RouteMQ the ratio RouteMQ/kind, the median of per-repeat ratios (each repeat runs
    every kind back to back on the same broker)."""
    rows = []
    for workers, qos in sorted({(r["workers"], r["qos"]) for r in runs}):
        mine = [r for r in runs if (r["workers"], r["qos"]) == (workers, qos)]
        routemq_rate = {r["repeat"]: r["rate"] for r in mine
                        if r["kind"] == "routemq" and _ok(r)}
        kinds: dict[str, dict[str, Any]] = {}
        for kind in sorted({r["kind"] for r in mine}, key=_kind_order):
            of = [r for r in mine if r["kind"] == kind]
            ok = [r for r in of if _ok(r)]
            dups = [r["duplicates"] for r in of if r["duplicates"] is not None]
            summary: dict[str, Any] = {
                "runs": len(of), "ok": len(ok),
                "rate": round(_median([r["rate"] for r in ok])),
                "cpu_us": round(_median([r["cpu_us_per_msg"] for r in ok]), 1),
                "lost": sum(r["lost"] or 0 for r in ok),
                "duplicates": sum(dups) if dups else None,
                "errors": [f"repeat {r['repeat'] + 1}: "
                           f"{_one_line(r['error'] or 'received nothing')}"
                           for r in of if not _ok(r)],
            }
            if kind != "routemq":
                ratios = [routemq_rate[r["repeat"]] / r["rate"] for r in ok
                          if r["repeat"] in routemq_rate]
                summary["ratio"] = round(_median(ratios), 2) if ratios else None
            kinds[kind] = summary
        rows.append({"workers": workers, "qos": qos, "kinds": kinds})
    return rows


def summarize_memory(runs: list[dict[str, Any]]) -> dict[str, float]:
    rq = [r for r in runs if r["kind"] == "routemq" and not r["error"]]
    idle = [x for r in rq for x in r["rss_idle"]]
    after = [x for r in rq if r["workers"] == 1 for x in r["rss_after"]]
    mb = 1024 * 1024
    return {"idle_worker_rss_mb": round(_median(idle) / mb, 1),
            "worker_after_100k_rss_mb": round(_median(after) / mb, 1)}


def _table(header: list[str], rows: list[list[Any]]) -> str:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def _e2e_table(rows: list[dict[str, Any]]) -> str:
    """The end-to-end table: the columns of the kinds that ran; "error" in the cells of a
    kind none of whose runs succeeded (the reasons are listed under the table)."""
    kinds = sorted({k for row in rows for k in row["kinds"]}, key=_kind_order)
    with_routemq = "routemq" in kinds
    header = ["workers", "QoS"]
    for kind in kinds:
        name = LABELS.get(kind, kind)
        header.append(f"{name} msg/s")
        if kind in CPU_COLUMN:
            header.append(f"{name} CPU µs/msg")
        if kind != "routemq" and with_routemq:
            header.append(f"RouteMQ / {name}")
    if with_routemq:
        header += ["lost", "dup"]
    body = []
    for row in rows:
        cells: list[Any] = [row["workers"], row["qos"]]
        for kind in kinds:
            s = row["kinds"].get(kind)
            failed = s is None or not s["ok"]
            rate = "error" if failed else f"{s['rate']:,}"
            if not failed and kind != "routemq" and s["lost"]:
                rate += f" (lost {s['lost']:,})"  # a baseline's shortfall, next to its rate
            cells.append(rate)
            if kind in CPU_COLUMN:
                cells.append("error" if failed else s["cpu_us"])
            if kind != "routemq" and with_routemq:
                ratio = None if s is None else s["ratio"]
                cells.append("error" if ratio is None else f"{ratio:.2f}")
        if with_routemq:
            rq = row["kinds"].get("routemq")
            ok = rq is not None and rq["ok"]
            cells += [rq["lost"] if ok else "error",
                      rq["duplicates"] if ok and rq["duplicates"] is not None else "error"]
        body.append(cells)
    out = [_table(header, body)]
    errors = [f"- {LABELS.get(k, k)}, {row['workers']} worker(s), QoS {row['qos']}, {e}"
              for row in rows for k, s in row["kinds"].items() for e in s["errors"]]
    if errors:
        out += ["", "Failed runs:", *errors]
    return "\n".join(out)


def tables(result: dict[str, Any]) -> str:
    """The results as Markdown tables (printed, and pasted into the README). The end-to-end
    summary is recomputed from the runs, so results written before a column existed read."""
    m = result["machine"]
    e2e = result["e2e"]
    ran = {r["kind"] for r in e2e["runs"]}
    ran_fs, ran_routemq = "faststream" in ran, "routemq" in ran
    fs = f", FastStream {m['faststream']}" if ran_fs and m.get("faststream") else ""
    out = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Python {m['python']}, paho-mqtt {m['paho_mqtt']}, mosquitto {m['mosquitto']}{fs}; "
        f"load average {result['load_before']} before, {result['load_after']} after; "
        f"`make bench` took {result['wall_seconds']:.0f} s.",
        "",
        f"End-to-end: {e2e['messages']:,} JSON messages of {e2e['payload_bytes']} "
        f"bytes from `mosquitto_pub -l` through one shared route, first to last received "
        f"(median of {e2e['repeats']})"
        + ("; RouteMQ / X is the median of the per-repeat ratios of msg/s:" if ran_routemq
           else ":"),
        "",
        _e2e_table(summarize_e2e(e2e["runs"])),
    ]
    if result["dispatch"]:
        out += [
            "",
            "Dispatch in process, µs per message (median of 3; lookup by topic tree, and by "
            "MQTT 5 subscription identifier):",
            "",
        ]
        d = {(r["routes"], r["middleware"], r["case"]): r["us_per_msg"]
             for r in result["dispatch"]}
        routes = sorted({r["routes"] for r in result["dispatch"]})
        out.append(_table(
            ["routes", "hit", "miss", "hit, 5 middleware", "miss, 5 middleware",
             "hit by sub id"],
            [[f"{n:,}", d.get((n, 0, "hit")), d.get((n, 0, "miss")), d.get((n, 5, "hit")),
              d.get((n, 5, "miss")), d.get((n, 0, "hit-subid"))] for n in routes]))
    mem = result["memory"]
    if ran_routemq:
        after = (f", {mem['worker_after_100k_rss_mb']} MB after {e2e['messages']:,} messages"
                 if mem["worker_after_100k_rss_mb"] else "")  # measured with 1 worker only
        out += ["", f"Memory: idle worker {mem['idle_worker_rss_mb']} MB RSS{after}."]
    return "\n".join(out)


def main() -> int:
    """`python -m bench.report [FILE]`: print the tables of a results file again (default
    bench/results/latest.json), e.g. one written before the baselines it lacks existed."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("file", nargs="?", default=str(ROOT / "bench" / "results" / "latest.json"))
    args = ap.parse_args()
    print(tables(json.loads(Path(args.file).read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
