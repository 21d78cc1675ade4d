"""The MQTT client's awaitable subscribe and unsubscribe (MqttClient.subscribed and
unsubscribed), on a loop-driven client against a real mosquitto: the broker's answer comes
back to the coroutine that asked, and a connection that ends first says so."""
from __future__ import annotations

import asyncio

import pytest

from routemq.mqtt import ConnectOptions, MqttClient
from tests.integration.broker import Mosquitto


def client(broker: Mosquitto, connected: asyncio.Event, protocol: str) -> MqttClient:
    options = ConnectOptions(host=broker.host, port=broker.port, client_id="acks",
                             protocol=protocol, persistent=False)
    return MqttClient(options, on_connect=lambda present, rc: connected.set())


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_subscribed_and_unsubscribed_wait_for_the_brokers_answer(broker, protocol):
    async def main():
        connected = asyncio.Event()
        mqtt = client(broker, connected, protocol)
        mqtt.connect_async()
        mqtt.loop_start()
        await asyncio.wait_for(connected.wait(), 10)
        codes = await asyncio.wait_for(mqtt.subscribed(
            [("a/+", 1, None), ("b/#", 0, None), ("c", 1, 7)]), 10)
        assert sorted(codes) == [0, 1, 1]
        await asyncio.wait_for(mqtt.unsubscribed(["a/+", "b/#"]), 10)
        await asyncio.to_thread(mqtt.disconnect)
    asyncio.run(main())


def test_offline_or_cut_off_it_raises_connection_error(broker):
    async def main():
        connected = asyncio.Event()
        mqtt = client(broker, connected, "5")
        with pytest.raises(ConnectionError):
            await mqtt.subscribed([("a", 1, None)])  # never connected
        mqtt.connect_async()
        mqtt.loop_start()
        await asyncio.wait_for(connected.wait(), 10)
        broker.stop()  # no SUBACK will come: the connection ends first
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(mqtt.subscribed([("a", 1, None)]), 10)
        await asyncio.to_thread(mqtt.disconnect)
    asyncio.run(main())
