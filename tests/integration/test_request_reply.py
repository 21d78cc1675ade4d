"""MQTT 5 request/reply under `routemq run` with 2 workers (issue 13 part 2): a request with
a response topic, correlation data and a user property gets its reply, with the same
correlation data, from whichever worker of the shared route took it."""
from __future__ import annotations

import json
import threading
from pathlib import Path

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.helpers import wait_until
from tests.integration.broker import paho_client
from tests.integration.workers import Run

APP = Path(__file__).resolve().parent / "apps" / "reply"
REQUESTS = 20


class Requester:
    """One MQTT 5 paho client (1.6 or 2.x) that subscribes to its response topic and
    publishes requests; replies are kept with their properties."""

    def __init__(self, broker, response_topic: str) -> None:
        self.response_topic = response_topic
        self.replies: list[tuple[bytes, bytes | None, list]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = paho_client("requester", "5")
        self.client.on_connect = lambda c, *a: c.subscribe(response_topic, qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        props = getattr(msg, "properties", None)
        with self.lock:
            self.replies.append((msg.payload, getattr(props, "CorrelationData", None),
                                 list(getattr(props, "UserProperty", []))))

    def request(self, topic: str, payload: dict, correlation: bytes) -> None:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = self.response_topic
        props.CorrelationData = correlation
        props.UserProperty = [("tenant", "acme")]
        info = self.client.publish(topic, json.dumps(payload), qos=1, properties=props)
        info.wait_for_publish(10)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_mqtt5_request_gets_its_reply_with_the_same_correlation_data(broker, tmp_path):
    run = Run(broker, tmp_path / "run", 2, app=APP).start_run()
    requester = Requester(broker, "replies/requester")
    try:
        run.wait_settled([1, 2])
        assert requester.subscribed.wait(10), "requester: no SUBACK"
        sent = {f"req-{i}".encode(): (f"dev{i}", {"n": i}) for i in range(REQUESTS)}
        for correlation, (device, payload) in sent.items():
            requester.request(f"rpc/{device}/get", payload, correlation)

        def all_replied() -> list | None:
            with requester.lock:
                return list(requester.replies) if len(requester.replies) >= REQUESTS else None
        replies = wait_until(all_replied, 30, f"{REQUESTS} replies", abort=run.running(),
                             explain=lambda: run.output()[-3000:])

        assert len(replies) == REQUESTS  # one reply per request, none twice
        by_correlation = {corr: (json.loads(payload), props)
                          for payload, corr, props in replies}
        assert set(by_correlation) == set(sent)
        for correlation, (device, payload) in sent.items():
            body, props = by_correlation[correlation]
            assert (body["device"], body["echo"]) == (device, payload)
            assert body["user_properties"] == [["tenant", "acme"]]
            assert props == [("served-by", "reply-app")]
        pids = {d["pid"] for d in run.healths().values()}
        assert {body["pid"] for body, _ in by_correlation.values()} <= pids
    finally:
        requester.stop()
        run.cleanup()
