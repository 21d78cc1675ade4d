"""The WorkerManager unit tests of RouteMQ's shared-subscriptions guide, against our API;
settings through the one configuration parser; the child-process back end (restarts, the
watchdog, parent death) with real stand-in processes; no broker."""
import os
import signal
import subprocess
import sys

import pytest

from routemq import backends
from routemq.backends import ProcessBackend, WorkerHandle
from routemq.errors import ConfigError, UsageError
from routemq.router import Route, Router
from routemq.worker_manager import WorkerManager
from tests.helpers import wait_until
from tests.processes import alive


def handler(payload, client):
    return None


def test_shared_route_identification():
    router = Router()
    router.on("regular/route", handler, shared=False)
    router.on("shared/route", handler, shared=True, worker_count=3)
    router.on("another/shared", handler, shared=True, worker_count=5)
    shared = WorkerManager(router, "test_group").get_shared_routes_info()
    assert len(shared) == 2
    topics = [r["topic"] for r in shared]
    assert "shared/route" in topics and "another/shared" in topics
    assert "regular/route" not in topics
    assert {"topic", "mqtt_topic", "qos", "worker_count"} <= set(shared[0])


def test_worker_count_calculation():
    router = Router()
    router.on("high/load", handler, shared=True, worker_count=8)
    router.on("medium/load", handler, shared=True, worker_count=4)
    manager = WorkerManager(router, "test_group", environ={})
    assert sum(r["worker_count"] for r in manager.get_shared_routes_info()) == 12
    assert manager.default_worker_count() == 8  # auto: the largest worker_count
    assert WorkerManager(router, "g", environ={"WORKER_COUNT": "3"}).default_worker_count() == 3


def test_shared_subscription_topic_format():
    route = Route("sensors/{device_id}/data", handler, shared=True)
    assert route.get_subscription_topic() == "sensors/+/data"
    assert route.get_subscription_topic("test_group") == "$share/test_group/sensors/+/data"
    router = Router()
    router.add_route(route)
    info = WorkerManager(router, "test_group").get_shared_routes_info()
    assert info[0]["subscription"] == "$share/test_group/sensors/+/data"


def test_unknown_backend_is_refused():
    with pytest.raises(UsageError, match="backend must be"):  # a ValueError too
        WorkerManager(Router(), "g", backend="docker")


def test_settings_come_from_the_one_configuration_parser(tmp_path):
    """The group and worker count are read as every `routemq` command reads them (here from
    a config file), not from two environment variables only; arguments win over both."""
    conf = tmp_path / "routemq.conf"
    conf.write_text("mqtt_group_name = from_file\nworker_count = 4\n")
    environ = {"ROUTEMQ_CONFIG": str(conf), "ROUTEMQ_CONFIG_DIR": str(tmp_path)}
    router = Router()
    router.on("a", handler, shared=True, worker_count=2)
    manager = WorkerManager(router, environ=environ)
    assert (manager.group_name, manager.default_worker_count()) == ("from_file", 4)
    assert manager.config.sources["mqtt_group_name"] == f"config file {conf}"
    manager = WorkerManager(router, "from_argument", environ=environ, worker_count="auto")
    assert (manager.group_name, manager.default_worker_count()) == ("from_argument", 2)


def test_every_key_can_be_given_the_password_included():
    """The password goes to the workers in their environment, never on a command line."""
    manager = WorkerManager(Router(), "g", environ={"ROUTEMQ_CONFIG": os.devnull},
                            mqtt_password="s3cret", mqtt_username="worker", tls=True,
                            mqtt_port=8883)
    assert manager.config.password == "s3cret" and manager.config.mqtt_username == "worker"
    assert manager.config.tls is True and manager.config.mqtt_port == 8883
    assert manager.environ["MQTT_PASSWORD"] == "s3cret" and manager.environ["ROUTEMQ_TLS"] == "true"
    assert "s3cret" not in repr(manager.config)


@pytest.mark.parametrize("settings, message", [
    ({"mqtt_brokr": "h"}, r"^routemq: config error: mqtt_brokr: unknown key "
                          r"\(did you mean mqtt_broker\?\)$"),
    ({"mqtt_port": 0}, r"^routemq: config error: mqtt_port = \"0\" in environment MQTT_PORT: "
                       r"must be"),
])
def test_a_bad_setting_is_one_config_error_that_names_it(settings, message):
    with pytest.raises(ConfigError, match=message):
        WorkerManager(Router(), "g", environ={"ROUTEMQ_CONFIG": os.devnull}, **settings)


def test_num_workers_must_be_a_positive_integer():
    manager = WorkerManager(Router(), "g", environ={"ROUTEMQ_CONFIG": os.devnull})
    for bad in (0, -1, True, "2"):
        with pytest.raises(UsageError, match="num_workers must be an integer >= 1"):
            manager.start_workers(bad)


def test_application_takes_any_key_the_password_included(monkeypatch):
    from routemq.application import Application
    root = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "iot")
    monkeypatch.setenv("ROUTEMQ_CONFIG", os.devnull)
    app = Application(app_root=root, mqtt_password="s3cret", mqtt_broker="broker.example")
    assert app.config.password == "s3cret" and app.config.mqtt_broker == "broker.example"
    assert app.config is app.worker_manager.config
    assert app.worker_manager.environ["MQTT_PASSWORD"] == "s3cret"


def test_application_loads_the_routes_and_its_manager(monkeypatch):
    from routemq.application import Application
    root = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "iot")
    monkeypatch.setenv("ROUTEMQ_CONFIG", os.devnull)
    monkeypatch.setenv("MQTT_GROUP_NAME", "production_workers")
    app = Application(app_root=root, worker_count=5)
    assert len(app.router.routes) == 6
    manager = app.worker_manager
    assert manager.group_name == "production_workers" and manager.default_worker_count() == 5
    assert {r["subscription"] for r in manager.get_shared_routes_info()} >= {
        "$share/production_workers/sensors/+/data"}
    # what a child worker gets: the settings given here, as environment variables
    assert manager.environ["WORKER_COUNT"] == "5"
    assert manager.environ["ROUTEMQ_APP_ROOT"] == os.path.abspath(root)


# --- the child-process back end: watchdog and parent death (real processes, no broker) ---

# A stand-in worker: writes its health file like a worker's ticker, `beats` times every
# 0.1 s, then blocks (a stalled loop); state and pid as given (pid "own": its own).
FAKE_WORKER = """
import json, os, sys, time
path, beats, state, pid = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
for n in range(10**9):
    if n < beats:
        doc = {"pid": os.getpid() if pid == "own" else int(pid), "state": state,
               "updated_at": time.time()}
        open(path + ".tmp", "w").write(json.dumps(doc))
        os.replace(path + ".tmp", path)
    time.sleep(0.1)
"""


@pytest.fixture
def fake_spawn(tmp_path, monkeypatch):
    """backends.spawn_worker replaced by FAKE_WORKER; returns the per-instance settings."""
    settings = {}
    (tmp_path / "workers").mkdir()

    def spawn(instance, environ, python=sys.executable):
        beats, state, pid = settings.get(instance, (10**9, "running", "own"))
        proc = subprocess.Popen([python, "-c", FAKE_WORKER,
                                  str(tmp_path / "workers" / f"{instance}.json"), str(beats),
                                  state, pid])
        return WorkerHandle(instance, proc)
    monkeypatch.setattr(backends, "spawn_worker", spawn)
    return settings


def test_the_manager_restarts_as_run_does(tmp_path, monkeypatch):
    """Through the process back end: a crash is restarted (same instance number); a clean
    exit (someone's SIGTERM) and a configuration error (exit 2) are not, as under
    `routemq run` and systemd's Restart=on-failure. Each worker plans for 1..num_workers."""
    exits = {1: 0, 2: 2, 3: 1}
    started = []

    def spawn(instance, environ, python=sys.executable):
        code = ("import time; time.sleep(60)" if instance in started else
                f"import sys; sys.exit({exits[instance]})")
        started.append(instance)
        assert environ["WORKER_COUNT"] == "3"
        return WorkerHandle(instance, subprocess.Popen([python, "-c", code]))
    monkeypatch.setattr(backends, "spawn_worker", spawn)
    manager = WorkerManager(Router(), "g", environ={"ROUTEMQ_CONFIG": os.devnull,
                                                    "ROUTEMQ_RUNTIME_DIR": str(tmp_path)})
    first = manager.start_workers(3)
    try:
        wait_until(lambda: not any(w.is_alive() for w in first), 15, "the stand-ins' exit")
        assert manager.restart_dead_workers() == [3]
        assert manager.workers[:2] == first[:2] and manager.workers[2] is not first[2]
        assert manager.workers[2].is_alive() and started == [1, 2, 3, 3]
    finally:
        manager.stop_workers(5)
    assert not manager.workers[2].is_alive()


def poll_until(backend, condition, timeout=15.0):
    def polled():
        backend.poll()
        return condition()
    wait_until(polled, timeout, "the condition", interval=0.05)


def test_a_stalled_worker_is_killed_and_restarted(tmp_path, fake_spawn, caplog):
    fake_spawn[1] = (3, "running", "own")  # three health writes, then a blocked loop
    backend = ProcessBackend({}, runtime_dir=str(tmp_path), stall_after=1.0)
    backend.start(1)
    backend.start(2)  # keeps writing: never judged stalled
    first, steady = backend.handles[1], backend.handles[2]
    try:
        poll_until(backend, lambda: backend.restarts() == {1: 1})
        assert first.exitcode == -signal.SIGKILL and backend.handles[1] is not first
        assert backend.handles[2] is steady and steady.is_alive()
        assert any(r.getMessage().startswith(f"worker 1 (pid {first.pid}) stalled: no health "
                                             "update for 1s; killing it")
                   for r in caplog.records)
    finally:
        backend.stop_all(5)


def test_a_worker_stuck_past_its_handler_timeout_is_restarted(tmp_path, fake_spawn, caplog):
    """Its loop runs (the file is fresh) but it sends no watchdog pings: systemd would kill
    it after WatchdogSec, and so does the back end."""
    fake_spawn[1] = (10**9, "stuck", "own")
    backend = ProcessBackend({}, runtime_dir=str(tmp_path), stall_after=1.0)
    backend.start(1)
    first = backend.handles[1]
    try:
        poll_until(backend, lambda: backend.restarts() == {1: 1})
        assert any(r.getMessage() == f"worker 1 (pid {first.pid}) stalled: a handler stuck "
                   "for 1s; killing it" for r in caplog.records)
    finally:
        backend.stop_all(5)


def assert_never_restarted(backend, seconds):
    """Poll as `routemq run` does for `seconds` (a window longer than the stall limit: a
    check that nothing happens needs the time to pass): nothing is killed or restarted."""
    restarted = wait_until(backend.poll, seconds, "a restart (none expected)", interval=0.05,
                           fail=False)  # poll() returns the restarted instances
    assert restarted == []
    assert backend.handles[1].is_alive() and backend.restarts() == {}


@pytest.mark.parametrize("state, pid", [("running", "1"), ("stopping", "own"),
                                        ("joining", "own")])
def test_a_worker_is_not_judged_before_its_own_file_or_while_stopping(tmp_path, fake_spawn,
                                                                      state, pid):
    """A file with another pid is the previous process's (the new one is still starting);
    a stopping worker's drain is bounded by the worker itself."""
    fake_spawn[1] = (1, state, pid)
    backend = ProcessBackend({}, runtime_dir=str(tmp_path), stall_after=0.3)
    backend.start(1)
    try:
        assert_never_restarted(backend, 2.0)
    finally:
        backend.stop_all(5)


def test_without_a_runtime_dir_nothing_is_judged(tmp_path, fake_spawn):
    fake_spawn[1] = (1, "running", "own")
    backend = ProcessBackend({}, stall_after=0.1)
    backend.start(1)
    try:
        assert_never_restarted(backend, 0.5)  # five times the stall limit
    finally:
        backend.stop_all(5)


PARENT = """
import subprocess, sys, time
from routemq.backends import die_with_parent
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                         preexec_fn=die_with_parent())
print(child.pid, flush=True)
time.sleep(120)
"""


def test_children_die_with_their_parent(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": root})
    child = int(parent.stdout.readline())
    try:
        parent.kill()  # SIGKILL: no code of the parent runs
        parent.wait(10)
        assert wait_until(lambda: not alive(child), 10, "the child's end with its parent")
    finally:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
