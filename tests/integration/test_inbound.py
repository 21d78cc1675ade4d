"""routemq.inbound against a fake broker on loopback: deliveries decoded by the worker itself,
their PUBACKs batched into paho's output, and a malformed packet ending the connection with
one clear log line, no wrong PUBACK, and a reconnect."""
from __future__ import annotations

import asyncio
import fcntl
import logging
import socket
import struct
import termios
import threading
import time

import pytest

from routemq.mqtt import ConnectOptions, MqttClient
from tests.mqtt_wire import packet, vbi


def publish(topic: bytes, payload: bytes, mid: int, sub_id: int = 1) -> bytes:
    props = b"\x0b" + vbi(sub_id)
    return packet(0x32, len(topic).to_bytes(2, "big") + topic + mid.to_bytes(2, "big")
                  + vbi(len(props)) + props + payload)


class FakeBroker:
    """Accepts MQTT 5 clients one at a time: CONNACK, SUBACK, then sends `script` (bytes)
    and records every packet the client sends (type, body) per connection."""

    def __init__(self, script: bytes) -> None:
        self.script = script
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections: list[list[tuple[int, bytes]]] = []
        self.conn: socket.socket | None = None  # the connection being served
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            seen: list[tuple[int, bytes]] = []
            self.connections.append(seen)
            self.conn = conn
            with conn:
                self._session(conn, seen)

    def _read_packet(self, conn: socket.socket) -> tuple[int, bytes] | None:
        head = conn.recv(1)
        if not head:
            return None
        length, mult = 0, 1
        while True:
            byte = conn.recv(1)[0]
            length += (byte & 0x7F) * mult
            mult *= 128
            if not byte & 0x80:
                break
        body = b""
        while len(body) < length:
            chunk = conn.recv(length - len(body))
            if not chunk:
                return None
            body += chunk
        return head[0] >> 4, body

    def _session(self, conn: socket.socket, seen: list[tuple[int, bytes]]) -> None:
        try:
            while True:
                got = self._read_packet(conn)
                if got is None:
                    return
                seen.append(got)
                kind, body = got
                if kind == 1:  # CONNECT
                    conn.sendall(packet(0x20, b"\x00\x00\x00"))
                elif kind == 8:  # SUBSCRIBE: grant QoS 1, then the script
                    conn.sendall(packet(0x90, body[:2] + b"\x00\x01"))
                    conn.sendall(self.script)
                elif kind == 12:  # PINGREQ
                    conn.sendall(packet(0xD0, b""))
        except OSError:
            return

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def client_for():
    """make(port, got): a started MqttClient (call it inside the test's loop) that records
    and acknowledges each delivery in `got`; `await stop()` before the loop ends."""
    clients = []

    def make(port: int, got: list) -> MqttClient:
        ready = asyncio.Event()

        def on_message(m):
            got.append(m)
            client.ack(m.mid, m.qos, m.generation)

        def on_connect(*_):
            ready.set()
            asyncio.get_running_loop().create_task(client.subscribed([("t/#", 1, 1)]))
        client = MqttClient(ConnectOptions(host="127.0.0.1", port=port, client_id="inb",
                                           receive_maximum=50), manual_ack=True,
                            on_message=on_message, on_connect=on_connect)
        client.reconnect_delay_set(0.05, 0.2)
        clients.append(client)
        client.connect_async()
        client.loop_start()
        return client

    async def stop() -> None:
        for c in clients:
            await asyncio.to_thread(c.disconnect, 2)
    make.stop = stop
    yield make


def run_until(condition, timeout=10.0):
    async def main():
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "condition not met in time"
            await asyncio.sleep(0.01)
    return main()


def unread(sock: socket.socket) -> int:
    """Bytes the kernel holds for `sock` that nobody has read yet."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4))[0]


def session(broker: FakeBroker, client_for, body):
    """Run the coroutine function `body` on a fresh loop, then stop its clients and the
    fake broker whatever happened; what `body` returned."""
    async def main():
        try:
            return await body()
        finally:
            await client_for.stop()
    try:
        return asyncio.run(main())
    finally:
        broker.close()


def test_deliveries_are_decoded_and_acked_in_one_batch(client_for):
    script = b"".join(publish(b"t/%d" % i, b'{"n": %d}' % i, i + 1) for i in range(20))
    broker = FakeBroker(script)
    got: list = []

    async def main():
        client = client_for(broker.port, got)
        await run_until(lambda: len(got) == 20)
        acks = lambda: [b for k, b in broker.connections[0] if k == 4]  # noqa: E731
        await run_until(lambda: len(acks()) == 20)
        assert client._driver.reader is not None  # read by routemq.inbound, not paho
        return acks()
    acks = session(broker, client_for, main)
    assert [(m.topic, m.payload, m.qos, m.subscription_ids) for m in got[:2]] == \
        [("t/0", b'{"n": 0}', 1, (1,)), ("t/1", b'{"n": 1}', 1, (1,))]
    assert acks == [i.to_bytes(2, "big") for i in range(1, 21)]


@pytest.mark.parametrize("bad, why", [
    (packet(0x36, b"\x00\x03t/1\x00\x05\x00{}"), "PUBLISH with QoS 3"),
    (packet(0x32, b"\x00\x03t/+\x00\x05\x00{}"), "topic contains a wildcard"),
    (packet(0x32, b"\x00\x03t/1\x00\x00\x00{}"), "packet id 0"),
])
def test_a_malformed_packet_closes_the_connection_with_a_clear_line(client_for, caplog, bad,
                                                                   why):
    good = publish(b"t/1", b"{}", 7)
    broker = FakeBroker(good + bad + publish(b"t/2", b"{}", 8))
    got: list = []
    caplog.set_level(logging.ERROR, logger="routemq.mqtt")

    async def main():
        client_for(broker.port, got)
        # the connection is closed and made again (the fake broker replays its script)
        await run_until(lambda: len(broker.connections) >= 2 and len(got) >= 2)
    session(broker, client_for, main)
    first = broker.connections[0]
    # the good message before the bad packet was delivered; the one after it never was
    assert [m.mid for m in got[:2]] == [7, 7] and all(m.topic == "t/1" for m in got)
    assert [b for k, b in first if k == 4] in ([], [(7).to_bytes(2, "big")])
    assert not any(k == 4 and b[:2] == (8).to_bytes(2, "big") for k, b in first)
    lines = [r.getMessage() for r in caplog.records if "malformed packet" in r.getMessage()]
    assert lines and why in lines[0], lines


def test_a_busy_reader_gathers_its_next_deliveries_and_a_quiet_one_never_waits(client_for,
                                                                                monkeypatch):
    """routemq.mqtt_aio's gathering: one message per read is read at once; a read of
    GATHER_AFTER or more leaves the socket alone for GATHER_DELAY, and what arrives meanwhile
    is read then, all of it acked; a pause meanwhile wins until resume."""
    from routemq.mqtt_aio import GATHER_AFTER

    broker = FakeBroker(b"")
    got: list = []
    gathered: list[int] = []

    async def main():
        client = client_for(broker.port, got)
        await run_until(lambda: client.connected and broker.conn is not None and any(
            k == 8 for k, _ in broker.connections[-1]))
        driver = client._driver
        real = driver._gathered
        driver._gathered = lambda fd: (gathered.append(len(got)), real(fd))
        for i in range(5):  # quiet: one at a time
            broker.conn.sendall(publish(b"t/q", b"{}", i + 1))
            await run_until(lambda: len(got) == i + 1)
            assert driver.gathering is None
        assert gathered == []
        burst = b"".join(publish(b"t/b", b"{}", 100 + i) for i in range(GATHER_AFTER * 3))
        broker.conn.sendall(burst)
        await run_until(lambda: len(got) == 5 + GATHER_AFTER * 3)
        await run_until(lambda: driver.gathering is not None or gathered)
        broker.conn.sendall(publish(b"t/late", b"{}", 200))
        await run_until(lambda: len(got) == 6 + GATHER_AFTER * 3)
        assert gathered and got[-1].topic == "t/late"
        # Paused while gathering (made long enough to see): nothing is read until resume().
        monkeypatch.setattr("routemq.mqtt_aio.GATHER_DELAY", 30.0)
        broker.conn.sendall(burst.replace(b"t/b", b"t/c"))
        await run_until(lambda: driver.gathering is not None)
        driver.pause()
        assert driver.gathering is None
        before = len(got)
        broker.conn.sendall(publish(b"t/p", b"{}", 300))
        sock = driver.client.socket()
        await run_until(lambda: unread(sock) > 0)  # it arrived, in the kernel's buffer
        for _ in range(20):
            await asyncio.sleep(0)  # loop turns in which a reader would have taken it
        assert unread(sock) > 0 and len(got) == before
        driver.resume()
        await run_until(lambda: got[-1].topic == "t/p")
        acks = lambda: [b for k, b in broker.connections[-1] if k == 4]  # noqa: E731
        await run_until(lambda: len(acks()) == len(got))
    session(broker, client_for, main)
    assert len({(m.topic, m.mid) for m in got}) == len(got) == 7 + GATHER_AFTER * 6
