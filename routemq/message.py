"""What a handler may know about the message it handles, and how it answers it (MQTT 5).

A handler that declares a parameter named `message` receives one; middleware finds it in the
context under `"message"`:

    @router.on("rpc/{device}/get")
    async def get(device, payload, client, message: Message):
        await message.reply({"device": device, "value": 21.5})

Built only for routes that use it (a handler declaring `message`, or middleware), from the
delivery's paho properties object, so other handlers pay nothing for it. Under MQTT 3.1.1
there are no properties: `user_properties` is [] and the other MQTT 5 fields are None.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from paho.mqtt.properties import Properties

UserProperties = list[tuple[str, str]]
MQTTv5 = 5  # paho's protocol number; paho itself is imported only to publish (the router,
# and so `routemq status` and the master, must not load it: see tests/unit/test_cli.py)


def encode_payload(payload: Any) -> bytes:
    """What goes on the wire: dicts, lists and other JSON values as JSON, `str` as UTF-8,
    bytes as they are."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode("utf-8")
    try:
        return json.dumps(payload, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot send a payload of type {type(payload).__name__}: {exc}"
                        ) from None


def publish_properties(user_properties: Iterable[tuple[str, str]] | None = None,
                       correlation_data: bytes | None = None,
                       response_topic: str | None = None) -> Properties | None:
    """A PUBLISH properties object with what is given, or None when nothing is."""
    if not user_properties and correlation_data is None and not response_topic:
        return None
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    props = Properties(PacketTypes.PUBLISH)
    if user_properties:
        props.UserProperty = [(str(k), str(v)) for k, v in user_properties]
    if correlation_data is not None:
        props.CorrelationData = bytes(correlation_data)
    if response_topic:
        props.ResponseTopic = response_topic
    return props


def speaks_mqtt5(client: Any) -> bool:
    """Whether `client` (a paho client, or a stand-in such as routemq.testing's) is
    connected with MQTT 5, where PUBLISH carries properties."""
    return getattr(client, "_protocol", MQTTv5) == MQTTv5


class Message:
    """One delivery as a handler sees it. `attempt` is 1 on the first delivery to a handler
    (retries count up from there)."""

    __slots__ = ("topic", "payload", "raw", "qos", "retain", "dup", "attempt", "params",
                 "user_properties", "content_type", "response_topic", "correlation_data",
                 "message_expiry_interval", "_client")

    def __init__(self, topic: str, payload: Any, raw: bytes = b"", qos: int = 0,
                 retain: bool = False, dup: bool = False, attempt: int = 1,
                 params: dict[str, str] | None = None,
                 user_properties: UserProperties | None = None,
                 content_type: str | None = None, response_topic: str | None = None,
                 correlation_data: bytes | None = None,
                 message_expiry_interval: int | None = None, client: Any = None) -> None:
        self.topic = topic
        self.payload = payload
        self.raw = raw
        self.qos = qos
        self.retain = retain
        self.dup = dup
        self.attempt = attempt
        self.params = params if params is not None else {}
        self.user_properties = user_properties if user_properties is not None else []
        self.content_type = content_type
        self.response_topic = response_topic
        self.correlation_data = correlation_data
        self.message_expiry_interval = message_expiry_interval
        self._client = client  # what reply() publishes through

    @classmethod
    def bare(cls, topic: str, payload: Any, params: dict[str, str], client: Any) -> Message:
        """For a call without a delivery (`router.dispatch`): no flags, no properties."""
        raw = bytes(payload) if isinstance(payload, (bytes, bytearray)) else b""
        return cls(topic, payload, raw, params=params, client=client)

    @classmethod
    def from_delivery(cls, delivery: Any, payload: Any, params: dict[str, str], client: Any,
                      attempt: int = 1) -> Message:
        """From a routemq.mqtt.Message (or anything with its fields) and its decoded payload;
        its `properties` (paho's object, None under MQTT 3.1.1) are read here, not before."""
        # retain and dup with defaults: the dispatcher's Delivery protocol does not require them
        retain, dup = getattr(delivery, "retain", False), getattr(delivery, "dup", False)
        props = getattr(delivery, "properties", None)
        if props is None:
            return cls(delivery.topic, payload, delivery.payload, delivery.qos, retain, dup,
                       attempt, params, client=client)
        correlation = getattr(props, "CorrelationData", None)
        return cls(delivery.topic, payload, delivery.payload, delivery.qos, retain, dup,
                   attempt, params, [(k, v) for k, v in getattr(props, "UserProperty", ())],
                   getattr(props, "ContentType", None), getattr(props, "ResponseTopic", None),
                   None if correlation is None else bytes(correlation),
                   getattr(props, "MessageExpiryInterval", None), client)

    async def reply(self, payload: Any, qos: int = 1,
                    user_properties: Iterable[tuple[str, str]] | None = None) -> Any:
        """Publish `payload` to this message's response topic with its correlation data
        (and `user_properties`); returns what the client's publish returned.

        Raises ValueError when the message has no response topic. Under MQTT 3.1.1 the
        reply goes to `response_topic` without properties (there are none to send).
        """
        if not self.response_topic:
            raise ValueError(f"message on {self.topic!r} has no response topic to reply to")
        if self._client is None:
            raise ValueError(f"message on {self.topic!r} has no client to reply with")
        props = None
        if speaks_mqtt5(self._client):
            props = publish_properties(user_properties, self.correlation_data)
        return self._client.publish(self.response_topic, encode_payload(payload), qos=qos,
                                    properties=props)

    def __repr__(self) -> str:
        return (f"Message(topic={self.topic!r}, qos={self.qos}, attempt={self.attempt}, "
                f"response_topic={self.response_topic!r})")
