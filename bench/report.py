"""Summaries (medians over repeats), the printed tables and the machine description."""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
from typing import Any


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
    }


def load() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def summarize_e2e(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (workers, qos): medians over repeats; the ratio is the median of the
    per-repeat ratios (each repeat measures both kinds back to back on the same broker)."""
    rows = []
    keys = sorted({(r["workers"], r["qos"]) for r in runs})
    for workers, qos in keys:
        mine = [r for r in runs if (r["workers"], r["qos"]) == (workers, qos)]
        rq = [r for r in mine if r["kind"] == "routemq"]
        bare = [r for r in mine if r["kind"] == "bare"]
        ratios = [a["rate"] / b["rate"] for a, b in zip(rq, bare) if b["rate"] and a["rate"]]
        rows.append({
            "workers": workers, "qos": qos,
            "routemq_rate": round(_median([r["rate"] for r in rq])),
            "bare_rate": round(_median([r["rate"] for r in bare])),
            "ratio": round(_median(ratios), 2),
            "routemq_cpu_us": round(_median([r["cpu_us_per_msg"] for r in rq]), 1),
            "bare_cpu_us": round(_median([r["cpu_us_per_msg"] for r in bare]), 1),
            "lost": sum(r["lost"] or 0 for r in rq),
            "duplicates": sum(r["duplicates"] or 0 for r in rq),
            "bare_lost": sum(r["lost"] or 0 for r in bare),
            "errors": [r["error"] for r in mine if r["error"]],
            "repeats": len(rq),
        })
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


def tables(result: dict[str, Any]) -> str:
    """The results as Markdown tables (printed, and pasted into the README)."""
    m = result["machine"]
    e2e = result["e2e"]["summary"]
    out = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Python {m['python']}, paho-mqtt {m['paho_mqtt']}, mosquitto {m['mosquitto']}; "
        f"load average {result['load_before']} before, {result['load_after']} after; "
        f"`make bench` took {result['wall_seconds']:.0f} s.",
        "",
        f"End-to-end: {result['e2e']['messages']:,} JSON messages of {result['e2e']['payload_bytes']} "
        f"bytes from `mosquitto_pub -l` through one shared route, first to last received "
        f"(median of {result['e2e']['repeats']}):",
        "",
        _table(["workers", "QoS", "RouteMQ msg/s", "bare paho msg/s", "ratio",
                "RouteMQ CPU µs/msg", "bare CPU µs/msg", "lost", "dup"],
               [[r["workers"], r["qos"], f"{r['routemq_rate']:,}", f"{r['bare_rate']:,}",
                 f"{r['ratio']:.2f}", r["routemq_cpu_us"], r["bare_cpu_us"], r["lost"],
                 r["duplicates"]] for r in e2e]),
        "",
        "Dispatch in process, µs per message (median of 3; lookup by topic tree, and by "
        "MQTT 5 subscription identifier):",
        "",
    ]
    d = {(r["routes"], r["middleware"], r["case"]): r["us_per_msg"] for r in result["dispatch"]}
    routes = sorted({r["routes"] for r in result["dispatch"]})
    out.append(_table(
        ["routes", "hit", "miss", "hit, 5 middleware", "miss, 5 middleware", "hit by sub id"],
        [[f"{n:,}", d.get((n, 0, "hit")), d.get((n, 0, "miss")), d.get((n, 5, "hit")),
          d.get((n, 5, "miss")), d.get((n, 0, "hit-subid"))] for n in routes]))
    mem = result["memory"]
    out += ["", f"Memory: idle worker {mem['idle_worker_rss_mb']} MB RSS, "
                f"{mem['worker_after_100k_rss_mb']} MB after {result['e2e']['messages']:,} "
                f"messages."]
    return "\n".join(out)
