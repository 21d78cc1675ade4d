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

import base64
import json
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple

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
                       response_topic: str | None = None, content_type: str | None = None,
                       message_expiry_interval: int | None = None) -> Properties | None:
    """A PUBLISH properties object with what is given, or None when nothing is."""
    if not user_properties and correlation_data is None and not response_topic \
            and not content_type and message_expiry_interval is None:
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
    if content_type:
        props.ContentType = content_type
    if message_expiry_interval is not None:
        props.MessageExpiryInterval = int(message_expiry_interval)
    return props


def properties_record(props: Any) -> dict[str, Any]:
    """A delivery's MQTT 5 properties as JSON-ready data (a dead letter keeps them for its
    replay); {} when it has none. Correlation data is base64.

    >>> from types import SimpleNamespace as P
    >>> properties_record(P(UserProperty=[("tenant", "a")], CorrelationData=b"\\x01"))
    {'user_properties': [['tenant', 'a']], 'correlation_data': 'AQ=='}
    """
    if props is None:
        return {}
    record: dict[str, Any] = {}
    users = getattr(props, "UserProperty", None)
    if users:
        record["user_properties"] = [[k, v] for k, v in users]
    for attr, key in (("ContentType", "content_type"), ("ResponseTopic", "response_topic"),
                      ("MessageExpiryInterval", "message_expiry_interval")):
        value = getattr(props, attr, None)
        if value is not None:
            record[key] = value
    data = getattr(props, "CorrelationData", None)
    if data is not None:
        record["correlation_data"] = base64.b64encode(bytes(data)).decode("ascii")
    return record


def record_problem(record: Any) -> str | None:
    """Why `record` is not what properties_record makes, or None.

    >>> record_problem({"user_properties": [["a", "b"]], "message_expiry_interval": 5})
    >>> record_problem({"user_properties": "a=b"})
    'user_properties is not a list of [key, value] strings'
    """
    if not isinstance(record, dict):
        return "not an object"
    users = record.get("user_properties", [])
    if not isinstance(users, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
            for p in users):
        return "user_properties is not a list of [key, value] strings"
    for key in ("content_type", "response_topic", "correlation_data"):
        if not isinstance(record.get(key, ""), str):
            return f"{key} is not a string"
    expiry = record.get("message_expiry_interval", 0)
    if isinstance(expiry, bool) or not isinstance(expiry, int) or not 0 <= expiry < 2 ** 32:
        return "message_expiry_interval is not an integer of 32 bits"
    try:
        base64.b64decode(record.get("correlation_data", ""), validate=True)
    except ValueError:
        return "correlation_data is not base64"
    return None


def properties_from_record(record: dict[str, Any] | None) -> Properties | None:
    """The PUBLISH properties a record of properties_record stands for (None: none); the
    record must pass record_problem."""
    if not record:
        return None
    data = record.get("correlation_data")
    return publish_properties(
        [(k, v) for k, v in record.get("user_properties", ())],
        None if data is None else base64.b64decode(data), record.get("response_topic"),
        record.get("content_type"), record.get("message_expiry_interval"))


def speaks_mqtt5(client: Any) -> bool:
    """Whether `client` (a paho client, or a stand-in such as routemq.testing's) is
    connected with MQTT 5, where PUBLISH carries properties."""
    return getattr(client, "_protocol", MQTTv5) == MQTTv5


class _Fields(NamedTuple):
    """The delivery of a Message made by hand (`Message.build`): a routemq.mqtt.Message's
    fields, with `properties` any object carrying paho's attribute names."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    properties: Any = None


class Message:
    """One delivery as a handler sees it. `attempt` is 1 on the first delivery to a handler
    (retries count up from there).

    Made per message for the routes that use one, so it costs five assignments: the flags
    and the MQTT 5 fields are read from the delivery (and its paho properties object) only
    when asked for. `Message.build(topic, payload, ...)` makes one from plain values.
    """

    __slots__ = ("_delivery", "payload", "params", "attempt", "_client")

    def __init__(self, delivery: Any, payload: Any, params: dict[str, str], client: Any = None,
                 attempt: int = 1) -> None:
        self._delivery = delivery  # a routemq.mqtt.Message (or the dispatcher's Delivery)
        self.payload = payload
        self.params = params
        self.attempt = attempt
        self._client = client  # what reply() publishes through

    @classmethod
    def build(cls, topic: str, payload: Any, raw: bytes | None = None, qos: int = 0,
              retain: bool = False, dup: bool = False, attempt: int = 1,
              params: dict[str, str] | None = None,
              user_properties: Iterable[tuple[str, str]] | None = None,
              content_type: str | None = None, response_topic: str | None = None,
              correlation_data: bytes | None = None,
              message_expiry_interval: int | None = None, client: Any = None) -> Message:
        """A Message from plain values (no delivery: `router.dispatch`, tests)."""
        if raw is None:
            raw = bytes(payload) if isinstance(payload, (bytes, bytearray)) else b""
        given = {"UserProperty": list(user_properties or ()), "ContentType": content_type,
                 "ResponseTopic": response_topic, "CorrelationData": correlation_data,
                 "MessageExpiryInterval": message_expiry_interval}
        props = SimpleNamespace(**{k: v for k, v in given.items() if v})
        return cls(_Fields(topic, raw, qos, retain, dup, props), payload,
                   params if params is not None else {}, client, attempt)

    @property
    def topic(self) -> str:
        return self._delivery.topic

    @property
    def raw(self) -> bytes:
        return self._delivery.payload

    @property
    def qos(self) -> int:
        return self._delivery.qos

    # retain and dup with defaults: the dispatcher's Delivery protocol does not require them
    @property
    def retain(self) -> bool:
        return bool(getattr(self._delivery, "retain", False))

    @property
    def dup(self) -> bool:
        return bool(getattr(self._delivery, "dup", False))

    def _property(self, name: str) -> Any:
        # paho sets an attribute only for the properties the packet carried; None under
        # MQTT 3.1.1, where there are no properties at all
        return getattr(getattr(self._delivery, "properties", None), name, None)

    @property
    def user_properties(self) -> UserProperties:
        """The MQTT 5 user properties, in order, repeated keys kept ([] when none)."""
        return [(k, v) for k, v in self._property("UserProperty") or ()]

    @property
    def content_type(self) -> str | None:
        return self._property("ContentType")

    @property
    def response_topic(self) -> str | None:
        return self._property("ResponseTopic")

    @property
    def correlation_data(self) -> bytes | None:
        data = self._property("CorrelationData")
        return None if data is None else bytes(data)

    @property
    def message_expiry_interval(self) -> int | None:
        """Seconds left, as the broker forwarded it (it counts the time the message waited)."""
        return self._property("MessageExpiryInterval")

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
