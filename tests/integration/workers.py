"""Run real `routemq worker` processes against a test broker and read what they processed.

Each worker is `python -m routemq worker --instance N` (the same interpreter as the tests,
so both paho environments are exercised), stopped by its pid only.
"""
from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable

from tests.integration.broker import Mosquitto

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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            h = self.health()
            if h and h.get("pid") == self.pid and h.get("state") == "running":
                return h
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"worker {self.instance} exited {self.proc.returncode}:\n"
                                     f"{self.output()[-3000:]}")
            time.sleep(0.05)
        raise AssertionError(f"worker {self.instance} not running after {timeout}s:\n"
                             f"{self.output()[-3000:]}")

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
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

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

    def processed(self, route: str | None = None) -> list[tuple[int, str, str, str]]:
        """(worker, route, topic, seq) for every recorded message."""
        rows = []
        for path in sorted(self.out.glob("*.log")):
            for line in path.read_text().splitlines():
                worker, r, topic, seq = line.split(" ", 3)
                if route is None or r == route:
                    rows.append((int(worker), r, topic, seq))
        return rows

    def wait_processed(self, n: int, route: str | None = None, timeout: float = 60.0,
                       distinct: bool = True) -> list[tuple[int, str, str, str]]:
        deadline = time.monotonic() + timeout
        while True:
            rows = self.processed(route)
            count = len({(r[1], r[2], r[3]) for r in rows}) if distinct else len(rows)
            if count >= n or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)


def tally(rows: list[tuple[int, str, str, str]]) -> tuple[collections.Counter, collections.Counter]:
    """(messages per worker, times each (topic, seq) was processed)."""
    per_worker = collections.Counter(r[0] for r in rows)
    per_message = collections.Counter((r[2], r[3]) for r in rows)
    return per_worker, per_message


class Run(Fleet):
    """`routemq run` as a user starts it: the master and its child workers in one process
    tree. Workers started by hand (`Fleet.start`) share its runtime directory."""

    def __init__(self, broker: Mosquitto, directory: Path, workers: int, app: Path = APP,
                 **config: str) -> None:
        super().__init__(broker, directory, workers, ROUTEMQ_APP_ROOT=str(app), **config)
        self.proc: subprocess.Popen | None = None
        self.log_path = directory / "run.stdout"

    def start_run(self, *args: str, **extra: str) -> "Run":
        env = self.env(0, TEST_WORKER="", **extra)  # each worker records as its instance
        out = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "routemq", "run", "--workers", str(self.workers_total),
             *args], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=str(self.dir))
        out.close()
        return self

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def master(self) -> dict:
        try:
            return json.loads((self.runtime / "master.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def healths(self) -> dict[int, dict]:
        docs = {}
        for path in (self.runtime / "workers").glob("*.json"):
            try:
                docs[int(path.stem)] = json.loads(path.read_text())
            except ValueError:
                pass
        return docs

    def wait_settled(self, instances: Iterable[int], timeout: float = 40.0) -> dict[int, dict]:
        """Until the plan covers exactly `instances`, no hand-over is under way, and each of
        them runs the current plan generation. Returns the health files."""
        want = sorted(instances)
        deadline = time.monotonic() + timeout
        while True:
            m, docs = self.master(), self.healths()
            ok = (m.get("instances") == want and not m.get("handover") and
                  all(docs.get(i, {}).get("state") == "running" and
                      docs[i].get("plan_version") == m.get("plan_version") for i in want))
            if ok:
                return docs
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"routemq run exited {self.proc.returncode}:\n"
                                     f"{self.output()[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"fleet not settled on {want} after {timeout}s: master "
                                     f"{m}\nworkers { {i: d.get('state') for i, d in docs.items()} }"
                                     f"\n{self.output()[-4000:]}")
            time.sleep(0.1)

    def stop_instance(self, instance: int, timeout: float = 60.0) -> None:
        """SIGTERM to one of the run's workers, as an operator would; returns once `run`
        has seen it exit cleanly (and so will not restart it)."""
        pid = self.healths()[instance]["pid"]
        os.kill(pid, signal.SIGTERM)
        done = f"worker {instance} (pid {pid}) stopped cleanly"
        deadline = time.monotonic() + timeout
        while done not in self.output():
            assert time.monotonic() < deadline, f"no {done!r}:\n{self.output()[-3000:]}"
            time.sleep(0.1)

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

    def status(self) -> tuple[int, dict]:
        """`routemq status --json` as an operator runs it: (exit status, document)."""
        env = self.env(0)
        done = subprocess.run([sys.executable, "-m", "routemq", "status", "--json"], env=env,
                              capture_output=True, text=True, timeout=30)
        try:
            return done.returncode, json.loads(done.stdout)
        except ValueError:
            raise AssertionError(f"status printed no JSON: {done.stdout!r} {done.stderr!r}")
