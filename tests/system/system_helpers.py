"""Helpers of the system tests: waiting, publishing, reading the journal, systemctl show."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import pytest

from machine import Machine

ROOT = Path(__file__).resolve().parents[2]
APP = Path(__file__).resolve().parent / "app" / "app"  # copied to /srv/routemq/app
DEB_IN_MACHINE = "/root/routemq_all.deb"
T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.25,
               fail: bool = True) -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` s
    (or, with fail=False, return the last falsy value for the caller to explain)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            if not fail:
                return last
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


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

    def wait_processed(self, batch: str, seqs: range, timeout: float,
                       diagnose: str = "") -> dict[int, set[int]]:
        """Wait until every seq of `batch` was processed; fail naming what is missing, with
        the output of the shell command `diagnose` run in the machine."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.processed(batch)
            missing = set(seqs) - set().union(*got.values())
            if not missing:
                return got
            if time.monotonic() > deadline:
                pytest.fail(f"batch {batch}: {len(missing)} of {len(seqs)} messages never "
                            f"processed (first: {sorted(missing)[:10]}); per worker: "
                            f"{ {w: len(s) for w, s in sorted(got.items())} }\n" +
                            (self.m.sh(diagnose, check=False).stdout if diagnose else ""))
            time.sleep(0.5)

    def processed(self, batch: str) -> dict[int, set[int]]:
        """worker instance -> seqs of `batch` it processed (the test app's "processed" logs)."""
        by_worker: dict[int, set[int]] = {}
        for entry, record in self.records("-u", "routemq-worker@*", "--output-fields",
                                          "MESSAGE,ROUTEMQ_WORKER"):
            if record.get("message") == "processed" and record.get("batch") == batch:
                worker = int(entry["ROUTEMQ_WORKER"])
                by_worker.setdefault(worker, set()).add(int(record["seq"]))
        return by_worker


def publish(machine: Machine, topic: str, count: int, *, qos: int = 1, start: int = 1) -> None:
    """count messages {"seq": n} on topic, with mosquitto_pub -l (one process, fast)."""
    lines = "".join(f'{{"seq": {n}}}\n' for n in range(start, start + count))
    machine.run("mosquitto_pub", "-h", "127.0.0.1", "-t", topic, "-q", str(qos), "-l",
                input=lines)


def show(machine: Machine, unit: str, *props: str) -> dict[str, str]:
    args = [f"-p{p}" for p in props]
    out = machine.run("systemctl", "show", unit, *args).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def plan(machine: Machine) -> dict[str, Any]:
    return json.loads(machine.run("cat", "/run/routemq/plan.json").stdout)
