"""The runtime directory is never trusted blindly: a real `routemq run` while files in its
runtime directory are tampered with, a second run on the same directory, kill -9 of the run,
a umask of 000, and a worker whose event loop stalls."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from routemq.plan import Plan
from tests.helpers import distinct_values, wait_until
from tests.integration.broker import publish_many
from tests.integration.workers import Run
from tests.processes import alive


def master_keeps_ticking(run: Run, after: float, ticks: int = 3,
                         meanwhile: Callable[[], object] = lambda: None) -> None:
    """master.json is rewritten (updated_at later than `after`, `ticks` distinct values):
    the master's loop is alive, and it runs in the run process, which is alive too.
    `meanwhile()` runs at every look (to keep a file fresh, or to check master.json)."""
    ticked = distinct_values(lambda: run.master().get("updated_at"), after)

    def ticks_seen() -> bool:
        meanwhile()
        return ticked() >= ticks
    wait_until(ticks_seen, 10 + ticks / 2, f"{ticks} master.json updates",
               abort=run.running(), explain=lambda: run.output()[-3000:])
    assert run.proc.poll() is None and run.master()["pid"] == run.proc.pid


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        return ""


@pytest.fixture
def stranger():
    """The pid of a live process of ours that is no worker (Run's clean-up kills the pids
    found in health files: never give it the test's own)."""
    proc = subprocess.Popen(["sleep", "300"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_tampered_files_in_the_runtime_directory_are_notes(make_run, stranger):
    run = make_run(2).start_run()
    run.wait_settled([1, 2])
    workers = run.runtime / "workers"

    # A health file the master would have crashed on (float("fast"), int(None)), kept fresh
    # for a few ticks so the master counts its load.
    def bad_health_file() -> None:
        (workers / "6.json").write_text(json.dumps({
            "instance": 6, "pid": stranger, "state": "running", "connected": True,
            "updated_at": time.time(), "rate": "fast", "inflight": None, "queued": "many",
            "cpu_seconds": True, "routes_held": [1, 2]}))
    bad_health_file()
    master_keeps_ticking(run, time.time(), ticks=4, meanwhile=bad_health_file)
    (workers / "6.json").unlink()

    # A FIFO named like a health file: nobody may block opening it.
    os.mkfifo(workers / "9.json")
    start = time.time()
    began = time.monotonic()
    doc, _ = run.status()  # raises if it does not answer within its timeout
    assert time.monotonic() - began < 15
    assert "workers/9.json: not a regular file (a FIFO), not read" in doc["warnings"]
    master_keeps_ticking(run, start)
    (workers / "9.json").unlink()

    # A health file from an hour in the future would be "fresh" for an hour: a phantom.
    (workers / "7.json").write_text(json.dumps({
        "instance": 7, "pid": stranger, "state": "running", "connected": True,
        "updated_at": time.time() + 3600, "plan_version": 1}))

    def not_a_member() -> None:
        m = run.master()
        assert 7 not in m.get("members", []) and 7 not in m.get("instances", []), m
    master_keeps_ticking(run, time.time(), ticks=8, meanwhile=not_a_member)
    doc, _ = run.status()
    assert any(w.startswith("workers/7.json: updated_at is 359") and "s in the future" in w
               for w in doc["warnings"]), doc["warnings"]
    (workers / "7.json").unlink()
    assert "Traceback" not in run.output()
    assert run.stop_run() == 0


def test_a_second_run_on_the_same_runtime_directory_exits_at_once(make_run):
    first = make_run(1).start_run()
    first.wait_settled([1])
    second = make_run(1)
    second.runtime = first.runtime
    second.start_run(MQTT_BROKER="")  # it would start its own broker: it must not get there
    assert second.proc.wait(20) == 1
    out = second.output()
    assert f"another master (pid {first.proc.pid}) is running on {first.runtime}" in out
    assert "private mosquitto" not in out and "started worker" not in out
    assert first.proc.poll() is None and first.master()["pid"] == first.proc.pid
    first.wait_settled([1])
    assert first.stop_run() == 0


def test_kill_9_of_run_takes_its_workers_and_broker_with_it(make_run):
    run = make_run(2).start_run(MQTT_BROKER="")  # the embedded broker
    run.wait_settled([1, 2])
    workers = {d["pid"] for d in run.healths().values()}
    brokers = {p for p in children(run.proc.pid) if comm(p) == "mosquitto"}
    assert len(workers) == 2 and len(brokers) == 1
    try:
        run.proc.kill()
        run.proc.wait(10)
        wait_until(lambda: not any(alive(p) for p in workers | brokers), 40,
                   f"end of the run's children {sorted(workers | brokers)}")
    finally:
        for pid in workers | brokers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_modes_are_explicit_with_umask_000(make_run):
    run = make_run(1)
    old = os.umask(0)
    try:
        run.start_run()
    finally:
        os.umask(old)
    run.wait_settled([1])
    for d in (run.runtime, run.runtime / "workers"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o755, d
    for f in ("plan.json", "master.json", "workers/1.json"):
        assert stat.S_IMODE((run.runtime / f).stat().st_mode) == 0o644, f
    assert run.stop_run() == 0


def test_a_stalled_worker_is_killed_and_restarted(make_run, broker):
    """A sync handler blocks the worker's loop for 40 s: no health file update for 10 s (the
    unit's WatchdogSec) gets it killed and restarted, as systemd's watchdog would."""
    run = make_run(1).start_run()
    stalled = run.wait_settled([1])[1]["pid"]
    publish_many(broker, "block/40", ["{}"], qos=0)
    wait_until(lambda: run.master().get("restarts") == {"1": 1}, 30, "a restart of worker 1",
               abort=run.running())
    assert not alive(stalled)
    assert f"worker 1 (pid {stalled}) stalled: no health update for 1" in run.output()
    wait_until(lambda: run.healths().get(1, {}).get("pid") not in (None, stalled), 20,
               "a health file of the new worker 1", abort=run.running())
    run.wait_settled([1])
    publish_many(broker, "work/1", 5)
    assert len(run.wait_processed(5, "work", timeout=20)) >= 5
    assert run.stop_run() == 0


def test_a_deleted_or_damaged_plan_is_written_again(make_run):
    """A deleted plan.json left a restarted worker to compute a plan of its own (400 of 400
    lost once); a corrupt one restarted a worker every 16 s."""
    run = make_run(2).start_run()
    run.wait_settled([1, 2])
    plan = run.runtime / "plan.json"
    written = plan.read_text()
    plan.unlink()
    wait_until(lambda: plan.exists() and plan.read_text() == written, 10, "plan.json again",
               abort=run.running())
    plan.write_text("{garbage")
    wait_until(lambda: plan.read_text() == written, 10, "plan.json repaired",
               abort=run.running())
    old = run.healths()[2]["pid"]
    os.kill(old, signal.SIGKILL)  # the restarted worker reads the plan again
    wait_until(lambda: run.healths().get(2, {}).get("pid") not in (None, old), 20,
               "worker 2 restarted", abort=run.running())
    docs = run.wait_settled([1, 2])
    assert list(Plan.from_json(written).assignments[2]) == docs[2]["routes_held"]
    assert run.stop_run() == 0


def test_a_second_process_for_one_instance_waits_instead_of_taking_over(fleet_factory):
    """Two `routemq worker --instance 1` took one client id from each other 41 times in
    20 s; the second now waits for the first's lock and never connects."""
    fleet = fleet_factory(1)
    fleet.start_all()
    first = fleet.procs[1]
    out = fleet.dir / "second.stdout"
    with open(out, "wb") as f:
        second = subprocess.Popen([sys.executable, "-m", "routemq", "worker", "--instance", "1"],
                                  env=fleet.env(1), stdout=f, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: f"held by pid {first.pid}" in out.read_text(), 15,
                   "the second process waiting for the instance lock")
        fleet.wait_health_writes([1], 2)  # time passes: a take-over would show meanwhile
        assert "connected to" not in out.read_text()
        assert first.health()["reconnects"] == 0 and first.proc.poll() is None
    finally:
        second.kill()
        second.wait(10)
