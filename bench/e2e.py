"""End-to-end throughput: a publisher process, the broker, N subscriber processes.

One run = N subscribers of one kind on one fresh shared-subscription group, then 100,000
JSON messages of ~100 bytes from `mosquitto_pub -l`, then wait until the subscribers
report everything (or stop making progress), then SIGTERM. Kinds:

- "routemq": `python -m routemq worker --instance i` with the bench application
  (bench/app), configured through the environment as an operator would;
- "paho": bench/bare_sub.py --style defaults, paho as a user writes it when left to its
  defaults (MQTT 3.1.1, `loop_forever`, `json.loads` in on_message): the headline baseline;
- "bare": bench/bare_sub.py --style mqtt5, paho alone speaking MQTT 5, counting (the name
  predates "paho", and old results use it);
- "faststream": bench/fs_sub.py, FastStream 0.7.8 MQTT, run by .venvs/bench's python;
- "c": bench/c_sub.py, `mosquitto_sub` (the C client): the ceiling the broker and the
  publisher leave to any subscriber on this machine.

Throughput is messages over (last receive - first receive) across all subscribers
(time.monotonic is one clock for the whole machine). CPU per message is the subscribers'
user+system time while the run lasted, over the messages they received.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.procstat import cpu_seconds, rss_bytes

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "bench" / "app"
KINDS = ("routemq", "paho", "bare", "faststream", "c")
FS_PYTHON = ROOT / ".venvs" / "bench" / "bin" / "python"  # made by scripts/bench.sh
TOPIC = "bench/dev-1"
PUB_CHUNK = 50_000  # mosquitto_pub -l at QoS > 0 stops silently after 65,535 lines
STALL = 5.0  # seconds without progress after publishing: the rest is lost


@dataclass
class RunResult:
    kind: str
    workers: int
    qos: int
    sent: int
    received: int = 0
    lost: int | None = None
    duplicates: int | None = None
    seconds: float = 0.0
    rate: float = 0.0
    cpu_us_per_msg: float = 0.0
    broker_cpu_us_per_msg: float = 0.0
    rss_idle: list[int] = field(default_factory=list)
    rss_after: list[int] = field(default_factory=list)
    per_worker: list[int] = field(default_factory=list)
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def payload_lines(n: int) -> list[bytes]:
    """`n` one-line JSON payloads of about 100 bytes, each with a distinct `seq`."""
    lines = []
    for i in range(n):
        body = (f'{{"seq":{i},"device":"dev-1","temperature":21.5,"humidity":40.25,'
                f'"ts":1764280000.125,"status":"ok","pad":"')
        lines.append((body + "x" * max(0, 98 - len(body)) + '"}').encode())
    return lines


class Subscribers:
    """N subscriber processes of one kind, started, watched and stopped by pid."""

    def __init__(self, kind: str, n: int, qos: int, port: int, workdir: Path,
                 run_id: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown subscriber kind {kind!r}; known: {', '.join(KINDS)}")
        self.kind, self.n, self.qos, self.port = kind, n, qos, port
        self.dir = workdir / run_id
        self.out = self.dir / "out"
        self.runtime = self.dir / "run"
        self.out.mkdir(parents=True, exist_ok=True)
        self.group = run_id.replace("-", "")  # a fresh share group per run: no leftovers
        self.run_id = run_id
        self.procs: list[subprocess.Popen] = []

    def _env(self, instance: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MQTT_", "ROUTEMQ_", "NOTIFY_SOCKET", "WATCHDOG_"))}
        env.update({
            "PYTHONPATH": str(ROOT), "MQTT_BROKER": "127.0.0.1", "MQTT_PORT": str(self.port),
            "MQTT_GROUP_NAME": self.group, "WORKER_COUNT": str(self.n), "LOG_LEVEL": "INFO",
            "ROUTEMQ_LOG_FORMAT": "json", "ROUTEMQ_APP_ROOT": str(APP),
            "ROUTEMQ_RUNTIME_DIR": str(self.runtime), "ROUTEMQ_CONFIG": os.devnull,
            "ROUTEMQ_CONFIG_DIR": str(self.dir / "conf.d"),
            # Its own journals and spool, not the host's /var/lib/routemq (the bench runs
            # as root): a worker of an earlier run must not make suspects here.
            "ROUTEMQ_STATE_DIR": str(self.dir / "state"),
            "ROUTEMQ_CLIENT_ID_PREFIX": self.group,
            "BENCH_OUT": str(self.out), "BENCH_INSTANCE": str(instance),
            "BENCH_QOS": str(self.qos),
        })
        return env

    def _command(self, instance: int) -> list[str]:
        if self.kind == "routemq":
            return [sys.executable, "-m", "routemq", "worker", "--instance", str(instance)]
        # The counting subscribers (bench/bare_sub.py, fs_sub.py, c_sub.py) take one command
        # line.
        common = ["--port", str(self.port), "--filter", f"$share/{self.group}/bench/+",
                  "--qos", str(self.qos), "--out", str(self.out), "--id", str(instance)]
        if self.kind == "faststream":
            if not FS_PYTHON.exists():
                raise RuntimeError(f"{FS_PYTHON} missing: scripts/bench.sh installs "
                                   "requirements/bench.txt there")
            return [str(FS_PYTHON), "-m", "bench.fs_sub", *common]
        if self.kind == "c":
            return [sys.executable, "-m", "bench.c_sub", *common]
        style = "defaults" if self.kind == "paho" else "mqtt5"
        return [sys.executable, "-m", "bench.bare_sub", *common, "--style", style]

    def start(self) -> None:
        for i in range(1, self.n + 1):
            cmd = self._command(i)
            log = open(self.dir / f"{self.kind}-{i}.log", "ab")
            self.procs.append(subprocess.Popen(cmd, env=self._env(i), cwd=str(self.dir),
                                               stdout=log, stderr=subprocess.STDOUT))
            log.close()

    def _status(self, i: int) -> dict[str, Any] | None:
        path = (self.runtime / "workers" / f"{i}.json" if self.kind == "routemq"
                else self.out / f"bare-{i}.status")  # bench.bare_sub.Counter's files
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def ready(self) -> bool:
        for i, p in enumerate(self.procs, 1):
            if p.poll() is not None:
                raise RuntimeError(f"{self.kind} subscriber {i} exited {p.returncode}: "
                                   f"{self.log_tail(i)}")
            s = self._status(i)
            if s is None or not (s.get("state") == "running" if self.kind == "routemq"
                                 else s.get("ready")):
                return False
        return True

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind} subscribers not ready after {timeout}s")
            time.sleep(0.05)

    def count(self) -> int:
        total = 0
        for i in range(1, self.n + 1):
            s = self._status(i) or {}
            total += int(s.get("processed" if self.kind == "routemq" else "count", 0))
        return total

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self, timeout: float = 30.0) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def tallies(self) -> list[dict[str, Any]]:
        prefix = "routemq" if self.kind == "routemq" else "bare"
        found = []
        for i in range(1, self.n + 1):
            try:
                found.append(json.loads((self.out / f"{prefix}-{i}.json").read_text()))
            except (OSError, ValueError):
                found.append({"count": 0, "first": 0.0, "last": 0.0})
        return found

    def log_tail(self, i: int) -> str:
        try:
            return (self.dir / f"{self.kind}-{i}.log").read_text(errors="replace")[-1500:]
        except OSError:
            return ""


def publish(port: int, qos: int, lines: list[bytes]) -> None:
    for start in range(0, len(lines), PUB_CHUNK):
        chunk = lines[start:start + PUB_CHUNK]
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", str(qos),
                        "-t", TOPIC, "-l", "-V", "5"], input=b"\n".join(chunk) + b"\n",
                       check=True, stderr=subprocess.PIPE, timeout=300)


def run_once(kind: str, workers: int, qos: int, lines: list[bytes], port: int,
             broker_pid: int, workdir: Path, run_id: str) -> RunResult:
    """One measured run; the subscribers are stopped whatever happens."""
    result = RunResult(kind, workers, qos, len(lines))
    subs = Subscribers(kind, workers, qos, port, workdir, run_id)
    try:
        subs.start()
        subs.wait_ready()
        time.sleep(0.3)  # let start-up work (imports, first health file) settle
        pids = subs.pids()
        result.rss_idle = [rss_bytes(p) for p in pids]
        cpu0 = sum(cpu_seconds(p) for p in pids)
        broker0 = cpu_seconds(broker_pid)
        publish(port, qos, lines)
        last_count, last_change = -1, time.monotonic()
        while True:
            n = subs.count()
            if n >= len(lines):
                break
            if n != last_count:
                last_count, last_change = n, time.monotonic()
            elif time.monotonic() - last_change > STALL:
                break
            time.sleep(0.05)
        cpu1 = sum(cpu_seconds(p) for p in pids)
        broker1 = cpu_seconds(broker_pid)
        result.rss_after = [rss_bytes(p) for p in pids]
    except Exception as exc:  # reported in the results, the bench goes on
        result.error = f"{type(exc).__name__}: {exc}"
        subs.stop()
        return result
    subs.stop()
    tallies = subs.tallies()
    result.per_worker = [t["count"] for t in tallies]
    result.received = sum(result.per_worker)
    active = [t for t in tallies if t["count"]]
    if active:
        result.seconds = max(t["last"] for t in active) - min(t["first"] for t in active)
        result.rate = result.received / result.seconds if result.seconds > 0 else 0.0
    if result.received:
        result.cpu_us_per_msg = (cpu1 - cpu0) / result.received * 1e6
        result.broker_cpu_us_per_msg = (broker1 - broker0) / result.received * 1e6
    if kind == "routemq":
        seen: set[int] = set()
        dups = 0
        for t in tallies:
            for s in t.get("seqs", ()):
                if s in seen:
                    dups += 1
                seen.add(s)
        result.duplicates = dups
        result.lost = len(lines) - len(seen)
    else:  # the baselines only count: at-most-once loss shows as a shortfall
        result.lost = max(0, len(lines) - result.received)
    return result
