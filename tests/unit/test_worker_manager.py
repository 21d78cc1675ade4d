"""The seed's WorkerManager unit tests, against our API (no processes started)."""
from routemq.router import Route, Router
from routemq.worker_manager import WorkerManager


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
    import pytest
    with pytest.raises(ValueError, match="backend must be"):
        WorkerManager(Router(), "g", backend="docker")


def test_application_loads_the_routes_and_its_manager(monkeypatch):
    import os

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
