"""Run real `routemq worker` processes against a test broker and read what they processed.

Each worker is `python -m routemq worker --instance N` (the same interpreter as the tests,
so both paho environments are exercised), stopped by its pid only.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from tests.helpers import (Record, distinct_values, exited, handled_seqs, parse_records,
                           status_document, wait_until)
from tests.integration.broker import HOST, AckedPublisher, Mosquitto

ROOT = Path(__file__).resolve().parents[2]
APP = Path(__file__).resolve().parent / "apps" / "basic"


class WorkerProcess:
    def __init__(self, fleet: "Fleet", instance: int, env: dict[str, str]) -> None:
        self.fleet, self.instance, self.env = fleet, instance, env
        self.proc: subprocess.Popen | None = None
        self.log_path = fleet.dir / f"worker{instance}.stdout"
        self.starts = 0

    def start(self) -> "WorkerProcess":
        self.starts += 1
        out = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "routemq", "worker", "--instance", str(self.instance)],
            env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=str(self.fleet.dir))
        out.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def health(self) -> dict | None:
        try:
            return json.loads((self.fleet.runtime / "workers" / f"{self.instance}.json")
                              .read_text())
        except (FileNotFoundError, ValueError):
            return None

    def wait_running(self, timeout: float = 20.0) -> dict:
        """Until this process's health file says running; its health document."""
        def running() -> dict | None:
            h = self.health()
            return h if h and h.get("pid") == self.pid and h.get("state") == "running" else None
        return wait_until(running, timeout, f"worker {self.instance} running", interval=0.05,
                          abort=exited(self.proc, f"worker {self.instance}", self.output),
                          explain=lambda: self.output()[-3000:])

    def wait_idle(self, writes: int = 2, timeout: float = 30.0) -> dict:
        """Until `writes` health files in a row (about a second apart) show nothing in flight
        or queued and no new message received: the broker sends it nothing more. The last
        health document."""
        seen: list[tuple[object, object]] = []  # (updated_at, received) of successive writes

        def idle() -> dict | None:
            h = self.health() or {}
            if h.get("inflight") or h.get("queued") or h.get("state") != "running":
                seen.clear()
            elif not seen or seen[-1][0] != h.get("updated_at"):
                if seen and seen[-1][1] != h.get("received"):
                    seen.clear()
                seen.append((h.get("updated_at"), h.get("received")))
            return h if len(seen) > writes else None
        return wait_until(idle, timeout, f"worker {self.instance} idle for {writes} health writes",
                          explain=lambda: str(self.health()))

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 30.0) -> int:
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait(10)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def output(self) -> str:
        return read_output(self.log_path)

    def log_records(self) -> list[dict]:
        """The worker's JSON log lines."""
        records = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except ValueError:
                    pass
        return records


class Fleet:
    """Workers of the test application sharing one broker, runtime dir and output dir."""

    def __init__(self, broker: Mosquitto, directory: Path, workers: int, **config: str) -> None:
        self.broker = broker
        self.dir = directory
        self.runtime = directory / "run"
        self.out = directory / "out"
        self.out.mkdir(parents=True, exist_ok=True)
        self.workers_total = workers
        self.config = config
        self.procs: dict[int, WorkerProcess] = {}

    def env(self, instance: int, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MQTT_", "ROUTEMQ_", "NOTIFY_SOCKET", "WATCHDOG_"))}
        env.update({
            "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
            "MQTT_BROKER": self.broker.host, "MQTT_PORT": str(self.broker.port),
            "MQTT_GROUP_NAME": "testgroup", "WORKER_COUNT": str(self.workers_total),
            "LOG_LEVEL": "INFO", "ROUTEMQ_LOG_FORMAT": "json",
            "ROUTEMQ_APP_ROOT": str(APP), "ROUTEMQ_RUNTIME_DIR": str(self.runtime),
            "ROUTEMQ_CONFIG": os.devnull, "ROUTEMQ_CONFIG_DIR": str(self.dir / "conf.d"),
            "ROUTEMQ_CLIENT_ID_PREFIX": f"t{self.broker.port}",
            # each fleet its own state directory: its dead letters are its own
            "ROUTEMQ_STATE_DIR": str(self.dir / "state"),
            "TEST_OUT": str(self.out), "TEST_WORKER": str(instance),
        })
        env.update({k: str(v) for k, v in self.config.items()})
        env.update(extra)
        return env

    def start(self, instance: int, **extra: str) -> WorkerProcess:
        proc = self.procs.get(instance)
        if proc is None:
            proc = self.procs[instance] = WorkerProcess(self, instance, self.env(instance, **extra))
        return proc.start()

    def start_all(self, instances: Iterable[int] | None = None) -> None:
        started = [self.start(i) for i in (instances or range(1, self.workers_total + 1))]
        for p in started:
            p.wait_running()

    def stop_all(self) -> None:
        for p in self.procs.values():
            if p.proc is not None and p.proc.poll() is None:
                p.stop()

    def kill_all(self) -> None:
        for p in self.procs.values():
            p.kill()

    def cleanup(self) -> None:
        """End of a test: nothing it started keeps running."""
        self.kill_all()

    def processed(self, route: str | None = None) -> list[Record]:
        """(worker, route, topic, seq) for every recorded message."""
        rows = [row for path in sorted(self.out.glob("*.log"))
                for row in parse_records(path.read_text())]
        return [row for row in rows if route is None or row.route == route]

    def wait_processed(self, n: int, route: str | None = None, timeout: float = 60.0,
                       distinct: bool = True) -> list[Record]:
        """Until `n` messages (of `route`) were recorded, counting each (route, topic, seq)
        once unless distinct=False; the records. Fails after `timeout` seconds."""
        def count(rows: list[Record]) -> int:
            return len({(r.route, r.topic, r.seq) for r in rows}) if distinct else len(rows)

        def enough() -> list[Record] | None:
            rows = self.processed(route)
            return rows if count(rows) >= n else None
        return wait_until(enough, timeout, f"{n} {route or 'all'} messages handled",
                          explain=lambda: f"{count(self.processed(route))} were")

    def wait_handled(self, seqs: set[int], timeout: float = 60.0) -> list[Record]:
        """Until every seq in `seqs` was recorded by some handler, or the deadline passes;
        returns the records either way (see `lost` for the verdict)."""
        wait_until(lambda: seqs <= handled_seqs(self.processed()), timeout,
                   "every seq handled", interval=0.2, fail=False)
        return self.processed()

    def wait_more_handled(self, n: int, instances: Iterable[int] | None = None,
                          timeout: float = 20.0, route: str | None = None) -> None:
        """Until each of `instances` (or the fleet as a whole) recorded `n` more messages
        (of `route`) than now: the stream goes on, and reaches them."""
        groups = [[i] for i in instances] if instances is not None else [None]

        def handled(group: list[int] | None) -> int:
            return sum(1 for row in self.processed(route)
                       if group is None or row.worker in group)
        marks = [handled(g) for g in groups]
        wait_until(lambda: all(handled(g) >= m + n for g, m in zip(groups, marks)), timeout,
                   f"{n} more messages handled by "
                   f"{'the fleet' if instances is None else sorted(instances)}",
                   explain=lambda: f"marks {marks}, now {[handled(g) for g in groups]}")

    def healths(self) -> dict[int, dict]:
        """The health files in the runtime directory, by instance."""
        docs = {}
        for path in (self.runtime / "workers").glob("*.json"):
            try:
                docs[int(path.stem)] = json.loads(path.read_text())
            except ValueError:
                pass
        return docs

    def wait_health_writes(self, instances: Iterable[int], writes: int = 2,
                           timeout: float = 20.0) -> None:
        """Until each of `instances` rewrote its health file `writes` more times (about a
        second each): proof that time passed inside those workers, for checks that
        something did NOT happen."""
        now = time.time()
        counters = {i: distinct_values(lambda i=i: self.healths().get(i, {}).get("updated_at"),
                                       now) for i in instances}
        wait_until(lambda: all(c() >= writes for c in counters.values()), timeout,
                   f"{writes} more health file writes of {sorted(counters)}")

    def routemq(self, *args: str) -> subprocess.CompletedProcess:
        """`routemq <args>` as an operator runs it, with the workers' configuration (the
        application is loaded: its records go to a directory of their own)."""
        out = self.dir / "cli-out"
        out.mkdir(parents=True, exist_ok=True)
        env = self.env(0, TEST_OUT=str(out), TEST_WORKER="cli")
        return subprocess.run([sys.executable, "-m", "routemq", *args], env=env, text=True,
                              capture_output=True, timeout=60, cwd=str(self.dir))

    def status(self) -> tuple[dict, int]:
        """`routemq status --json`: (document, exit status), the two checked against each
        other."""
        done = self.routemq("status", "--json")
        return status_document(done.returncode, done.stdout, done.stderr), done.returncode

    def wait_status(self, check: Callable[[dict], object], what: str, timeout: float = 20.0
                    ) -> tuple[dict, int]:
        """Poll `routemq status --json` until check(document) holds; (document, exit status).
        """
        last: list[tuple[dict, int]] = []

        def status_if() -> tuple[dict, int] | None:
            last[:] = [self.status()]
            return last[0] if check(last[0][0]) else None
        return wait_until(status_if, timeout, what, interval=0.3,
                          explain=lambda: f"last status: {last[0][0]['health'] if last else ''}")


class AckedStream:
    """A steady QoS 1 stream in the background: `rate` messages a second (change it at any
    time), round robin over `routes` (topic <route>/<seq % 5>; repeat a route to weigh it),
    numbered from 0, until stop(); `burst(n)` adds n at once. `publisher` knows which seqs
    the broker acknowledged."""

    TICK = 0.02

    def __init__(self, publisher: AckedPublisher, routes: Sequence[str], rate: float) -> None:
        self.publisher, self.routes, self.rate = publisher, list(routes), rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._lock = threading.Lock()
        self._extra = 0

    def burst(self, n: int, timeout: float = 30.0) -> None:
        """Publish `n` more messages at once; return when the broker acknowledged them.
        Above what the workers handle, they queue at the broker for the routes' owners."""
        want = self.publisher.sent + n
        with self._lock:
            self._extra += n
        wait_until(lambda: len(self.publisher.acked()) >= want, timeout,
                   f"PUBACKs of a burst of {n}", interval=0.05)

    def _run(self) -> None:
        seq, budget, last = 0, 0.0, time.monotonic()
        while not self._stop.wait(self.TICK):
            now = time.monotonic()
            with self._lock:
                budget, self._extra = budget + self._extra, 0
            budget, last = budget + self.rate * (now - last), now
            while budget >= 1:
                route = self.routes[seq % len(self.routes)]
                self.publisher.publish(f"{route}/{seq % 5}", seq)
                seq, budget = seq + 1, budget - 1

    def __enter__(self) -> "AckedStream":
        self._thread.start()
        return self

    def stop(self, ack_timeout: float = 30.0) -> set[int]:
        """Stop publishing; wait for the outstanding PUBACKs; the acknowledged seqs."""
        self._stop.set()
        self._thread.join(30)
        return self.publisher.wait_acked(ack_timeout)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


class Run(Fleet):
    """`routemq run` as a user starts it: the master and its child workers in one process
    tree. Workers started by hand (`Fleet.start`) share its runtime directory."""

    def __init__(self, broker: Mosquitto, directory: Path, workers: int, app: Path = APP,
                 **config: str) -> None:
        super().__init__(broker, directory, workers, ROUTEMQ_APP_ROOT=str(app), **config)
        self.proc: subprocess.Popen | None = None
        self.log_path = directory / "run.stdout"

    def start_run(self, *args: str, **extra: str) -> "Run":
        return self._spawn(["run", "--workers", str(self.workers_total), *args], extra)

    def start_master(self, **extra: str) -> "Run":
        """`routemq master` alone, as routemq-master.service runs it: no back end, so the
        workers are started by hand (`start`), as systemd would start the units."""
        return self._spawn(["master"], extra)

    def _spawn(self, args: list[str], extra: dict[str, str]) -> "Run":
        env = self.env(0, TEST_WORKER="", **extra)  # each worker records as its instance
        out = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "routemq", *args], env=env,
                                     stdout=out, stderr=subprocess.STDOUT, cwd=str(self.dir))
        out.close()
        return self

    def output(self) -> str:
        return read_output(self.log_path)

    def running(self) -> Callable[[], str | None]:
        """An `abort` for wait_until: `routemq run` (or master) exited."""
        return exited(self.proc, "routemq run", self.output)

    def master(self) -> dict:
        try:
            return json.loads((self.runtime / "master.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def wait_settled(self, instances: Iterable[int], timeout: float = 40.0) -> dict[int, dict]:
        """Until the plan covers exactly `instances`, no hand-over is under way, and each of
        them runs the current plan generation. Returns the health files."""
        want = sorted(instances)

        def settled() -> dict[int, dict] | None:
            m, docs = self.master(), self.healths()
            ok = (m.get("instances") == want and not m.get("handover") and
                  all(docs.get(i, {}).get("state") == "running" and
                      docs[i].get("plan_version") == m.get("plan_version") for i in want))
            return docs if ok else None

        def explain() -> str:
            states = {i: d.get("state") for i, d in self.healths().items()}
            return f"master {self.master()}\nworkers {states}\n{self.output()[-4000:]}"
        return wait_until(settled, timeout, f"the fleet settled on {want}",
                          abort=self.running(), explain=explain)

    def stop_instance(self, instance: int, timeout: float = 60.0) -> None:
        """SIGTERM to one of the run's workers, as an operator would; returns once `run`
        has seen it exit cleanly (and so will not restart it)."""
        pid = self.healths()[instance]["pid"]
        os.kill(pid, signal.SIGTERM)
        done = f"worker {instance} (pid {pid}) stopped cleanly"
        wait_until(lambda: done in self.output(), timeout, repr(done),
                   explain=lambda: self.output()[-3000:])

    def stop_run(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def cleanup(self) -> None:
        self.stop_all()
        self.kill_run()

    def kill_run(self) -> None:
        """Test clean-up after a failure: the run process and any worker it left."""
        pids = [d.get("pid") for d in self.healths().values()]
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for pid in pids:
            if isinstance(pid, int):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@dataclass
class Address:
    """Where a broker listens (what Fleet needs of a Mosquitto)."""

    host: str
    port: int


class EmbeddedRun(Run):
    """`routemq run` without MQTT_BROKER: it starts its private mosquitto (the embedded
    default) and prints where; `broker` is that address once `wait_broker()` returned."""

    TRY_LINE = re.compile(r"routemq run: try  mosquitto_pub -h (\S+) -p (\d+) ")

    def __init__(self, directory: Path, workers: int, app: Path = APP, **config: str) -> None:
        super().__init__(Address(HOST, 0), directory, workers, app, **config)  # type: ignore

    def env(self, instance: int, **extra: str) -> dict[str, str]:
        env = super().env(instance, **extra)
        for key in ("MQTT_BROKER", "MQTT_PORT"):
            env.pop(key, None)
        env["ROUTEMQ_CLIENT_ID_PREFIX"] = "embedded"  # its own broker: no other test's ids
        return env

    def wait_broker(self, timeout: float = 30.0) -> Address:
        found = wait_until(lambda: self.TRY_LINE.search(self.output()), timeout,
                           "the private broker's address", abort=self.running(),
                           explain=lambda: self.output()[-3000:])
        self.broker = Address(found.group(1), int(found.group(2)))  # type: ignore[assignment]
        return self.broker

    def cleanup(self) -> None:
        """SIGTERM, not SIGKILL, first: the private broker runs in its own session and only
        a clean `routemq run` stops it; then, by pid, whatever is left."""
        for doc in self.healths().values():
            if isinstance(doc.get("pid"), int):
                _signal_pid(doc["pid"], signal.SIGCONT)  # a stopped worker cannot drain
        self.stop_all()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                pass
        self.kill_run()
        pid = listener_pid(self.broker.port) if self.broker.port else None
        if pid is not None and "routemq-broker-" in cmdline(pid):
            _signal_pid(pid, signal.SIGKILL)


def read_output(path: Path) -> str:
    """A process's captured output so far ("" before it wrote any)."""
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _signal_pid(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def listener_pid(port: int) -> int | None:
    """The pid of the process listening on 127.0.0.1:`port` (from /proc), if any."""
    want = f"0100007F:{port:04X}"
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == want and fields[3] == "0A":  # 0A: LISTEN
            inode = fields[9]
    if inode is None:
        return None
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) == f"socket:[{inode}]" for fd in fd_dir.iterdir()):
                return int(fd_dir.parent.name)
        except OSError:
            continue
    return None
