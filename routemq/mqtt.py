"""A thin layer over paho-mqtt that behaves the same on paho 1.6 (Debian 12) and 2.x.

Features are detected, never version strings: ``CallbackAPIVersion`` (2.x callbacks) and
``Client.manual_ack_set`` (2.x manual ack).  Callbacks get plain values: ``Message``, bools,
ints and readable text.  They run in paho's network thread when ``loop_start()`` is called
from plain code, and on the asyncio loop itself when it is called from a coroutine (a worker):
then no thread is involved at all (see mqtt_aio.py for why that matters for throughput).

Acknowledgement: with ``manual_ack=True`` a QoS 1/2 message is acknowledged only by
``ack(mid, qos, generation)``, callable from any thread.  paho 2.x does this natively
(``SUPPORTS_MANUAL_ACK``); on 1.6 it is emulated by holding back paho's own PUBACK/PUBCOMP
(``CAN_EMULATE_MANUAL_ACK``).  Without manual ack paho acknowledges when ``on_message``
returns, so work must finish inside it.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, NamedTuple, Optional

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from routemq.mqtt_aio import LoopDriver
from routemq.packets import Publish

log = logging.getLogger(__name__)

HAS_CALLBACK_API_V2: bool = hasattr(mqtt, "CallbackAPIVersion")
SUPPORTS_MANUAL_ACK: bool = hasattr(mqtt.Client, "manual_ack_set")
# paho 1.6 acknowledges received messages through these two methods only, so holding them
# back until ack() gives 2.x's manual-ack semantics.
CAN_EMULATE_MANUAL_ACK: bool = (not SUPPORTS_MANUAL_ACK and hasattr(mqtt.Client, "_send_puback")
                                and hasattr(mqtt.Client, "_send_pubcomp"))
MANUAL_ACK_AVAILABLE: bool = SUPPORTS_MANUAL_ACK or CAN_EMULATE_MANUAL_ACK
MAX_SUBSCRIPTION_ID = 268_435_455  # MQTT 5 variable byte integer limit
READ_AHEAD_BYTES = 65536


@dataclass
class ConnectOptions:
    """Where and how to connect.  ``password`` never appears in repr()."""

    host: str = "localhost"
    port: int = 1883
    client_id: str = ""
    protocol: str = "5"  # "5" or "3.1.1"
    keepalive: int = 60
    persistent: bool = True
    session_expiry: int = 86_400  # seconds the broker keeps an offline MQTT 5 session
    username: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)
    tls: bool = False
    tls_ca_file: Optional[str] = None  # None: the system's CAs
    tls_cert_file: Optional[str] = None
    tls_key_file: Optional[str] = None
    tls_insecure: bool = False  # skip the host name check (never the chain check)
    # MQTT 5 Receive Maximum: caps the broker's first burst of unacknowledged QoS 1/2
    # deliveries.  Not a hard bound: mosquitto 2.0.11 releases a whole window per PUBACK.
    receive_maximum: Optional[int] = None
    # A peer that accepts TCP but never answers CONNECT would leave us waiting silently.
    connack_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.protocol not in ("5", "3.1.1"):
            raise ValueError(f"MQTT protocol must be '5' or '3.1.1', not {self.protocol!r}")
        if self.persistent and not self.client_id:
            raise ValueError("a persistent session needs a client id")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS client certificate and key must be given together")

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


class Message(NamedTuple):
    """One delivery.  ``generation`` identifies the connection it arrived on (for ack).

    Immutable; a NamedTuple rather than a frozen dataclass because one is built per
    message and a frozen dataclass's __init__ costs three times as much.
    """

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    dup: bool = False
    subscription_ids: tuple[int, ...] = ()  # MQTT 5 only
    generation: int = 0
    # paho's PUBLISH properties object as received (MQTT 5; None under 3.1.1), kept as it
    # is: only routemq.message reads it, and only for the routes that use a Message.
    properties: Any = None


def describe_reason(rc: Any, kind: str = "connack") -> str:
    """Readable text for a paho ReasonCode(s) or a plain int, any paho version.

    Plain ints are 3.1.1 CONNACK codes (``kind="connack"``) or paho MQTT_ERR_* codes ("error").
    """
    if hasattr(rc, "getName"):
        return f"{rc.getName()} ({rc.value})"
    text = mqtt.connack_string(rc) if kind == "connack" else mqtt.error_string(rc)
    return f"{text} ({rc})"


def _reason_value(rc: Any) -> int:
    return int(getattr(rc, "value", rc) or 0)


def _describe_exception(exc: BaseException, tls: bool) -> str:
    """One clear line for a failed socket/TLS connect."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or str(exc)
        return f"TLS handshake failed: certificate verify failed: {detail}"
    if isinstance(exc, (ssl.SSLError, ssl.CertificateError)):
        return f"TLS handshake failed: {getattr(exc, 'reason', None) or exc}"
    if tls and isinstance(exc, ConnectionResetError):
        # TCP worked (else: refused), so the peer dropped our ClientHello.
        return "TLS handshake failed: connection reset by peer (is this a TLS listener?)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class _PahoClient(mqtt.Client):
    """paho Client with small repairs (private paho API, guarded by the feature checks).

    - remembers why the last connection attempt failed: on_connect_fail gets no exception,
      so a wrong CA would otherwise be an endless silent retry loop;
    - ``emulated_ack`` (paho 1.6): PUBACK/PUBCOMP wait for ``send_ack``;
    - under manual ack, completes a PUBREL for a QoS 2 message it no longer knows (resent by
      the broker after a reconnect or restart): paho leaves it unanswered, and the broker
      would hold that message id in flight forever;
    - ``read_ahead`` (set by the asyncio LoopDriver, which reads every buffered packet per
      wake-up): one recv() of up to 64 KiB feeds many packets, where paho asks the socket
      for 1 byte, then the length bytes, then the rest — three system calls per message.
    """

    last_connect_error: Optional[BaseException] = None
    emulated_ack = False
    read_ahead = False
    _rbuf = b""
    _rpos = 0
    _rsock: Any = None  # the socket _rbuf came from: a new connection voids it

    def _sock_recv(self, bufsize: int) -> bytes:
        if not self.read_ahead:
            return super()._sock_recv(bufsize)
        if self._rsock is not self._sock:
            self._rbuf, self._rpos, self._rsock = b"", 0, self._sock
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(READ_AHEAD_BYTES)  # BlockingIOError when empty
            if len(data) <= bufsize:
                return data  # b"" at end of stream
            self._rbuf, self._rpos = data, 0
        start = self._rpos
        self._rpos = start + bufsize
        return self._rbuf[start:start + bufsize]

    def _send_puback(self, mid: int) -> Any:
        return mqtt.MQTT_ERR_SUCCESS if self.emulated_ack else super()._send_puback(mid)

    def _send_pubcomp(self, mid: int) -> Any:
        return mqtt.MQTT_ERR_SUCCESS if self.emulated_ack else super()._send_pubcomp(mid)

    def send_ack(self, mid: int, qos: int) -> Any:
        if not self.emulated_ack:
            return self.ack(mid, qos)
        return (mqtt.Client._send_puback if qos == 1 else mqtt.Client._send_pubcomp)(self, mid)

    def _handle_pubrel(self) -> Any:
        packet = self._in_packet.get("packet", b"")
        mid = struct.unpack("!H", packet[:2])[0] if len(packet) >= 2 else None
        known = mid in self._in_messages
        rc = super()._handle_pubrel()
        manual = self.emulated_ack or getattr(self, "_manual_ack", False)
        if manual and mid is not None and not known and rc == 0:
            rc = mqtt.Client._send_pubcomp(self, mid)
        return rc

    def reconnect(self, *args: Any, **kwargs: Any) -> Any:
        try:
            result = super().reconnect(*args, **kwargs)
        except Exception as exc:
            self.last_connect_error = exc
            raise
        self.last_connect_error = None
        return result


Callback = Optional[Callable[..., None]]
_CALLBACKS = ("on_connect", "on_connect_failed", "on_disconnect", "on_message",
              "on_subscribe", "on_unsubscribe")


class MqttClient:
    """One paho client with version-independent callbacks (all called in paho's thread).

    Callbacks (constructor keywords or attributes):
      on_connect(session_present: bool, reason: int)  successful CONNACK (reason 0)
      on_connect_failed(text: str)    socket/TLS error, refused CONNACK, no CONNACK in time
      on_disconnect(text: str)        an established connection ended
      on_message(msg: Message)
      on_subscribe(mid: int, granted: list[int])  granted QoS or reason code; >= 0x80 failed
      on_unsubscribe(mid: int)
    A callback's exception is logged and swallowed: left to paho 1.6 it would end the
    network thread.
    """

    def __init__(self, options: ConnectOptions, *, manual_ack: bool = False,
                 paho_logger: Optional[logging.Logger] = None, **callbacks: Callback) -> None:
        if manual_ack and not MANUAL_ACK_AVAILABLE:
            raise RuntimeError("this paho-mqtt can neither do nor emulate manual ack")
        unknown = set(callbacks) - set(_CALLBACKS)
        if unknown:
            raise TypeError(f"unknown MqttClient callbacks: {sorted(unknown)}")
        for name in _CALLBACKS:
            setattr(self, name, callbacks.get(name))
        self.options = options
        self.manual_ack = manual_ack
        self.connected = False
        # Bumped on every connect and disconnect: a mid only means something on the
        # connection it arrived on, so ack() drops acks from an older one.
        self.generation = 0
        self._lock = threading.Lock()
        self._attempt = 0  # sockets opened, to match a CONNACK timer to its attempt
        self._attempt_reported = False  # this attempt's failure already went to a callback
        self._connack_timer: Optional[threading.Timer] = None
        self._loop_started = False
        self._driver: Optional[LoopDriver] = None  # set when driven from an asyncio loop
        self._reconnect_delays = (1.0, 30.0)
        self.connacks = 0  # successful CONNACKs so far (the driver resets its backoff)
        self._acks: dict[int, asyncio.Future[Any]] = {}  # mid -> who awaits its SUBACK/UNSUBACK
        self._v5 = options.protocol == "5"
        self._client = self._make_client(paho_logger)

    def _make_client(self, paho_logger: Optional[logging.Logger]) -> _PahoClient:
        o = self.options
        kwargs: dict[str, Any] = {"client_id": o.client_id,
                                  "protocol": mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311}
        if not self._v5:
            kwargs["clean_session"] = not o.persistent
        if HAS_CALLBACK_API_V2:
            client = _PahoClient(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        else:
            client = _PahoClient(**kwargs)
        if self.manual_ack and SUPPORTS_MANUAL_ACK:
            client.manual_ack_set(True)
        client.emulated_ack = self.manual_ack and not SUPPORTS_MANUAL_ACK
        if paho_logger is not None:  # paho logs packet flags, never the password itself
            client.enable_logger(paho_logger)
        if o.username is not None:
            client.username_pw_set(o.username, o.password)
        if o.tls:
            # Our own context (as paho's tls_set, minus 1.6's deprecated protocol constant).
            context = ssl.create_default_context(cafile=o.tls_ca_file)
            if o.tls_cert_file:
                context.load_cert_chain(o.tls_cert_file, o.tls_key_file)
            context.check_hostname = not o.tls_insecure
            client.tls_set_context(context)
        for event in ("connect", "connect_fail", "socket_open", "disconnect", "message",
                      "subscribe", "unsubscribe"):
            setattr(client, f"on_{event}", getattr(self, f"_cb_{event}"))
        return client

    # -- connection ----------------------------------------------------------------------

    def reconnect_delay_set(self, min_delay: float = 1, max_delay: float = 30) -> None:
        """Backoff between reconnect attempts (doubling, capped); paho retries forever."""
        self._reconnect_delays = (min_delay, max_delay)
        self._client.reconnect_delay_set(min_delay, max_delay)

    def connect_async(self) -> None:
        """Prepare the connection; the network loop performs it (and every reconnect)."""
        o = self.options
        extra: dict[str, Any] = {}
        if self._v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = o.session_expiry if o.persistent else 0
            if o.receive_maximum:
                props.ReceiveMaximum = o.receive_maximum
            # Never MQTT_CLEAN_START_FIRST_ONLY: a restarted worker must get its queued
            # session back, so a persistent client never asks for a clean start.
            extra = {"clean_start": not o.persistent, "properties": props}
        self._client.connect_async(o.host, o.port, o.keepalive, **extra)

    def loop_start(self) -> None:
        """Run the network loop (connect, reconnect forever, callbacks): on the running
        asyncio loop when called from a coroutine, else in paho's own thread.

        Workers and drainers always use the loop (mqtt_aio). paho's thread stays for
        session.end_session, a short clean connection made from a worker thread while the
        loop waits for it, and for tests that drive a client without a loop."""
        try:
            loop: Optional[asyncio.AbstractEventLoop] = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            self._driver = LoopDriver(self, loop, *self._reconnect_delays)
            self._driver.start()
        else:
            self._client.loop_start()
        self._loop_started = True

    def disconnect(self, timeout: float = 5.0) -> None:
        """Send DISCONNECT (queued acks go out first) and end the network thread.

        The persistent session stays at the broker.  Called from a callback, this only
        requests the disconnect; the network thread then ends on its own.
        """
        self._cancel_connack_timer()
        if self._driver is not None:
            self._disconnect_driven(timeout)
            return
        self._client.disconnect()
        thread = getattr(self._client, "_thread", None)
        if not self._loop_started or thread is threading.current_thread():
            return
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():  # a callback is blocking it: do not hang in loop_stop
                log.warning("MQTT network thread still busy %ss after disconnect", timeout)
                return
        self._client.loop_stop()
        self._loop_started = False

    def _disconnect_driven(self, timeout: float) -> None:
        driver = self._driver
        assert driver is not None
        if threading.get_ident() == driver.thread_id:
            # On the loop itself we cannot wait: send DISCONNECT, the loop finishes it.
            driver.loop.create_task(driver.stop(timeout))
        elif not driver.loop.is_closed():
            future = asyncio.run_coroutine_threadsafe(driver.stop(timeout), driver.loop)
            try:
                future.result(timeout + 1)
            except Exception as exc:  # noqa: BLE001 - a stuck loop must not hang the caller
                log.warning("MQTT disconnect did not finish: %r", exc)
        self._loop_started = False

    def pause_reading(self) -> None:
        """Stop taking deliveries off the socket (backpressure) until resume_reading().

        Only when driven from an asyncio loop; paho's own thread cannot be paused, so this
        is a no-op there. Keepalive goes on; a pause is meant to last milliseconds.
        """
        if self._driver is not None:
            self._driver.pause()

    def resume_reading(self) -> None:
        if self._driver is not None:
            self._driver.resume()

    # -- operations (any thread) ---------------------------------------------------------

    def subscribe(self, entries: Iterable[tuple[str, int, Optional[int]]]) -> list[int]:
        """Subscribe ``(filter, qos, subscription_id or None)`` entries; return the mids.

        MQTT 5 allows one subscription identifier per SUBSCRIBE, so entries go in one packet
        per identifier.  3.1.1 ignores identifiers: one packet.  ConnectionError if offline.
        """
        groups: dict[Optional[int], list[tuple[str, int]]] = {}
        for topic, qos, sub_id in entries:
            if sub_id is not None and not 1 <= sub_id <= MAX_SUBSCRIPTION_ID:
                raise ValueError(f"subscription identifier out of range: {sub_id}")
            groups.setdefault(sub_id if self._v5 else None, []).append((topic, qos))
        mids = []
        for sub_id, topics in groups.items():
            props = None
            if sub_id is not None:
                props = Properties(PacketTypes.SUBSCRIBE)
                props.SubscriptionIdentifier = sub_id
            mids.append(self._check(*self._client.subscribe(topics, properties=props)))
        return mids

    def unsubscribe(self, filters: Iterable[str]) -> int:
        """Unsubscribe ``filters`` in one packet; return its mid (see on_unsubscribe)."""
        return self._check(*self._client.unsubscribe(list(filters)))

    async def subscribed(self, entries: Iterable[tuple[str, int, Optional[int]]]
                         ) -> list[int]:
        """subscribe(), then wait for the broker's SUBACKs: the granted QoS or reason code
        of every filter (>= 0x80: refused). ConnectionError when offline, or when the
        connection ends before the SUBACK (the next connection must subscribe again).

        Call it on the loop that drives this client (loop_start from a coroutine): the
        acknowledgement arrives on that loop, so no caller keeps packet ids.
        """
        mids = self.subscribe(entries)
        codes = await asyncio.gather(*(self._ack_of(mid) for mid in mids))
        return [code for packet in codes for code in packet]

    async def unsubscribed(self, filters: Iterable[str]) -> None:
        """unsubscribe(), then wait for the UNSUBACK (ConnectionError as for subscribed)."""
        await self._ack_of(self.unsubscribe(filters))

    def _ack_of(self, mid: int) -> asyncio.Future[Any]:
        future = self._acks[mid] = asyncio.get_running_loop().create_future()
        return future

    def _acked(self, mid: int, result: Any) -> None:
        future = self._acks.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(result)

    def ack(self, mid: int, qos: int, generation: Optional[int] = None) -> bool:
        """Acknowledge a QoS 1/2 delivery in manual-ack mode (otherwise a no-op, True).

        Pass the message's ``generation``: an ack for a delivery from an earlier connection
        is dropped (False), because the broker redelivers such a message after reconnecting
        (same mid, dup=True) and a late ack could otherwise hit a reused mid.
        """
        if not self.manual_ack or qos == 0:
            return True
        driver = self._driver
        if qos == 1 and driver is not None and driver.acks is not None and \
                threading.get_ident() == driver.thread_id:
            # On the loop: into this turn's batch (routemq.inbound.Acks). connected and
            # generation change only on this thread here.
            if not self.connected or generation not in (None, self.generation):
                return False
            driver.acks.add(mid)
            return True
        with self._lock:
            if not self.connected or generation not in (None, self.generation):
                return False
            self._client.send_ack(mid, qos)
        return True

    def publish(self, topic: str, payload: bytes | str, qos: int = 0,
                retain: bool = False, properties: Any = None) -> mqtt.MQTTMessageInfo:
        """Publish; returns paho's MQTTMessageInfo (``mid``, ``wait_for_publish(timeout)``).
        `properties` (paho's PUBLISH Properties) are dropped under MQTT 3.1.1."""
        return self._client.publish(topic, payload, qos, retain,
                                    properties if self._v5 else None)

    @staticmethod
    def _check(rc: int, mid: int) -> int:
        if rc == mqtt.MQTT_ERR_NO_CONN:
            raise ConnectionError("MQTT client not connected")
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"MQTT request failed: {mqtt.error_string(rc)}")
        return mid

    # -- paho callbacks (paho's thread) --------------------------------------------------

    def _call(self, name: str, *args: Any) -> None:
        callback = getattr(self, name)
        if callback is not None:
            try:
                callback(*args)
            except Exception:
                log.exception("exception in MQTT callback %s", name)

    def _fail(self, why: str) -> None:
        self._call("on_connect_failed", f"cannot connect to {self.options.url}: {why}")

    def _cb_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, *_: Any) -> None:
        self._cancel_connack_timer()
        code = _reason_value(rc)
        if code != 0:
            with self._lock:
                self._attempt_reported = True
            return self._fail(f"refused by broker: {describe_reason(rc, 'connack')}")
        with self._lock:
            self.generation += 1
            self.connected = True
            self.connacks += 1
        session_present = (flags.get("session present") if isinstance(flags, dict)  # 1.x
                           else flags.session_present)
        self._call("on_connect", bool(session_present), code)

    @property
    def paho(self) -> _PahoClient:
        """The paho client (for the asyncio LoopDriver, which runs its network loop)."""
        return self._client

    def connect_failed(self) -> None:
        """The LoopDriver's connection attempt failed before a CONNACK."""
        self._cb_connect_fail(self._client, None)

    def _cb_connect_fail(self, client: Any, userdata: Any) -> None:
        exc = self._client.last_connect_error
        self._fail(_describe_exception(exc, self.options.tls) if exc else "connection failed")

    def _cb_socket_open(self, client: Any, userdata: Any, sock: Any) -> None:
        with self._lock:
            self._attempt += 1
            self._attempt_reported = False
            attempt = self._attempt
        self._cancel_connack_timer()
        self._connack_timer = threading.Timer(self.options.connack_timeout,
                                              self._connack_timeout, (attempt, sock))
        self._connack_timer.daemon = True
        self._connack_timer.start()

    def _connack_timeout(self, attempt: int, sock: Any) -> None:
        """Timer thread: no CONNACK in time; report it and drop the socket so paho retries."""
        with self._lock:
            if self.connected or attempt != self._attempt or self._attempt_reported:
                return
            self._attempt_reported = True
        self._fail(f"no CONNACK within {self.options.connack_timeout:g}s")
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # paho's loop sees EOF and reconnects

    def _cancel_connack_timer(self) -> None:
        timer, self._connack_timer = self._connack_timer, None
        if timer:
            timer.cancel()

    def _cb_disconnect(self, client: Any, userdata: Any, *args: Any) -> None:
        # paho 1.x: (rc[, properties]), rc an int unless the broker sent DISCONNECT;
        # 2.x VERSION2: (disconnect_flags, reason_code, properties).
        if HAS_CALLBACK_API_V2:
            rc, from_broker = args[1], bool(args[0].is_disconnect_packet_from_server)
        else:
            rc, from_broker = args[0], hasattr(args[0], "getName")
        self._cancel_connack_timer()
        with self._lock:
            was_connected, self.connected = self.connected, False
            self.generation += 1
            report_failure = not was_connected and not self._attempt_reported
            self._attempt_reported = True
        # Packet ids mean nothing on the next connection: whoever waits for an ack of this
        # one learns that it will not come.
        acks, self._acks = self._acks, {}
        for future in acks.values():
            if not future.done():
                future.set_exception(ConnectionError("connection ended before the ack"))
        if not was_connected:
            # Closed before a CONNACK: a refusal was reported already; anything else (plain
            # MQTT sent to a TLS port) would otherwise be a silent retry loop.
            if report_failure:
                self._fail("connection closed before CONNACK (plain MQTT to a TLS listener?)")
            return
        code = _reason_value(rc)
        if from_broker:
            text = f"disconnected by broker: {describe_reason(rc)}"
        elif code == 0:
            text = "disconnected by client"
        elif HAS_CALLBACK_API_V2 and code == 128:  # 2.x reports a lost socket as "Unspecified"
            text = "connection lost"
        else:
            text = f"connection lost: {describe_reason(rc, 'error')}"
        self._call("on_disconnect", text)

    @property
    def protocol_version(self) -> int:
        """The MQTT protocol level of the packets: 5, or 4 for 3.1.1."""
        return mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311

    def deliver(self, p: Publish) -> None:
        """A QoS 0/1 delivery decoded by routemq.inbound (the LoopDriver's reader)."""
        callback = self.on_message
        if callback is not None:
            try:
                callback(Message(p.topic, p.payload, p.qos, p.retain, p.mid, p.dup,
                                 p.subscription_ids, self.generation, p.properties))
            except Exception:
                log.exception("exception in MQTT callback on_message")

    def _cb_message(self, client: Any, userdata: Any, m: mqtt.MQTTMessage) -> None:
        props = getattr(m, "properties", None)
        # MQTT 5 only; paho keeps this repeatable property as a list.
        ids = getattr(props, "SubscriptionIdentifier", ())
        ids = (ids,) if isinstance(ids, int) else ids
        try:
            topic = m.topic
        except UnicodeDecodeError:  # mosquitto refuses these; keep a bad one loggable anyway
            topic = bytes(m._topic).decode("utf-8", "replace")
        self._call("on_message", Message(
            topic, bytes(m.payload), m.qos, bool(m.retain), m.mid, bool(m.dup), tuple(ids),
            self.generation, props))

    def _cb_subscribe(self, client: Any, userdata: Any, mid: int, granted: Any, *_: Any) -> None:
        codes = [_reason_value(g) for g in granted]
        self._acked(mid, codes)
        self._call("on_subscribe", mid, codes)

    def _cb_unsubscribe(self, client: Any, userdata: Any, mid: int, *_: Any) -> None:
        self._acked(mid, None)
        self._call("on_unsubscribe", mid)

    def __repr__(self) -> str:
        o = self.options
        return (f"MqttClient({o.url}, client_id={o.client_id!r}, protocol={o.protocol}, "
                f"user={o.username!r}, connected={self.connected})")
