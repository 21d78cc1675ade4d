"""The example application's handlers, tested without a broker (routemq.testing).

Run from examples/iot: `python3 -m pytest tests` (the RouteMQ test suite runs them too:
tests/unit/test_example_app.py). Plain pytest: each test drives its coroutine with
asyncio.run, no plugin needed.
"""
import asyncio
from pathlib import Path

import pytest

from routemq.registry import load_router
from routemq.testing import TestClient

APP_ROOT = Path(__file__).resolve().parents[1]


def publish(topic, payload=b"", **options):
    """(the handler's result, what it published), the application loaded as a worker does."""
    async def main():
        async with TestClient(load_router("app.routers", APP_ROOT)) as tc:
            return await tc.publish(topic, payload, **options), tc.published
    return asyncio.run(main())


def test_sensor_reading_returns_its_value():
    assert publish("sensors/42/data", {"value": 21.5}) == (21.5, [])


def test_sensor_reading_that_is_not_json_has_no_value():
    assert publish("sensors/42/data", "garbage") == (None, [])


def test_bulk_telemetry_counts_its_items():
    assert publish("telemetry/bulk", [{"v": 1}, {"v": 2}, {"v": 3}])[0] == 3


def test_command_request_gets_a_reply_with_its_correlation_data():
    result, published = publish("devices/7/commands", {"command": "reboot"},
                                response_topic="replies/app-1", correlation_data=b"req-9")
    assert result == "reboot"
    [reply] = published
    assert (reply.topic, reply.correlation_data) == ("replies/app-1", b"req-9")
    assert reply.payload == {"device_id": "7", "command": "reboot", "status": "done"}


def test_command_without_response_topic_publishes_nothing():
    assert publish("devices/7/commands", {"command": "reboot"}) == ("reboot", [])


def test_logs_route_takes_every_level_below_logs():
    assert publish("logs/gateway/7/syslog", b"line") == (None, [])


def test_unknown_topic_is_a_value_error():
    with pytest.raises(ValueError, match="No route found for topic: nowhere"):
        publish("nowhere")
