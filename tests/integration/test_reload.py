"""A new version of the application while messages flow (issue 12, part 4): SIGHUP to
`routemq run` (what `systemctl reload routemq.target` sends the master) re-imports the
application, plans its routes and restarts the workers one at a time, each handing its routes
over first. Counted as test_no_loss counts: every message the broker acknowledged is handled;
on MQTT 5 no PUBACK says "no matching subscribers" (a non-shared route left without one)."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from tests.helpers import lost, wait_until
from tests.integration.broker import Mosquitto, publish_each
from tests.integration.workers import AckedStream, Run

ROUTER = """\
from routemq.router import Router
from tests.integration.apps.recorder import record

VERSION = {version!r}
router = Router()


def recording(route, delay):
    async def handle(id, payload, client):
        import asyncio
        await asyncio.sleep(delay)
        record(f"{{route}}@{{VERSION}}", f"{{route}}/{{id}}", payload)
    return handle


router.on("pair/{{id}}", recording("pair", 0.05), qos=1, shared=True, worker_count=2)
router.on("plain/{{id}}", recording("plain", 0.002), qos=1)
{extra}
"""
NO_MATCHING_SUBSCRIBERS = 16  # an MQTT 5 PUBACK reason code


def write_version(app: Path, version: str, extra: str = "") -> None:
    routers = app / "app" / "routers"
    routers.mkdir(parents=True, exist_ok=True)
    for init in (app / "app" / "__init__.py", routers / "__init__.py"):
        init.touch()
    (routers / "routes.py").write_text(ROUTER.format(version=version, extra=extra))


def v1_running(make_run, app: Path) -> tuple[Run, dict[int, int]]:
    """`routemq run --workers 2` of version 1, settled; and its workers' pids."""
    write_version(app, "v1")
    run: Run = make_run(2, app=app).start_run()
    run.wait_settled([1, 2])
    return run, {i: d["pid"] for i, d in run.healths().items()}


def versions(run: Run) -> dict[int, set[str]]:
    """instance -> the versions it recorded messages with."""
    seen: dict[int, set[str]] = {}
    for r in run.processed():
        seen.setdefault(r.worker, set()).add(r.route.split("@")[-1])
    return seen


def reloaded(run: Run) -> dict | None:
    m = run.master()
    last = m.get("reload") or {}
    return m if last.get("at") and m.get("rollout") is None else None


def test_reload_restarts_each_worker_and_loses_nothing(make_run, broker: Mosquitto, publisher,
                                                       tmp_path: Path) -> None:
    app = tmp_path / "app-root"
    run, before = v1_running(make_run, app)
    pub = publisher(broker.host, broker.port)
    with AckedStream(pub, ["pair", "plain"], rate=120) as stream:
        wait_until(lambda: len(run.processed()) >= 200, 20, "the stream handled")
        write_version(app, "v2", 'router.on("added/{id}", recording("added", 0), qos=1)')
        os.kill(run.proc.pid, signal.SIGHUP)
        wait_until(lambda: reloaded(run), 120, "the reload's rolling restart",
                   abort=run.running(), explain=lambda: f"{run.master()}\n{run.output()[-3000:]}")
        run.wait_settled([1, 2])
        # Each instance runs v2 now, under a new process.
        wait_until(lambda: all("v2" in versions(run).get(i, ()) for i in (1, 2)), 30,
                   "both instances handling with v2", explain=lambda: str(versions(run)))
        acked = stream.stop()
    assert run.master()["reload"]["ok"] is True
    after = {i: d["pid"] for i, d in run.healths().items()}
    assert all(after[i] != before[i] for i in (1, 2)), (before, after)
    rows = run.wait_handled(acked, 90)
    missing, account = lost(rows, acked, pub.topics())
    assert len(acked) > 1000 and not missing, account
    assert pub.reasons.get(NO_MATCHING_SUBSCRIBERS, 0) == 0, pub.reasons
    # The route v2 added receives.
    publish_each(broker, [("added/1", json.dumps({"seq": 10**6}), 1)])
    wait_until(lambda: any(r.route == "added@v2" for r in run.processed()), 30,
               "the added route's message handled")
    assert run.stop_run() == 0


def test_a_reload_that_cannot_import_changes_nothing(make_run, broker: Mosquitto,
                                                     tmp_path: Path) -> None:
    app = tmp_path / "app-root"
    run, pids = v1_running(make_run, app)
    (app / "app" / "routers" / "routes.py").write_text("from routemq.router import Router\n"
                                                       "router = Router(\n")
    os.kill(run.proc.pid, signal.SIGHUP)
    failed = wait_until(lambda: (run.master().get("reload") or {}).get("ok") is False, 30,
                        "the failed reload in master.json", abort=run.running())
    assert failed
    error = run.master()["reload"]["error"]
    assert "routes.py" in error and "SyntaxError" in error, error
    assert "reload failed, the running version stays" in run.output()
    doc, code = run.status()
    assert code == 1 and doc["health"]["status"] == "degraded", doc["health"]
    assert any("the last reload failed" in r for r in doc["health"]["reasons"])
    # The workers were not touched and v1 still handles.
    run.wait_health_writes([1, 2], 2)
    assert {i: d["pid"] for i, d in run.healths().items()} == pids
    publish_each(broker, [("plain/1", json.dumps({"seq": 7}), 1)])
    wait_until(lambda: any(r.route == "plain@v1" and r.seq == "7" for r in run.processed()),
               30, "v1 handling after the failed reload")
    assert run.stop_run() == 0
