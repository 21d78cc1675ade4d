"""MqttClient driven from an asyncio loop (routemq.mqtt_aio), against a real mosquitto.

`loop_start()` called from a coroutine runs the client on that loop: no network thread,
callbacks on the loop's thread, reconnects with backoff, and a disconnect that sends what
is queued (acks included) before DISCONNECT. Run with both paho versions.
"""
from __future__ import annotations

import asyncio
import fcntl
import struct
import termios
import threading
from pathlib import Path
from typing import Any

import pytest

from routemq import mqtt as rmq
from routemq.mqtt import ConnectOptions, Message, MqttClient
from tests.helpers import wait_until
from tests.integration.broker import Mosquitto, free_port, publish_many

needs_manual_ack = pytest.mark.skipif(not rmq.MANUAL_ACK_AVAILABLE,
                                      reason="paho-mqtt cannot do or emulate manual ack")


class LoopProbe:
    """Collects callbacks on the loop and lets a coroutine wait for a condition."""

    def __init__(self) -> None:
        self.threads: set[int] = set()
        self.connects: list[bool] = []
        self.failures: list[str] = []
        self.disconnects: list[str] = []
        self.messages: list[Message] = []
        self.subacks: list[int] = []
        self.changed = asyncio.Event()

    def _note(self, items: list, item: Any) -> None:
        self.threads.add(threading.get_ident())
        items.append(item)
        self.changed.set()

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_connect": lambda sp, rc: self._note(self.connects, sp),
            "on_connect_failed": lambda text: self._note(self.failures, text),
            "on_disconnect": lambda text: self._note(self.disconnects, text),
            "on_message": lambda msg: self._note(self.messages, msg),
            "on_subscribe": lambda mid, granted: self._note(self.subacks, mid),
        }

    async def until(self, predicate: Any, timeout: float = 20.0) -> None:
        async def wait() -> None:
            while not predicate():
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(wait(), timeout)


def make_client(port: int, client_id: str, probe: LoopProbe, **kw: Any) -> MqttClient:
    options = ConnectOptions(host="127.0.0.1", port=port, client_id=client_id,
                             persistent=True, receive_maximum=20, keepalive=10)
    client = MqttClient(options, manual_ack=kw.pop("manual_ack", False),
                        **probe.callbacks(), **kw)
    client.reconnect_delay_set(0.1, 1)
    return client


def unread_bytes(client: MqttClient) -> int:
    """Bytes the kernel holds in the client's socket that nobody has read yet (FIONREAD)."""
    raw = fcntl.ioctl(client._client.socket().fileno(), termios.FIONREAD, b"\0" * 4)
    return struct.unpack("i", raw)[0]


async def connected(port: int, client_id: str, **kw: Any) -> tuple[MqttClient, LoopProbe]:
    """A loop-driven client (and its probe) once its CONNACK arrived."""
    probe = LoopProbe()
    client = make_client(port, client_id, probe, **kw)
    client.connect_async()
    client.loop_start()
    await probe.until(lambda: probe.connects)
    return client, probe


@needs_manual_ack
def test_loop_driven_client_has_no_thread_and_flushes_acks_on_disconnect(broker: Mosquitto
                                                                          ) -> None:
    async def main() -> None:
        client, probe = await connected(broker.port, "aio-acks", manual_ack=True)
        assert client._client._thread is None  # no paho network thread
        client.subscribe([("aio/acks", 1, 1)])
        await probe.until(lambda: probe.subacks)
        publishing = asyncio.ensure_future(
            asyncio.to_thread(publish_many, broker, "aio/acks", 3000, 1))
        acked = 0
        while acked < 3000:  # "handlers" finish in bursts; each burst is acked at once
            await probe.until(lambda: len(probe.messages) > acked)
            for msg in probe.messages[acked:]:
                assert client.ack(msg.mid, msg.qos, msg.generation)
            acked = len(probe.messages)
        await publishing
        await asyncio.to_thread(client.disconnect)  # right after the last acks
        assert probe.threads == {threading.get_ident()}  # every callback on the loop
        assert probe.disconnects == ["disconnected by client"]
        assert len({m.payload for m in probe.messages}) == 3000

        # Same session again: every ack reached the broker before DISCONNECT, so nothing
        # comes back.
        client2, again = await connected(broker.port, "aio-acks", manual_ack=True)
        assert again.connects == [True]  # the persistent session was there
        # A marker on the session's subscription: anything unacknowledged would come first.
        await asyncio.to_thread(publish_many, broker, "aio/acks", ["marker"], 1)
        await again.until(lambda: again.messages)
        assert [m.payload for m in again.messages] == [b"marker"]
        await asyncio.to_thread(client2.disconnect)

    asyncio.run(main())


def test_loop_driven_client_reconnects_after_broker_restart(broker: Mosquitto) -> None:
    async def main() -> None:
        client, probe = await connected(broker.port, "aio-restart")
        await asyncio.to_thread(broker.restart)
        await probe.until(lambda: len(probe.connects) >= 2 and probe.disconnects)
        assert probe.disconnects[0].startswith(("connection lost", "disconnected by broker"))
        assert client.connected
        client.subscribe([("aio/after", 0, None)])
        await probe.until(lambda: probe.subacks)
        await asyncio.to_thread(publish_many, broker, "aio/after", ["x"], 0)
        await probe.until(lambda: probe.messages)
        await asyncio.to_thread(client.disconnect)

    asyncio.run(main())


def test_loop_driven_client_reports_refusal_then_connects(tmp_path: Path) -> None:
    port = free_port()
    late = Mosquitto(tmp_path / "late", persistence=False)
    late.port = port  # start() keeps a preset port

    async def main() -> None:
        probe = LoopProbe()
        client = make_client(port, "aio-late", probe)
        client.connect_async()
        client.loop_start()
        await probe.until(lambda: len(probe.failures) >= 2)  # retried with backoff
        assert "connection refused" in probe.failures[0]
        await asyncio.to_thread(late.start)
        await probe.until(lambda: probe.connects)
        await asyncio.to_thread(client.disconnect)

    try:
        asyncio.run(main())
    finally:
        late.stop()


def test_pause_reading_leaves_deliveries_at_the_broker_until_resumed(broker: Mosquitto
                                                                     ) -> None:
    async def main() -> None:
        client, probe = await connected(broker.port, "aio-pause")
        client.subscribe([("aio/pause", 0, None)])
        await probe.until(lambda: probe.subacks)
        await asyncio.to_thread(publish_many, broker, "aio/pause", 50, 0)
        await probe.until(lambda: len(probe.messages) == 50)
        client.pause_reading()
        await asyncio.to_thread(publish_many, broker, "aio/pause", 500, 0)
        # The 500 (22 bytes or more each) reach the client's socket and stay there unread,
        # while the loop runs: a client reading on would never let them pile up.
        await asyncio.to_thread(wait_until, lambda: unread_bytes(client) >= 500 * 22, 10,
                                "the 500 messages waiting unread in the socket")
        held_back = len(probe.messages)
        client.resume_reading()
        await probe.until(lambda: len(probe.messages) == 550)
        # Paused, nothing more was taken (at most what was read ahead before the pause).
        assert held_back == 50
        await asyncio.to_thread(client.disconnect)

    asyncio.run(main())
