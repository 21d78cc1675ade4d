"""Reading the runtime directory (real temp files), pids, and systemd's answers."""
import doctest
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from routemq import fleet
from routemq.documents import MasterState
from routemq.fleet import (UnitState, parse_systemctl_show, query_units, read_configured_fleet,
                           read_fleet, unit_instance, unit_name)
from routemq.plan import Plan
from routemq.status import build_status

APP = Path(__file__).resolve().parents[1] / "integration" / "apps" / "basic"


def write(path: Path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))


def gone_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_missing_runtime_dir_is_a_note_not_an_error(tmp_path):
    snap = read_fleet(str(tmp_path / "absent"), units=False)
    assert (snap.plan, snap.master, snap.workers) == (None, None, {})
    assert snap.notes == [f"runtime directory {tmp_path / 'absent'} does not exist (nothing "
                          f"has run here, or runtime_dir is set differently)"]


def test_reads_plan_master_and_health_files(tmp_path):
    plan = Plan({1: ("shared:a",), 2: ("shared:a", "single:b")})
    write(tmp_path / "plan.json", plan.to_json())
    now = time.time()
    write(tmp_path / "master.json", {
        "pid": os.getpid(), "hostname": "h", "group": "g", "backend": "processes",
        "started_at": now - 10, "updated_at": now, "plan_version": 2, "instances": [2, 1],
        "restarts": {"1": 1}, "autoscaler": None, "warnings": []})
    dead = gone_pid()
    write(tmp_path / "workers" / "1.json", {"instance": 1, "pid": os.getpid(),
                                            "updated_at": now, "state": "running"})
    write(tmp_path / "workers" / "2.json", {"instance": 2, "pid": dead, "updated_at": now})
    write(tmp_path / "workers" / ".tmp-abc123", "{half a docu")  # a write in progress
    write(tmp_path / "workers" / "notes.txt", "not a health file")
    snap = read_fleet(str(tmp_path), health_interval=2.0, group="cfg", units=False)
    assert snap.notes == []
    assert snap.plan == plan and snap.plan_source == "plan.json"
    assert snap.master.instances == (1, 2) and snap.master.backend == "processes"
    assert sorted(snap.workers) == [1, 2]
    assert snap.pids == {dead: False, os.getpid(): True}
    assert (snap.health_interval, snap.group, snap.units) == (2.0, "cfg", None)
    s = build_status(snap)
    assert [w["alive"] for w in s["workers"]] == [True, False]
    assert s["workers"][0]["restarts"] == 1


@pytest.mark.parametrize("content, note", [
    ("{broken", "workers/3.json: not valid JSON"),
    ("", "workers/3.json: empty file"),
    ("[1, 2]", "workers/3.json: not a JSON object"),
    (b"\xff\xfe", "workers/3.json: not UTF-8 text"),
    ('{"state": "running"}', "workers/3.json: missing pid, updated_at"),
    ('{"pid": "12", "updated_at": 1.0}',
     "workers/3.json: ignored invalid pid (want an integer > 0)"),
    ('{"pid": 0, "updated_at": 1.0}', "workers/3.json: ignored invalid pid (want an integer > 0)"),
    ('{"pid": 5, "updated_at": NaN}',
     "workers/3.json: ignored invalid updated_at (want a number >= 0)"),
    ("[" * 100_000, "workers/3.json: not valid JSON (nested too deeply)"),
])
def test_a_bad_health_file_is_shown_and_noted(tmp_path, content, note):
    path = tmp_path / "workers" / "3.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    snap = read_fleet(str(tmp_path), units=False)
    assert 3 in snap.workers and len(snap.notes) == 1 and snap.notes[0].startswith(note)
    row = build_status(snap)["workers"][0]
    assert (row["instance"], row["alive"]) == (3, False)


def test_the_file_name_says_which_instance(tmp_path):
    write(tmp_path / "workers" / "4.json", {"instance": 5, "pid": 1, "updated_at": 0.0})
    snap = read_fleet(str(tmp_path), units=False)
    assert list(snap.workers) == [4] and snap.workers[4].instance == 4
    assert snap.notes == ["workers/4.json: says instance 5; the file name wins"]


def test_a_health_file_that_cannot_be_read_is_noted(tmp_path):
    (tmp_path / "workers" / "1.json").mkdir(parents=True)  # EISDIR: an OSError, even as root
    snap = read_fleet(str(tmp_path), units=False)
    assert snap.notes == ["workers/1.json: not a regular file (a directory), not read"]
    assert build_status(snap)["workers"][0]["state"] == "unreadable"


def test_corrupt_plan_and_master_are_noted_and_ignored(tmp_path):
    write(tmp_path / "plan.json", '{"version": 99}')
    write(tmp_path / "master.json", "not json")
    fallback = Plan({1: ("x",)})
    snap = read_fleet(str(tmp_path), fallback_plan=fallback, units=False)
    assert snap.master is None and snap.plan == fallback and snap.plan_source == "standalone"
    assert snap.notes[0] == "plan.json: ignored: plan version 99 is not supported (expected 1)"
    assert snap.notes[1].startswith("master.json: not valid JSON")


def test_master_keys_of_the_wrong_type_are_dropped(tmp_path):
    write(tmp_path / "master.json", {"pid": 7, "backend": 3, "instances": [1, "2", 0, 3],
                                     "updated_at": "soon", "restarts": {"1": 2}})
    snap = read_fleet(str(tmp_path), units=False)
    assert snap.master == MasterState(pid=7, instances=(1, 3), restarts={"1": 2})
    assert snap.notes == [
        "master.json: ignored invalid backend (want a string), updated_at (want a number >= 0)",
        "master.json: instances holds something other than positive integers"]


def test_read_fleet_takes_a_configuration(tmp_path):
    class Config:
        runtime_dir, health_interval, mqtt_group_name = str(tmp_path), 3.0, "grp"
    snap = read_fleet(Config(), units=False)
    assert (snap.runtime_dir, snap.health_interval, snap.group) == (str(tmp_path), 3.0, "grp")


# --- systemd --------------------------------------------------------------------------------

# What systemd 252 prints for `systemctl show -p Id,LoadState,... u1 u2 u3` (its own
# property order, one block per unit, blank line between blocks).
SHOW_OUTPUT = """\
MainPID=4242
NRestarts=2
Id=routemq-worker@1.service
LoadState=loaded
ActiveState=active
SubState=running
ActiveEnterTimestampMonotonic=123456789

MainPID=0
NRestarts=5
Id=routemq-worker@12.service
LoadState=loaded
ActiveState=failed
SubState=failed
ActiveEnterTimestampMonotonic=0

MainPID=0
NRestarts=0
Id=routemq-master.service
LoadState=loaded
ActiveState=active
SubState=running
ActiveEnterTimestampMonotonic=5
"""


def test_parse_systemctl_show():
    units = parse_systemctl_show(SHOW_OUTPUT)
    assert units == {
        1: UnitState(1, "loaded", "active", "running", restarts=2, main_pid=4242,
                     active_since=123.456789),
        12: UnitState(12, "loaded", "failed", "failed", restarts=5, main_pid=0,
                      active_since=None)}
    assert units[1].active and not units[12].active
    assert parse_systemctl_show("") == {}
    # An older systemd without NRestarts, or a garbled value, gives 0, not an exception.
    partial = parse_systemctl_show("Id=routemq-worker@3.service\nNRestarts=\nMainPID=x\n")
    assert (partial[3].restarts, partial[3].main_pid, partial[3].active_state) == (0, 0, "")


def fake_systemctl(tmp_path: Path, show: str, listing: str = "", fail: bool = False) -> str:
    """An executable standing in for systemctl: records its arguments, prints canned text."""
    script = tmp_path / "systemctl"
    log = tmp_path / "systemctl.args"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"if {fail!r}:\n"
        "    print('System has not been booted with systemd as init system (PID 1). '\n"
        "          \"Can't operate.\", file=sys.stderr); sys.exit(1)\n"
        f"print({listing!r} if sys.argv[1] == 'list-units' else {show!r}, end='')\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def calls(tmp_path: Path) -> list[list[str]]:
    log = tmp_path / "systemctl.args"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_query_units_names_each_unit(tmp_path):
    units, err = query_units([12, 1, 1], fake_systemctl(tmp_path, SHOW_OUTPUT))
    assert err is None and sorted(units) == [1, 12]
    assert calls(tmp_path) == [[
        "show", "--no-pager", "-p",
        "Id,LoadState,ActiveState,SubState,NRestarts,MainPID,ActiveEnterTimestampMonotonic",
        "routemq-worker@1.service", "routemq-worker@12.service"]]


def test_systemd_backend_reads_units_and_their_pids(tmp_path):
    run = tmp_path / "run"
    write(run / "master.json", {"pid": os.getpid(), "backend": "systemd", "instances": [1, 12]})
    systemctl = fake_systemctl(tmp_path, SHOW_OUTPUT)
    snap = read_fleet(str(run), systemctl=systemctl)
    assert sorted(snap.units) == [1, 12] and snap.notes == []
    assert 4242 in snap.pids  # the unit's main pid is checked even without a health file
    assert [c[0] for c in calls(tmp_path)] == ["list-units", "show"]
    assert calls(tmp_path)[1][-2:] == ["routemq-worker@1.service", "routemq-worker@12.service"]


def test_without_master_units_are_read_when_systemd_has_some(tmp_path):
    listing = ("routemq-worker@1.service  loaded active running RouteMQ worker 1\n"
               "routemq-worker@12.service loaded failed failed  RouteMQ worker 12\n")
    snap = read_fleet(str(tmp_path), systemctl=fake_systemctl(tmp_path, SHOW_OUTPUT, listing))
    assert sorted(snap.units) == [1, 12]
    s = build_status(snap)
    assert s["backend"] == "systemd" and s["plan_source"] == "systemd units"


def test_without_master_or_units_systemd_is_left_alone(tmp_path):
    snap = read_fleet(str(tmp_path), systemctl=fake_systemctl(tmp_path, SHOW_OUTPUT))
    assert snap.units is None and [c[0] for c in calls(tmp_path)] == ["list-units"]
    snap = read_fleet(str(tmp_path), systemctl=str(tmp_path / "absent" / "systemctl"))
    assert snap.units is None and snap.notes == []  # no systemd at all: nothing to say


def test_systemctl_failure_under_a_systemd_master_is_noted(tmp_path):
    write(tmp_path / "master.json", {"pid": 1, "backend": "systemd", "instances": [1]})
    snap = read_fleet(str(tmp_path), systemctl=fake_systemctl(tmp_path, "", fail=True))
    assert snap.units is None
    assert snap.notes == ["cannot read the worker units' state: systemctl show failed: System "
                          "has not been booted with systemd as init system (PID 1). Can't "
                          "operate."]
    snap = read_fleet(str(tmp_path), systemctl=str(tmp_path / "absent" / "systemctl"))
    assert snap.notes[-1].endswith("systemctl not found")


# --- with the configuration -----------------------------------------------------------------

class Config:
    def __init__(self, runtime_dir, app_root, worker_count=3):
        self.runtime_dir, self.app_root, self.worker_count = runtime_dir, app_root, worker_count
        self.router_directory, self.health_interval, self.mqtt_group_name = \
            "app.routers", 1.0, "g"


def test_without_plan_the_instances_are_1_to_worker_count(tmp_path):
    now = time.time()
    write(tmp_path / "workers" / "2.json", {"pid": os.getpid(), "updated_at": now,
                                             "state": "running", "connected": True,
                                             "routes_held": ["shared:a", "single:b"]})
    snap = read_configured_fleet(Config(str(tmp_path), str(APP), worker_count=3), units=False)
    assert snap.plan_source == "standalone"
    assert snap.plan.assignments == {1: (), 2: ("shared:a", "single:b"), 3: ()}
    assert snap.notes == ["no plan.json: the planned instances are 1..worker_count, their "
                          "routes those their health files report"]
    s = build_status(snap)
    assert (s["health"]["total_workers"], s["health"]["healthy_workers"]) == (3, 1)


def test_without_plan_and_auto_the_health_files_say_which(tmp_path):
    write(tmp_path / "workers" / "1.json", {"pid": os.getpid(), "updated_at": time.time(),
                                             "state": "running", "connected": True})
    snap = read_configured_fleet(Config(str(tmp_path), str(APP), worker_count="auto"),
                                 units=False)
    assert snap.plan.assignments == {1: ()} and sorted(snap.workers) == [1]
    assert "the planned instances are those with health files" in snap.notes[-1]
    assert build_status(snap)["health"]["status"] == "healthy"  # 1 of the 1 it knows


def test_status_never_imports_the_application(tmp_path):
    """An application whose router module leaves a marker when imported: status reads the
    runtime directory only (it runs as root; the application is anyone's code)."""
    marker = tmp_path / "imported"
    routers = tmp_path / "app" / "app" / "routers"
    routers.mkdir(parents=True)
    (tmp_path / "app" / "app" / "__init__.py").write_text("")
    (routers / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (tmp_path / "run").mkdir()
    for worker_count in (2, "auto"):
        snap = read_configured_fleet(Config(str(tmp_path / "run"), str(tmp_path / "app"),
                                            worker_count), units=False)
        assert snap.plan_source == "standalone"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "ROUTEMQ_"))}
    env.update(PYTHONPATH=str(Path(__file__).resolve().parents[2]), ROUTEMQ_CONFIG=os.devnull,
               ROUTEMQ_RUNTIME_DIR=str(tmp_path / "run"),
               ROUTEMQ_CONFIG_DIR=str(tmp_path / "conf.d"))
    for command in (["status", "--json"], ["metrics"]):
        done = subprocess.run([sys.executable, "-m", "routemq", *command], env=env,
                              cwd=str(tmp_path / "app"), capture_output=True, text=True,
                              timeout=60)
        assert done.stdout and "Traceback" not in done.stderr, done.stderr
    assert not marker.exists()


def test_a_plan_file_means_the_application_is_not_loaded(tmp_path):
    write(tmp_path / "plan.json", Plan({5: ("x",)}).to_json())
    snap = read_configured_fleet(Config(str(tmp_path), "/nonexistent"), units=False)
    assert snap.plan_source == "plan.json" and snap.notes == []


def test_unit_names_are_spelled_in_one_place():
    assert unit_name(7) == "routemq-worker@7.service"
    assert [unit_instance(unit_name(i)) for i in (1, 64)] == [1, 64]
    for other in ("routemq-master.service", "routemq-worker@.service", "routemq-worker@x.service",
                  "routemq-worker@3.service.d", "xroutemq-worker@3.service"):
        assert unit_instance(other) is None, other


def test_docstring_examples():
    assert doctest.testmod(fleet).failed == 0
