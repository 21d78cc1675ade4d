"""routemq.mqtt against a real mosquitto, with whichever paho-mqtt this Python has.

Run under /usr/bin/python3 (paho 1.6.1) and .venvs/pypi (paho 2.x).  Manual-ack tests use
paho 2.x's own manual ack, or MqttClient's emulation of it on 1.6.
"""
from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import types
from typing import Any, Callable, Iterator

import paho.mqtt.client as paho
import pytest

from routemq import mqtt as rmq
from routemq.mqtt import ConnectOptions, Message, MqttClient
from tests.helpers import seq_payloads, wait_until
from tests.integration.broker import Mosquitto, TlsFiles, free_port, publish_many
from tests.integration.conftest import AUTH_PASSWORD, AUTH_USER

needs_manual_ack = pytest.mark.skipif(
    not rmq.MANUAL_ACK_AVAILABLE,
    reason="paho-mqtt without manual ack and without the 1.6 internals to emulate it")
PROTOCOLS = pytest.mark.parametrize("protocol", ["5", "3.1.1"])


class Probe:
    """Records every MqttClient callback (called in paho's thread) for the test to wait on."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.connects: list[tuple[bool, int]] = []
        self.failures: list[str] = []
        self.disconnects: list[str] = []
        self.messages: list[Message] = []
        self.subacks: dict[int, list[int]] = {}
        self.unsubacks: list[int] = []

    def _add(self, items: list, item: Any) -> None:
        with self.cond:
            items.append(item)
            self.cond.notify_all()

    def callbacks(self) -> dict[str, Callable[..., None]]:
        def suback(mid: int, granted: list[int]) -> None:
            with self.cond:
                self.subacks[mid] = granted
                self.cond.notify_all()
        return {
            "on_connect": lambda sp, rc: self._add(self.connects, (sp, rc)),
            "on_connect_failed": lambda text: self._add(self.failures, text),
            "on_disconnect": lambda text: self._add(self.disconnects, text),
            "on_message": lambda msg: self._add(self.messages, msg),
            "on_subscribe": suback,
            "on_unsubscribe": lambda mid: self._add(self.unsubacks, mid),
        }

    def wait(self, pred: Callable[[], Any], what: str, timeout: float = 15.0) -> None:
        with self.cond:
            if not self.cond.wait_for(pred, timeout):
                raise AssertionError(f"timed out waiting for {what}; failures={self.failures} "
                                     f"disconnects={self.disconnects}")

    def wait_messages(self, n: int, timeout: float = 30.0) -> list[Message]:
        self.wait(lambda: len(self.messages) >= n, f"{n} messages (have {len(self.messages)})",
                  timeout)
        return list(self.messages)


Connect = Callable[..., "tuple[MqttClient, Probe]"]


@pytest.fixture
def connect() -> Iterator[Connect]:
    """``connect(broker, client_id, manual_ack=, wait=, port=, callbacks={name: fn},
    **ConnectOptions fields)`` -> (client, probe); the probe records what callbacks
    does not override."""
    made: list[MqttClient] = []

    def make(broker: Mosquitto, client_id: str, *, manual_ack: bool = False, wait: bool = True,
             port: int | None = None, callbacks: dict | None = None,
             **opts: Any) -> tuple[MqttClient, Probe]:
        probe = Probe()
        options = ConnectOptions(host=broker.host, port=port or broker.port,
                                 client_id=client_id, **opts)
        client = MqttClient(options, manual_ack=manual_ack,
                            **{**probe.callbacks(), **(callbacks or {})})
        client.reconnect_delay_set(0.1, 0.5)
        client.connect_async()
        client.loop_start()
        made.append(client)
        if wait:
            probe.wait(lambda: probe.connects, "CONNACK")
        return client, probe

    yield make
    for client in made:
        client.disconnect()


def subscribe(client: MqttClient, probe: Probe, entries: list) -> list[list[int]]:
    mids = client.subscribe(entries)
    probe.wait(lambda: all(m in probe.subacks for m in mids), "SUBACK")
    return [probe.subacks[m] for m in mids]


def seqs(messages: list[Message]) -> list[int]:
    return [json.loads(m.payload)["seq"] for m in messages]


MARKER = b"marker"


def all_before_a_marker(broker: Mosquitto, probe: Probe, topic: str) -> list[Message]:
    """Publish a marker on `topic` (the client subscribed to it) and wait for it: mosquitto
    sends a connection its messages in order, so whatever was still coming came before it.
    The messages other than markers."""
    publish_many(broker, topic, [MARKER.decode()], qos=1)
    probe.wait(lambda: any(m.payload == MARKER for m in probe.messages), "the marker")
    return [m for m in probe.messages if m.payload != MARKER]


def debug_broker(make_broker: Callable[..., Mosquitto]) -> Mosquitto:
    """A broker with persistence that logs every packet ("Received PUBACK from <id>")."""
    return make_broker(persistence=True, extra_config=["log_type debug"])


# -- feature detection and helpers --------------------------------------------------------

def test_features_are_detected_not_versioned() -> None:
    assert rmq.SUPPORTS_MANUAL_ACK == hasattr(paho.Client, "manual_ack_set")
    assert rmq.HAS_CALLBACK_API_V2 == hasattr(paho, "CallbackAPIVersion")
    if rmq.HAS_CALLBACK_API_V2:
        assert rmq.SUPPORTS_MANUAL_ACK and not rmq.CAN_EMULATE_MANUAL_ACK  # paho 2.x
    else:
        assert rmq.CAN_EMULATE_MANUAL_ACK  # paho 1.6: emulated
    assert rmq.MANUAL_ACK_AVAILABLE
    client = MqttClient(ConnectOptions(client_id="x"), manual_ack=True)
    assert client._client.emulated_ack == (not rmq.SUPPORTS_MANUAL_ACK)
    with pytest.raises(TypeError, match="on_mesage"):
        MqttClient(ConnectOptions(client_id="x"), on_mesage=print)


def test_describe_reason_plain_ints() -> None:
    assert "not authorised" in rmq.describe_reason(5, "connack").lower()
    assert rmq.describe_reason(5, "connack").endswith("(5)")
    assert "lost" in rmq.describe_reason(paho.MQTT_ERR_CONN_LOST, "error").lower()


def test_options_validate() -> None:
    with pytest.raises(ValueError, match="client id"):
        ConnectOptions(client_id="", persistent=True)
    with pytest.raises(ValueError, match="protocol"):
        ConnectOptions(client_id="x", protocol="4")
    with pytest.raises(ValueError, match="together"):
        ConnectOptions(client_id="x", tls=True, tls_cert_file="c.pem")


# -- connect, subscribe, receive ------------------------------------------------------------

@PROTOCOLS
def test_connect_subscribe_receive(shared_broker: Mosquitto, connect: Connect,
                                   protocol: str) -> None:
    client, probe = connect(shared_broker, f"recv-{protocol}", protocol=protocol,
                            persistent=False)
    assert probe.connects == [(False, 0)]
    assert client.connected
    topic = f"recv/{protocol}/data"
    assert subscribe(client, probe, [(topic, 1, 7)]) == [[1]]
    publish_many(shared_broker, topic, ["plain", '{"seq":1}'], qos=1)
    first, second = probe.wait_messages(2)
    assert (first.topic, first.payload, first.qos, first.retain) == (topic, b"plain", 1, False)
    assert second.payload == b'{"seq":1}'
    # Subscription identifiers are an MQTT 5 feature; 3.1.1 deliveries carry none.
    assert first.subscription_ids == ((7,) if protocol == "5" else ())
    assert isinstance(first.mid, int) and first.generation == client.generation


def test_subscription_ids_tell_overlapping_subscriptions_apart(shared_broker: Mosquitto,
                                                               connect: Connect) -> None:
    client, probe = connect(shared_broker, "subids", persistent=False)
    entries = [("ov/+/data", 1, 1), ("ov/#", 1, 2), ("$share/g/ov/+/data", 1, 3),
               ("ov/x/other", 0, 2)]
    # One SUBSCRIBE per identifier (MQTT 5 allows one identifier per packet): 3 packets.
    granted = subscribe(client, probe, entries)
    assert granted == [[1], [1, 0], [1]]
    publish_many(shared_broker, "ov/s1/data", ["m"], qos=1)
    # mosquitto sends MQTT 5 clients one copy per matching subscription, each with its id.
    probe.wait_messages(3)
    msgs = all_before_a_marker(shared_broker, probe, "ov/marker")  # no fourth copy after
    assert sorted(m.subscription_ids for m in msgs) == [(1,), (2,), (3,)]
    assert all(m.payload == b"m" for m in msgs)


def test_v311_overlapping_subscriptions_get_one_copy(shared_broker: Mosquitto,
                                                     connect: Connect) -> None:
    """mosquitto gives a 3.1.1 client ONE copy, at the first matching subscription's QoS."""
    client, probe = connect(shared_broker, "ov311", protocol="3.1.1", persistent=False)
    subscribe(client, probe, [("o3/+/data", 0, 1), ("o3/#", 1, 2), ("$share/g/o3/#", 1, 3)])
    publish_many(shared_broker, "o3/a/data", ["m"], qos=1)
    probe.wait_messages(1)
    msgs = all_before_a_marker(shared_broker, probe, "o3/marker")
    assert len(msgs) == 1 and msgs[0].subscription_ids == ()


@PROTOCOLS
def test_denied_subscription_reports_failure_code(make_broker: Callable[..., Mosquitto],
                                                  connect: Connect, protocol: str) -> None:
    b = make_broker(subscribe_only=["allowed/#"])
    client, probe = connect(b, "acl", protocol=protocol, persistent=False)
    (granted,) = subscribe(client, probe, [("allowed/x", 1, None), ("denied/x", 1, None)])
    assert granted[0] == 1
    assert granted[1] >= 0x80  # 0x87 Not authorized on MQTT 5, 0x80 Failure on 3.1.1


def test_unsubscribe(shared_broker: Mosquitto, connect: Connect) -> None:
    client, probe = connect(shared_broker, "unsub", persistent=False)
    subscribe(client, probe, [("un/a", 1, None), ("un/b", 1, None)])
    mid = client.unsubscribe(["un/a"])
    probe.wait(lambda: mid in probe.unsubacks, "UNSUBACK")
    publish_many(shared_broker, "un/a", ["gone"], qos=1)
    publish_many(shared_broker, "un/b", ["kept"], qos=1)  # "gone" would come before it
    probe.wait(lambda: any(m.payload == b"kept" for m in probe.messages), "the kept message")
    assert [m.payload for m in probe.messages] == [b"kept"]


def test_subscribe_when_not_connected_raises() -> None:
    client = MqttClient(ConnectOptions(port=free_port(), client_id="nc"))
    with pytest.raises(ConnectionError):
        client.subscribe([("a", 1, None)])


# -- persistent sessions ----------------------------------------------------------------------

@PROTOCOLS
def test_persistent_session_keeps_messages_while_away(broker: Mosquitto, connect: Connect,
                                                      protocol: str) -> None:
    client, probe = connect(broker, "persist", protocol=protocol)
    assert probe.connects == [(False, 0)]
    subscribe(client, probe, [("ps/+", 1, 5)])
    client.disconnect()
    assert probe.disconnects == ["disconnected by client"]

    publish_many(broker, "ps/1", 500, qos=1)  # nobody connected: queued in the session

    again, probe2 = connect(broker, "persist", protocol=protocol)
    assert probe2.connects == [(True, 0)]  # session present: no need to resubscribe
    msgs = probe2.wait_messages(500)
    assert seqs(msgs) == list(range(500))
    if protocol == "5":
        assert {m.subscription_ids for m in msgs} == {(5,)}


@PROTOCOLS
def test_clean_session_drops_queue(broker: Mosquitto, connect: Connect, protocol: str) -> None:
    client, probe = connect(broker, "clean", protocol=protocol, persistent=False)
    subscribe(client, probe, [("cs/+", 1, None)])
    client.disconnect()
    publish_many(broker, "cs/1", 5, qos=1)
    again, probe2 = connect(broker, "clean", protocol=protocol, persistent=False)
    assert probe2.connects == [(False, 0)]
    subscribe(again, probe2, [("cs/+", 1, None)])
    assert all_before_a_marker(broker, probe2, "cs/marker") == []


def test_session_expiry_is_honoured_on_mqtt5(broker: Mosquitto, connect: Connect) -> None:
    client, probe = connect(broker, "expiry", session_expiry=1)
    subscribe(client, probe, [("ex/+", 1, None)])
    client.disconnect()
    broker.wait_log("Expiring client expiry due to timeout.")
    _, probe2 = connect(broker, "expiry", session_expiry=1)
    assert probe2.connects == [(False, 0)]


def test_reconnects_after_broker_restart_with_session(broker: Mosquitto,
                                                      connect: Connect) -> None:
    client, probe = connect(broker, "restart")
    subscribe(client, probe, [("rs/+", 1, None)])
    broker.stop()  # SIGTERM: mosquitto saves sessions to its persistence file
    probe.wait(lambda: probe.disconnects, "disconnect")
    assert not client.connected and probe.disconnects[0].startswith("connection lost")
    probe.wait(lambda: probe.failures, "a failed reconnect attempt")
    assert "connection refused" in probe.failures[0]
    broker.start()  # same port, same persistence
    probe.wait(lambda: len(probe.connects) == 2, "reconnect")
    assert probe.connects[1] == (True, 0)  # the session (and its subscription) survived
    publish_many(broker, "rs/1", 3, qos=1)
    assert seqs(probe.wait_messages(3)) == [0, 1, 2]
    assert client.generation == 3  # connect, disconnect, connect


def test_broker_restart_keeps_port_and_queue(broker: Mosquitto, connect: Connect) -> None:
    client, probe = connect(broker, "rq")
    subscribe(client, probe, [("rq/+", 1, None)])
    client.disconnect()
    publish_many(broker, "rq/1", 100, qos=1)
    port, pid = broker.port, broker.pid
    broker.restart()
    assert broker.port == port and broker.pid != pid
    _, probe2 = connect(broker, "rq")
    assert probe2.connects == [(True, 0)]
    assert seqs(probe2.wait_messages(100)) == list(range(100))


# -- acknowledgement ----------------------------------------------------------------------------

def test_auto_ack_follows_on_message(broker: Mosquitto, connect: Connect) -> None:
    """Without manual ack, PUBACK is sent when on_message returns (paho 1.6 and 2.x alike):
    a connection lost while on_message still runs means the message comes back."""
    client, probe = connect(broker, "autoack")
    subscribe(client, probe, [("aa/+", 1, None)])
    inside, release = threading.Event(), threading.Event()

    def blocking(msg: Message) -> None:
        inside.set()
        release.wait(10)

    client.on_message = blocking
    publish_many(broker, "aa/1", 1, qos=1)
    assert inside.wait(10)
    client._client.socket().shutdown(socket.SHUT_RDWR)  # connection dies mid-handler
    client._client.loop_stop()  # ... and this process "dies" with it
    release.set()

    _, probe2 = connect(broker, "autoack")
    (msg,) = probe2.wait_messages(1)
    assert msg.dup and seqs([msg]) == [0]


def test_callback_exception_does_not_stop_the_loop(broker: Mosquitto, connect: Connect,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    client, probe = connect(broker, "raises")
    subscribe(client, probe, [("rx/+", 1, None)])
    seen: list[Message] = []

    def flaky(msg: Message) -> None:
        seen.append(msg)
        if len(seen) == 1:
            raise ValueError("handler bug")

    client.on_message = flaky
    with caplog.at_level(logging.ERROR, logger="routemq.mqtt"):
        publish_many(broker, "rx/1", 3, qos=1)
        wait_until(lambda: len(seen) >= 3, 10, "3 messages", interval=0.05)
    assert seqs(seen) == [0, 1, 2]
    assert "handler bug" in caplog.text
    assert client.connected


def test_ack_is_a_noop_without_manual_ack(shared_broker: Mosquitto, connect: Connect) -> None:
    client, _ = connect(shared_broker, "noop", persistent=False)
    assert client.ack(1, 1, client.generation) is True


@needs_manual_ack
@PROTOCOLS
def test_manual_ack_unacked_messages_come_back(make_broker: Callable[..., Mosquitto],
                                               connect: Connect, protocol: str) -> None:
    broker = debug_broker(make_broker)
    client, probe = connect(broker, "mack", protocol=protocol, manual_ack=True)
    subscribe(client, probe, [("ma/+", 1, None)])
    publish_many(broker, "ma/1", 10, qos=1)
    msgs = probe.wait_messages(10)
    for m in msgs[:4]:
        assert client.ack(m.mid, m.qos, m.generation)
    broker.wait_log("Received PUBACK from mack ", 4)  # the acks left before DISCONNECT
    client.disconnect()

    # mosquitto resends unacknowledged deliveries only when the session reconnects.
    again, probe2 = connect(broker, "mack", protocol=protocol, manual_ack=True)
    probe2.wait_messages(6)
    redelivered = all_before_a_marker(broker, probe2, "ma/marker")
    assert seqs(redelivered) == [4, 5, 6, 7, 8, 9]
    assert all(m.dup for m in redelivered)
    for m in probe2.messages:  # the marker too
        assert again.ack(m.mid, m.qos, m.generation)
    broker.wait_log("Received PUBACK from mack ", 4 + 7)
    again.disconnect()

    again, probe3 = connect(broker, "mack", protocol=protocol, manual_ack=True)
    assert all_before_a_marker(broker, probe3, "ma/marker") == []
    for m in probe3.messages:
        assert again.ack(m.mid, m.qos, m.generation)


@needs_manual_ack
def test_manual_ack_after_connection_loss(broker: Mosquitto, connect: Connect) -> None:
    """paho reconnects by itself; unacked messages come again (same mid, dup) and an ack
    from the old connection is refused instead of hitting whatever the mid means now."""
    client, probe = connect(broker, "loss", manual_ack=True)
    subscribe(client, probe, [("lo/+", 1, None)])
    publish_many(broker, "lo/1", 5, qos=1)
    old = probe.wait_messages(5)
    client._client.socket().shutdown(socket.SHUT_RDWR)
    probe.wait(lambda: len(probe.connects) == 2 and len(probe.messages) >= 10, "redelivery")
    assert probe.disconnects and probe.disconnects[0].startswith("connection lost")
    assert probe.connects[1] == (True, 0)
    new = probe.messages[5:]
    assert seqs(new) == seqs(old) and all(m.dup for m in new)
    assert [m.mid for m in new] == [m.mid for m in old]
    assert client.ack(old[0].mid, 1, old[0].generation) is False  # stale: dropped
    for m in new:
        assert client.ack(m.mid, m.qos, m.generation)


@needs_manual_ack
def test_manual_ack_from_another_thread_survives_a_crash(broker: Mosquitto,
                                                         connect: Connect) -> None:
    """The worker's pattern: on_message hands off, another thread processes then acks.
    A crash mid-stream loses nothing: whatever was not acked comes to the next process."""
    total, crash_after = 3000, 1000
    first_run: list[int] = []
    second_run: list[int] = []

    def run_consumer(client: MqttClient, inbox: "queue.Queue[Message]", processed: list[int],
                     done: Callable[[], bool]) -> None:
        while not done():
            try:
                m = inbox.get(timeout=10)
            except queue.Empty:
                return
            processed.append(json.loads(m.payload)["seq"])
            client.ack(m.mid, m.qos, m.generation)

    inbox: "queue.Queue[Message]" = queue.Queue()
    first, probe = connect(broker, "crashy", manual_ack=True, callbacks={"on_message": inbox.put})
    subscribe(first, probe, [("cr/+", 1, None)])
    consumer = threading.Thread(target=run_consumer, args=(
        first, inbox, first_run, lambda: len(first_run) >= crash_after))
    consumer.start()
    publish_many(broker, "cr/1", total, qos=1)
    consumer.join(30)
    first._client.socket().shutdown(socket.SHUT_RDWR)  # "kill -9": no DISCONNECT, no acks
    first._client.loop_stop()

    inbox2: "queue.Queue[Message]" = queue.Queue()
    second, _ = connect(broker, "crashy", manual_ack=True, callbacks={"on_message": inbox2.put})
    run_consumer(second, inbox2, second_run,
                 lambda: len(set(first_run) | set(second_run)) >= total)
    assert set(first_run) | set(second_run) == set(range(total))  # nothing lost
    # Duplicates only across the crash (acks queued but not yet sent when it died), never
    # within one connection's run.
    assert len(first_run) == len(set(first_run)) and len(second_run) == len(set(second_run))
    assert len(first_run) + len(second_run) - total <= crash_after


@needs_manual_ack
def test_manual_ack_qos2_pubrel_completed_after_restart(make_broker: Callable[..., Mosquitto],
                                                        connect: Connect) -> None:
    """paho 2.x leaves a PUBREL for an unknown QoS 2 message unanswered under manual ack
    (and so would the 1.6 emulation); MqttClient completes it so the broker does not hold
    the message id forever."""
    b = make_broker(persistence=False, extra_config=["log_type debug"])
    client, probe = connect(b, "q2", manual_ack=True)
    subscribe(client, probe, [("q2/+", 2, None)])
    publish_many(b, "q2/1", 2, qos=2)
    probe.wait_messages(2)  # delivered after PUBREL; not acked (PUBCOMP never sent)
    client._client.socket().shutdown(socket.SHUT_RDWR)
    client._client.loop_stop()
    _, probe2 = connect(b, "q2", manual_ack=True)
    for mid in (1, 2):  # the PUBCOMPs for the resent PUBRELs
        b.wait_log(f"Received PUBCOMP from q2 (Mid: {mid},")
    # QoS 2 is not redelivered once PUBREC went out: paho gives no at-least-once for it.
    assert all_before_a_marker(b, probe2, "q2/marker") == []


# -- authentication and TLS -------------------------------------------------------------------

@PROTOCOLS
def test_password_auth_and_no_leaks(auth_broker: Mosquitto, connect: Connect, protocol: str,
                                    caplog: pytest.LogCaptureFixture) -> None:
    paho_log = logging.getLogger("test.paho")
    with caplog.at_level(logging.DEBUG):
        ok, probe = connect(auth_broker, f"auth{protocol}", protocol=protocol,
                            username=AUTH_USER, password=AUTH_PASSWORD)
        ok.disconnect()
        _, bad = connect(auth_broker, f"bad{protocol}", protocol=protocol, wait=False,
                         username=AUTH_USER, password=AUTH_PASSWORD + "x")
        bad.wait(lambda: bad.failures, "refusal")
        _, anon = connect(auth_broker, f"anon{protocol}", protocol=protocol, wait=False)
        anon.wait(lambda: anon.failures, "refusal")
        logged = MqttClient(ok.options, paho_logger=paho_log)
        logged.connect_async()
        logged.loop_start()
        wait_until(lambda: logged.connected, 10, "the logged client connected", interval=0.05)
        logged.disconnect()
    assert "refused by broker" in bad.failures[0]
    assert "not author" in bad.failures[0].lower()
    assert "not author" in anon.failures[0].lower()
    texts = [repr(ok), repr(ok.options), str(ok.options), caplog.text,
             *bad.failures, *probe.disconnects, auth_broker.log_path.read_text()]
    assert not any(AUTH_PASSWORD in t for t in texts)
    assert "Sending CONNECT" in caplog.text  # the paho logger really was on


@PROTOCOLS
def test_tls_with_right_ca(tls_broker: Mosquitto, connect: Connect, protocol: str) -> None:
    client, probe = connect(tls_broker, f"tls{protocol}", protocol=protocol,
                            port=tls_broker.tls_port, tls=True,
                            tls_ca_file=str(tls_broker.pki.ca_cert))
    assert client.options.url.startswith("mqtts://")
    subscribe(client, probe, [("tls/x", 1, None)])
    client.publish("tls/x", b"over tls", qos=1).wait_for_publish(5)
    assert probe.wait_messages(1)[0].payload == b"over tls"


def test_tls_wrong_ca_fails_clearly(tls_broker: Mosquitto, connect: Connect) -> None:
    client, probe = connect(tls_broker, "wrongca", wait=False, port=tls_broker.tls_port,
                            tls=True, tls_ca_file=str(tls_broker.pki.other_ca_cert))
    probe.wait(lambda: probe.failures, "TLS failure")
    text = probe.failures[0]
    assert text.startswith(f"cannot connect to mqtts://127.0.0.1:{tls_broker.tls_port}: ")
    assert "TLS handshake failed: certificate verify failed" in text
    assert not client.connected and probe.connects == []
    probe.wait(lambda: len(probe.failures) >= 2, "retry")  # keeps retrying, keeps saying why


def test_tls_client_certificate(make_broker: Callable[..., Mosquitto], pki: Any,
                                connect: Connect) -> None:
    b = make_broker(tls=TlsFiles(pki.ca_cert, pki.server_cert, pki.server_key,
                                 require_certificate=True))
    client, probe = connect(b, "clientcert", port=b.tls_port, tls=True,
                            tls_ca_file=str(pki.ca_cert), tls_cert_file=str(pki.client_cert),
                            tls_key_file=str(pki.client_key))
    assert client.connected


def test_plain_mqtt_to_tls_listener_is_reported(tls_broker: Mosquitto,
                                                connect: Connect) -> None:
    _, probe = connect(tls_broker, "mismatch", wait=False, port=tls_broker.tls_port)
    probe.wait(lambda: probe.failures, "failure")
    assert "connection closed before CONNACK" in probe.failures[0]


def test_connection_refused_and_connack_timeout(connect: Connect) -> None:
    nobody = types.SimpleNamespace(host="127.0.0.1", port=free_port())
    _, probe = connect(nobody, "refused", wait=False)
    probe.wait(lambda: probe.failures, "failure")
    assert probe.failures[0] == f"cannot connect to mqtt://127.0.0.1:{nobody.port}: " \
                                "connection refused"

    with socket.socket() as silent:  # accepts TCP, never answers CONNECT
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        nobody.port = silent.getsockname()[1]
        _, probe = connect(nobody, "silent", wait=False, connack_timeout=0.5)
        probe.wait(lambda: probe.failures, "CONNACK timeout")
        assert probe.failures[0].endswith("no CONNACK within 0.5s")


# -- the fixtures themselves ---------------------------------------------------------------------

@pytest.mark.slow
def test_publish_many_beyond_one_range_of_message_ids(broker: Mosquitto, collector: Any
                                                     ) -> None:
    """A client has 65,535 QoS 1 message ids; publish_many sends more in windows."""
    c = collector(broker, [("bulk/#", 1)])
    n = 70_000
    assert publish_many(broker, "bulk/1", n, qos=1) == n
    got = c.wait_for(n, timeout=120)
    assert len(got) == n
    assert json.loads(got[-1].payload)["seq"] == n - 1


def test_publish_many_pairs_and_collector_v311(shared_broker: Mosquitto, collector: Any) -> None:
    c = collector(shared_broker, [("pairs/#", 1)], protocol="3.1.1")
    pairs = [("pairs/a", p) for p in seq_payloads(3)] + [("pairs/b", "x"), ("pairs/a", "y")]
    assert publish_many(shared_broker, pairs, qos=1) == 5
    got = c.wait_for(5)
    assert [(r.topic, r.payload) for r in got][-2:] == [("pairs/b", b"x"), ("pairs/a", b"y")]


def test_kill_then_start_again_on_the_same_port(make_broker: Callable[..., Mosquitto]) -> None:
    b = make_broker(persistence=True)
    pid = b.pid
    b.kill()
    assert not b.running
    b.start()
    assert b.running and b.pid != pid
    assert f"listener {b.port} 127.0.0.1" in b.conf_path.read_text()
