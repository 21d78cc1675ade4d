"""RouteMQ 0.25's controller, context and client, as a `routemq new` project uses them."""
import asyncio
import logging

from routemq.controller import Controller
from routemq.dispatcher import Dispatcher
from routemq.middleware import Middleware
from routemq.mqtt import ConnectOptions, MqttClient
from routemq.router import Router
from tests.unit.test_dispatcher import D


class LoggingMiddleware(Middleware):
    """What RouteMQ 0.25's generated app/middleware/example_middleware.py does with context."""

    seen: list = []

    async def handle(self, context, next_handler):
        topic = context.get("topic", "unknown")
        client_id = context.get("client", {})._client_id if "client" in context else "unknown"
        self.seen.append((topic, client_id, context["route_pattern"], sorted(context)))
        context["extra"] = "set by middleware"
        return await next_handler(context)


class ExampleController(Controller):
    calls: list = []

    @staticmethod
    async def handle_message(device_id, payload, client):
        ExampleController.calls.append((device_id, payload, client))
        return {"status": "success", "device_id": device_id}


def test_controller_has_routemqs_class_logger():
    assert isinstance(Controller.logger, logging.Logger)
    assert ExampleController.logger is Controller.logger


def test_worker_hands_middleware_and_handler_the_paho_client():
    """The Dispatcher as the worker builds it, with a real (unconnected) MqttClient: the
    context is a dict, `client` is paho's Client (`_client_id`, `publish`)."""
    LoggingMiddleware.seen.clear()
    ExampleController.calls.clear()
    mqtt = MqttClient(ConnectOptions(client_id="routemq-host-1"), manual_ack=True)
    router = Router()
    with router.group(prefix="devices") as devices:
        devices.on("message/{device_id}", ExampleController.handle_message,
                   middleware=[LoggingMiddleware()], qos=1)
    acked = []
    dispatcher = Dispatcher(router, client=mqtt, ack=acked.append)
    dispatcher.hold(router.routes)

    async def main():
        dispatcher.submit(D("devices/message/dev42", b'{"t": 21}', mid=1))
        assert await dispatcher.drain(5)
    asyncio.run(main())
    assert LoggingMiddleware.seen == [
        ("devices/message/dev42", b"routemq-host-1", "devices/message/{device_id}",
         ["client", "message", "params", "payload", "route", "route_pattern", "topic"])]
    [(device_id, payload, client)] = ExampleController.calls
    assert (device_id, payload) == ("dev42", {"t": 21})
    assert client is mqtt.paho and callable(client.publish)
    assert [d.mid for d in acked] == [1]


def test_dispatcher_without_paho_passes_its_client_through():
    """A client that wraps no paho client (tests, the Python API) reaches handlers as is."""
    got = []

    async def handler(payload, client):
        got.append(client)
    router = Router()
    router.on("t", handler)
    dispatcher = Dispatcher(router, client="C", ack=lambda d: None)
    dispatcher.hold(router.routes)

    async def main():
        dispatcher.submit(D("t"))
        assert await dispatcher.drain(5)
    asyncio.run(main())
    assert got == ["C"]
