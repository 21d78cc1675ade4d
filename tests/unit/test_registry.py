"""Discovering a RouteMQ-style project's routers (routemq.registry)."""
import asyncio
import os
import textwrap

import pytest

from routemq.registry import RegistryError, RouterRegistry, load_router

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "iot")


def write(root, rel, text):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


@pytest.fixture
def project(tmp_path):
    """A RouteMQ project: app/routers/*.py, app/controllers, app/middleware."""
    write(tmp_path, "app/__init__.py", "")
    write(tmp_path, "app/routers/__init__.py", "")
    write(tmp_path, "app/controllers/__init__.py", "")
    write(tmp_path, "app/controllers/sensor_controller.py", """
        SEEN = []

        class SensorController:
            @staticmethod
            async def process_data(device_id, payload, client):
                SEEN.append(("data", device_id, payload))
                return "data"

            @staticmethod
            async def handle_alert(device_id, payload, client):
                SEEN.append(("alert", device_id, payload))
    """)
    write(tmp_path, "app/middleware.py", """
        from routemq.middleware import Middleware

        class Stamp(Middleware):
            async def handle(self, context, next_handler):
                context["payload"] = dict(context["payload"], stamped=True)
                return await next_handler(context)
    """)
    write(tmp_path, "app/routers/sensors.py", """
        from routemq.router import Router
        from app.controllers.sensor_controller import SensorController
        from app.middleware import Stamp

        router = Router()
        router.on("sensors/{device_id}/data", SensorController.process_data,
                  shared=True, worker_count=3, qos=1, middleware=[Stamp()])
    """)
    write(tmp_path, "app/routers/alerts.py", """
        from routemq.router import Router
        from app.controllers.sensor_controller import SensorController

        router = Router()
        with router.group(prefix="alerts") as g:
            g.on("{device_id}", SensorController.handle_alert)
    """)
    write(tmp_path, "app/routers/_helpers.py", "raise RuntimeError('private modules are skipped')")
    return tmp_path


def test_discovers_and_dispatches_a_routemq_project(project):
    router = RouterRegistry("app.routers", project).discover_and_load_routers()
    assert [r.topic for r in router.routes] == ["alerts/{device_id}", "sensors/{device_id}/data"]
    assert asyncio.run(router.dispatch("sensors/4/data", {"v": 1}, None)) == "data"
    asyncio.run(router.dispatch("alerts/9", {"level": "high"}, None))
    import app.controllers.sensor_controller as c
    assert c.SEEN == [("data", "4", {"v": 1, "stamped": True}),
                      ("alert", "9", {"level": "high"})]


def test_second_application_with_same_package_name_is_loaded_fresh(project, tmp_path_factory):
    load_router("app.routers", project)
    other = tmp_path_factory.mktemp("other")
    write(other, "app/__init__.py", "")
    write(other, "app/routers/__init__.py", "")
    write(other, "app/routers/only.py", """
        from routemq.router import Router
        router = Router()
        router.on("other/{x}", lambda x, payload, client: x)
    """)
    assert [r.topic for r in load_router("app.routers", other).routes] == ["other/{x}"]


def test_module_that_fails_to_import_names_the_file(project):
    write(project, "app/routers/broken.py", "import does_not_exist_anywhere\n")
    with pytest.raises(RegistryError) as err:
        load_router("app.routers", project)
    msg = str(err.value)
    assert os.path.join("app", "routers", "broken.py") in msg
    assert "does_not_exist_anywhere" in msg


def test_syntax_error_names_the_file(project):
    write(project, "app/routers/bad.py", "router = (\n")
    with pytest.raises(RegistryError, match=r"router module .*bad\.py: SyntaxError"):
        load_router("app.routers", project)


@pytest.mark.parametrize("where", ["app/routers/quits.py", "app/routers/sub/__init__.py",
                                   "app/routers/__init__.py"])
@pytest.mark.parametrize("code, shown", [
    ("import sys\nsys.exit(0)\n", "it called sys.exit(0) while being imported"),
    ("raise SystemExit('bye')\n", "it called sys.exit('bye') while being imported"),
    ("raise KeyboardInterrupt\n", "KeyboardInterrupt"),
])
def test_module_that_exits_at_import_is_an_error_naming_it(project, where, code, shown):
    """sys.exit(0) in a router module made the worker exit 0 silently (no restart, no why)."""
    write(project, where, code)
    with pytest.raises(RegistryError) as err:
        load_router("app.routers", project)
    msg = str(err.value)
    assert shown in msg and f"{os.path.join(project, where)}:" in msg, msg
    assert "\n" not in msg


def test_invalid_route_in_module_is_an_error(project):
    write(project, "app/routers/badroute.py", """
        from routemq.router import Router
        router = Router()
        router.on("a/#/b", lambda payload, client: None)
    """)
    with pytest.raises(RegistryError, match=r"badroute\.py: RouteError: invalid route pattern "
                       r"'a/#/b': .* \(.*badroute\.py:4\)$"):
        load_router("app.routers", project)


def test_duplicate_route_across_modules_is_an_error(project):
    write(project, "app/routers/zdup.py", """
        from routemq.router import Router
        router = Router()
        router.on("alerts/{other}", lambda other, payload, client: None)
    """)
    with pytest.raises(RegistryError, match=r"router module app.routers.zdup: route 'alerts/{other}' "
                                            r"duplicates route 'alerts/{device_id}'"):
        load_router("app.routers", project)


def test_router_attribute_of_wrong_type(project):
    write(project, "app/routers/wrong.py", "router = 42\n")
    with pytest.raises(RegistryError, match=r"wrong\.py: `router` is a int"):
        load_router("app.routers", project)


def test_missing_package_is_a_clear_error(tmp_path):
    with pytest.raises(RegistryError, match=r"router package 'app.routers' not found under "):
        load_router("app.routers", tmp_path)


def test_missing_app_root(tmp_path):
    with pytest.raises(RegistryError, match="is not a directory"):
        load_router("app.routers", tmp_path / "nope")


def test_subpackages_are_walked(project):
    write(project, "app/routers/v2/__init__.py", "")
    write(project, "app/routers/v2/extra.py", """
        from routemq.router import Router
        router = Router()
        router.on("v2/{x}", lambda x, payload, client: None)
    """)
    assert "v2/{x}" in [r.topic for r in load_router("app.routers", project).routes]


def test_example_application_loads():
    router = load_router("app.routers", EXAMPLE)
    topics = {r.topic: r for r in router.routes}
    assert topics["sensors/{device_id}/data"].worker_count == 3
    assert not topics["devices/{device_id}/commands"].shared
    assert topics["logs/{path*}"].mqtt_topic == "logs/#"
