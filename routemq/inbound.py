"""The worker's own reading of deliveries and writing of their PUBACKs, beside paho.

Why: paho spends ~20 µs on each MQTT 5 PUBLISH (an MQTTMessage, a Properties object parsed
property by property, its callbacks), and each acknowledgement costs a packet of its own
plus a write to its wake-up socketpair: together most of a worker's CPU per message. Under
the asyncio LoopDriver (mqtt_aio) the worker reads the socket itself:

- `Reader.read` takes what the socket has (64 KiB per recv), frames it (packets.Splitter)
  and decodes every QoS 0/1 PUBLISH itself (packets.decode_publish: ~1 µs), handing each to
  `deliver`. Every other packet (CONNACK, SUBACK, UNSUBACK, PINGRESP, PUBACK of our own
  publishes, DISCONNECT, a QoS 2 PUBLISH and PUBREL) goes to paho's own handler, in stream
  order, exactly as paho would have read it: connecting, subscribing, keepalive and
  reconnecting stay paho's.
- `Acks` gathers the PUBACKs of one loop turn (at most ACK_BATCH) into one entry of paho's
  output queue, written at once: they leave in order with paho's own packets (a SUBSCRIBE
  queued meanwhile is never cut in two), one send() per batch instead of a packet, a
  wake-up write and a send() per message, and without waiting a loop turn for the socket
  to be reported writable (the broker's in-flight window refills sooner).

A packet that breaks the protocol (packets.MalformedPacket) ends the connection with one
log line naming the problem; paho reconnects, and the broker delivers the unacknowledged
messages again.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

import paho.mqtt.client as mqtt

from routemq.packets import PUBLISH, MalformedPacket, Publish, Splitter, decode_publish

log = logging.getLogger("routemq.mqtt")

READ_BYTES = 65536  # per recv: many packets per system call
READS_PER_CALL = 16  # recv calls per readable callback before yielding to other callbacks
PUBACK = 0x40
ACK_BATCH = 32  # PUBACKs gathered before they are written without waiting for the turn's end

Deliver = Callable[[Publish], None]


class Reader:
    """Reads one paho client's socket (see the module docstring). On the loop thread only."""

    def __init__(self, client: Any, deliver: Deliver, protocol: int) -> None:
        self.client = client  # routemq.mqtt._PahoClient
        self.deliver = deliver
        self.protocol = protocol
        self.splitter = Splitter(protocol=protocol)
        self._sock: Any = None  # the socket the splitter's bytes came from
        self.delivered = 0  # deliveries handed to `deliver` by the last read()

    def read(self, stop: Callable[[], bool]) -> int:
        """Handle what is buffered, then read and handle until the socket has nothing
        (MQTT_ERR_AGAIN), `stop()` says so (backpressure), or READS_PER_CALL reads
        (MQTT_ERR_SUCCESS: call again soon). Any other paho code ends the connection."""
        client = self.client
        self.delivered = 0
        if client._sock is not self._sock:  # a new connection: nothing carries over
            self.splitter.reset()
            self._sock = client._sock
        rc = self._handle(stop)
        for _ in range(READS_PER_CALL):
            if rc or stop():
                return rc
            if client._sock is None:  # paho closed it (a DISCONNECT from the broker)
                return mqtt.MQTT_ERR_AGAIN
            try:
                data = client._sock_recv(READ_BYTES)
            except BlockingIOError:
                return mqtt.MQTT_ERR_AGAIN
            except OSError as exc:  # ConnectionError, TimeoutError, ssl errors
                log.debug("receive failed: %r", exc)
                return mqtt.MQTT_ERR_CONN_LOST
            if not data:
                return mqtt.MQTT_ERR_CONN_LOST
            with client._msgtime_mutex:  # what paho's keepalive check reads
                client._last_msg_in = mqtt.time_func()
            self.splitter.feed(data)
            rc = self._handle(stop)
            if len(data) < READ_BYTES and not _pending(client._sock):
                # The socket had less than we asked for: it is drained, and asking again
                # would only cost a system call that says so.
                return rc or mqtt.MQTT_ERR_AGAIN
        return rc

    def _handle(self, stop: Callable[[], bool]) -> int:
        deliver, protocol = self.deliver, self.protocol
        try:
            for first, body in self.splitter:
                if first >> 4 == PUBLISH and first & 0x06 != 0x04:  # QoS 0 or 1 (or 3: bad)
                    deliver(decode_publish(first, body, protocol))
                    self.delivered += 1
                else:
                    rc = self._to_paho(first, body)
                    if rc:
                        return rc
                    if self.client._sock is None:  # it ended the connection: stop here
                        return mqtt.MQTT_ERR_AGAIN
                if stop():
                    break
        except MalformedPacket as exc:
            log.error("the broker sent a malformed packet (%s); closing the connection",
                      exc, extra={"reason_code": exc.reason_code})
            return mqtt.MQTT_ERR_PROTOCOL
        return mqtt.MQTT_ERR_SUCCESS

    def _to_paho(self, first: int, body: bytes) -> int:
        """Hand one complete packet to paho's handler, as its own _packet_read would."""
        client = self.client
        client._in_packet = {"command": first, "have_remaining": 1, "remaining_count": [],
                             "remaining_mult": 1, "remaining_length": len(body),
                             "packet": bytearray(body), "to_process": 0, "pos": 0}
        try:
            return int(client._packet_handle())
        finally:
            client._in_packet = {"command": 0, "have_remaining": 0, "remaining_count": [],
                                 "remaining_mult": 1, "remaining_length": 0,
                                 "packet": bytearray(b""), "to_process": 0, "pos": 0}

    @property
    def buffered(self) -> bool:
        """Bytes read and not handled yet (a pause left them): resume must handle them."""
        return self.splitter.buffered > 0


def _pending(sock: Any) -> int:
    """Bytes a TLS socket decrypted and holds beyond what recv() returned (0 for TCP):
    they never make the socket readable again."""
    pending = getattr(sock, "pending", None)
    return pending() if pending is not None else 0


class Acks:
    """PUBACKs of one loop turn, queued to paho as one packet (see the module docstring)."""

    def __init__(self, client: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client  # routemq.mqtt._PahoClient
        self.loop = loop
        self.pending = bytearray()
        self.scheduled = False

    def add(self, mid: int) -> None:
        """Acknowledge QoS 1 message `mid` of the current connection (loop thread)."""
        pending = self.pending
        pending += b"\x40\x02" + mid.to_bytes(2, "big")
        if len(pending) >= 4 * ACK_BATCH:
            self.flush()
        elif not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self._end_of_turn)

    def _end_of_turn(self) -> None:
        self.scheduled = False
        self.flush()

    def flush(self) -> None:
        """Write what was gathered now (before a DISCONNECT, and at the end of each turn),
        behind whatever paho has queued; paho's writer finishes what the socket refuses."""
        client = self.client
        if self.pending and client._sock is not None:
            data = bytes(self.pending)
            # As paho's _packet_queue, minus its wake-up write (no select() to wake here)
            # and the writer registration that would delay this write by a loop turn.
            client._out_packet.append({"command": PUBACK, "mid": 0, "qos": 0, "pos": 0,
                                       "to_process": len(data), "packet": data,
                                       "info": None})
            client.loop_write()
        self.pending.clear()

    def drop(self) -> None:
        """The connection ended: its message ids mean nothing on the next one."""
        self.pending.clear()
