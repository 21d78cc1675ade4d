"""Helpers of the system tests: reading the journal, the plan, the health files and
`routemq status` in the machine, publishing there, systemctl show. Waiting, payloads and the
status document's checks are shared with the integration tests (tests/helpers.py)."""
from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any, Iterable

from machine import Machine
from tests import helpers
from tests.helpers import missing_account, status_document

ROOT = Path(__file__).resolve().parents[2]
APP = Path(__file__).resolve().parent / "app" / "app"  # copied to /srv/routemq/app
DEB_IN_MACHINE = "/root/routemq_all.deb"
# Each look runs a command in the machine: look a little less often than the default.
wait_until = functools.partial(helpers.wait_until, interval=0.25)


class Journal:
    """JSON log records of the workers, as journald stored them (one MESSAGE per line)."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine

    def entries(self, *args: str) -> list[dict[str, Any]]:
        out = self.m.run("journalctl", "--no-pager", "-o", "json", *args).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def records(self, *args: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(journal entry, parsed JSON log record) for every entry whose MESSAGE is JSON."""
        found = []
        for entry in self.entries(*args):
            message = entry.get("MESSAGE")
            if isinstance(message, str) and message.startswith("{"):
                try:
                    found.append((entry, json.loads(message)))
                except ValueError:
                    pass
        return found

    def wait_processed(self, batch: str, seqs: Iterable[int], timeout: float,
                       diagnose: str = "") -> dict[int, set[int]]:
        """Wait until every seq of `batch` was processed; fail naming what is missing, with
        the output of the shell command `diagnose` run in the machine."""
        def missing(got: dict[int, set[int]]) -> set[int]:
            return set(seqs) - set().union(*got.values())

        def all_processed() -> dict[int, set[int]] | None:
            got = self.processed(batch)
            return None if missing(got) else got

        def explain() -> str:
            got = self.processed(batch)
            return (f"batch {batch}: {missing_account(missing(got), len(seqs))}; per worker: "
                    f"{ {w: len(s) for w, s in sorted(got.items())} }\n" +
                    (self.m.sh(diagnose, check=False).stdout if diagnose else ""))
        return wait_until(all_processed, timeout, f"batch {batch} processed", interval=0.5,
                          explain=explain)

    def processed(self, batch: str) -> dict[int, set[int]]:
        """worker instance -> seqs of `batch` it processed (the test app's "processed" logs)."""
        by_worker: dict[int, set[int]] = {}
        for entry, record in self.records("-u", "routemq-worker@*", "--output-fields",
                                          "MESSAGE,ROUTEMQ_WORKER"):
            if record.get("message") == "processed" and record.get("batch") == batch:
                worker = int(entry["ROUTEMQ_WORKER"])
                by_worker.setdefault(worker, set()).add(int(record["seq"]))
        return by_worker


STREAM_IN_MACHINE = "/root/stream.py"  # tests/system/stream.py, put there by the fixture


def publish(machine: Machine, topic: str, count: int, *, qos: int = 1, start: int = 1,
            rate: float = 0) -> dict[str, Any]:
    """count messages {"seq": n} (n from start) on topic, from a paho client in the machine
    (stream.py: fast, and it exits, where `mosquitto_pub -l` may not); returns its account
    (sent, acked, PUBACK reasons) once the broker acknowledged every one."""
    out = machine.run("python3", STREAM_IN_MACHINE, topic, str(count), str(rate), "--qos",
                      str(qos), "--start", str(start), timeout=300).stdout
    account = json.loads(out.splitlines()[-1])
    assert account["acked"] == account["sent"] == count, (topic, account)
    return account


def show(machine: Machine, unit: str, *props: str) -> dict[str, str]:
    args = [f"-p{p}" for p in props]
    out = machine.run("systemctl", "show", unit, *args).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def unit_state(machine: Machine, unit: str) -> str:
    """`systemctl is-active unit`: "active", "inactive", "failed", "activating", ..."""
    return machine.run("systemctl", "is-active", unit, check=False).stdout.strip()


def plan(machine: Machine) -> dict[str, Any]:
    return json.loads(machine.run("cat", "/run/routemq/plan.json").stdout)


def status(machine: Machine) -> dict[str, Any]:
    """`routemq status --json` in the machine, its exit status checked against its health."""
    done = machine.run("routemq", "status", "--json", check=False)
    return status_document(done.returncode, done.stdout, done.stderr)


def health_writes(machine: Machine, instances: Iterable[int], writes: int = 2,
                  timeout: float = 30.0) -> None:
    """Until each instance rewrote /run/routemq/workers/<i>.json `writes` more times (about a
    second apart): proof that time passed in the machine, for checks that something did
    NOT happen meanwhile."""
    def updated_at(instance: int) -> object:
        done = machine.run("cat", f"/run/routemq/workers/{instance}.json", check=False)
        try:
            return json.loads(done.stdout).get("updated_at")
        except ValueError:
            return None
    instances = sorted(instances)
    now = time.time()  # the machine shares the host's clock
    counters = [helpers.distinct_values(functools.partial(updated_at, i), now)
                for i in instances]
    wait_until(lambda: all(c() >= writes for c in counters), timeout,
               f"{writes} more health file writes of instances {instances}")
