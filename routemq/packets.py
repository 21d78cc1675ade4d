"""The broker's PUBLISH and PUBREL packets, decoded straight from the bytes of the socket.

Why (issue 14): most of a worker's CPU per message went to paho's handling of each PUBLISH
(a packet parse in several passes, an `MQTTMessage`, a `Properties` object built by name
lookups, callbacks). Here one pass over one `bytes` object gives a `Publish` tuple.

    splitter = Splitter(max_packet_size=1 << 20)
    splitter.feed(sock.recv(65536))
    for first_byte, body in splitter:          # complete packets; a partial one waits
        if first_byte >> 4 == PUBLISH:
            msg = decode_publish(first_byte, body, 5, aliases)
        elif first_byte >> 4 == PUBREL:
            mid, reason = decode_pubrel(first_byte, body, 5)

Any input either decodes or raises `MalformedPacket` (never IndexError, UnicodeDecodeError...),
whose text says what is wrong and whose `reason_code` is the MQTT 5 DISCONNECT reason to send:
the connection must then be closed, since the stream cannot be resynchronised.

What counts as an error follows the MQTT 5.0 and 3.1.1 specifications: QoS 3, DUP set on QoS 0,
packet id 0, a topic that is empty (without a topic alias), not UTF-8, or contains U+0000 or a
wildcard; a property PUBLISH may not carry, or one of the single-valued ones twice; a
subscription identifier or topic alias of 0, a topic alias the client did not allow, a
payload format indicator other than 0 or 1; a variable byte integer over 4 bytes or (MQTT 5)
longer than it needs to be; anything that runs past its packet or leaves bytes unread in a
PUBREL. U+FEFF is a character like any other (MQTT-1.5.4-3; paho's property reader refuses
it). UTF-8 that is well formed but "SHOULD NOT" (control characters) is accepted, and so
is a response topic with a wildcard (a rule for its sender; replying to it fails at publish).

Properties: the worker needs the subscription identifiers of every message, the rest only
for the routes that ask, so the usual packet (no property but one subscription identifier)
costs a two-byte check; other properties are read into a `PublishProperties` with paho's
attribute names, on which an absent property raises AttributeError as on paho's object.
"""
from __future__ import annotations

from typing import Any, Iterator, NamedTuple, Optional

PUBLISH, PUBREL = 3, 6  # packet types (first byte >> 4)
MQTT5 = 5  # the protocol number as paho has it (3.1.1 is 4)
MAX_PACKET_SIZE = 1 + 4 + 268_435_455  # the largest packet a 4-byte remaining length frames

# MQTT 5 reason codes, for the DISCONNECT that must follow a MalformedPacket
MALFORMED_PACKET = 0x81
PROTOCOL_ERROR = 0x82
TOPIC_ALIAS_INVALID = 0x94
PACKET_TOO_LARGE = 0x95


class MalformedPacket(ValueError):
    """A packet the broker should not have sent; the message says exactly what is wrong."""

    def __init__(self, message: str, reason_code: int = MALFORMED_PACKET) -> None:
        super().__init__(message)
        self.reason_code = reason_code


def _vbi(buf: bytes, pos: int, end: int, what: str, strict: bool = True) -> tuple[int, int]:
    """The variable byte integer at buf[pos:end] and the position after it; (-1, pos) when
    it runs past `end`. Over 4 bytes always raises; a longer encoding than the value needs
    (0x80 0x00 for 0) raises when `strict` (MQTT-1.5.5-1; MQTT 3.1.1 has no such rule)."""
    value = shift = 0
    for i in range(pos, min(pos + 4, end)):
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if strict and byte == 0 and i > pos:
                raise MalformedPacket(f"{what} not in its shortest form")
            return value, i + 1
        shift += 7
    if end - pos >= 4:
        raise MalformedPacket(f"{what} over 4 bytes")
    return -1, pos


class Splitter:
    """Cuts the byte stream from the broker into packets.

    `feed(data)` what the socket gave, then iterate: each complete packet comes out as
    `(first_byte, body)`, `body` the bytes after the remaining length. A partial packet
    stays for the next feed. Leaving the loop early (backpressure) loses nothing: the next
    iteration starts at the first packet not yet handed out.

    A packet larger than `max_packet_size` (what the client advertised as Maximum Packet
    Size, counting the fixed header) raises MalformedPacket as soon as its header is read,
    before its bytes are buffered. Under MQTT 5 (`protocol=5`) a remaining length longer
    than it needs to be is malformed too. After a MalformedPacket, `reset()` (or a new
    Splitter) for the next connection.
    """

    __slots__ = ("max_packet_size", "strict", "_buf", "_pos", "_parts", "_have", "_need")

    def __init__(self, max_packet_size: int = MAX_PACKET_SIZE, protocol: int = MQTT5) -> None:
        if not 2 <= max_packet_size <= MAX_PACKET_SIZE:
            raise ValueError(f"max_packet_size must be 2..{MAX_PACKET_SIZE}, "
                             f"not {max_packet_size}")
        self.max_packet_size = max_packet_size
        self.strict = protocol == MQTT5
        self.reset()

    def reset(self) -> None:
        """Forget every buffered byte (a new connection)."""
        self._buf = b""  # bytes not yet handed out are _buf[_pos:] followed by _parts
        self._pos = 0
        self._parts: list[bytes] = []
        self._have = 0  # len(_buf) - _pos + the lengths of _parts
        self._need = 0  # the size of the packet at _pos once its header is known, else 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet handed out as packets."""
        return self._have

    def feed(self, data: bytes) -> None:
        if type(data) is not bytes:
            data = bytes(data)  # bodies are slices, and a payload must be bytes
        self._have += len(data)
        if self._pos == len(self._buf):
            self._buf, self._pos = data, 0
        elif self._have < self._need:
            # A large packet arrives in many reads: join its pieces once, when complete,
            # not once per read (quadratic).
            self._parts.append(data)
        else:
            self._buf = b"".join([self._buf[self._pos:], *self._parts, data])
            self._pos, self._parts = 0, []

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        buf, pos = self._buf, self._pos
        end = len(buf)
        limit = self.max_packet_size
        while end - pos >= 2:
            length = buf[pos + 1]
            if length < 0x80:
                start = pos + 2
            elif end - pos > 2 and 0 < buf[pos + 2] < 0x80:  # 128..16383: inline, it's common
                length = (length & 0x7F) | buf[pos + 2] << 7
                start = pos + 3
            else:
                length, start = _vbi(buf, pos + 1, end, "remaining length", self.strict)
                if length < 0:
                    break  # the rest of the remaining length is still on its way
            size = start - pos + length
            if size > limit:
                raise MalformedPacket(f"packet of {size} bytes over the maximum packet size "
                                      f"{limit}", PACKET_TOO_LARGE)
            if start + length > end:
                self._need = size
                break
            self._pos = pos = start + length
            self._have -= size
            self._need = 0
            yield buf[pos - size], buf[start:pos]
            if self._buf is not buf or self._pos != pos:  # fed while the consumer held it
                buf, pos = self._buf, self._pos
                end = len(buf)


class TopicAliases:
    """The topic aliases the broker set on one connection (MQTT 5, broker to client).

    `maximum` is the Topic Alias Maximum the client sent in CONNECT (0: none allowed). A
    PUBLISH with an alias and a topic sets it; with an alias and an empty topic, uses it.
    Aliases live as long as the connection: a new connection needs `clear()`.
    """

    __slots__ = ("maximum", "_topics")

    def __init__(self, maximum: int) -> None:
        if not 0 <= maximum <= 65535:
            raise ValueError(f"topic alias maximum must be 0..65535, not {maximum}")
        self.maximum = maximum
        self._topics: dict[int, str] = {}

    def resolve(self, alias: int, topic: str) -> str:
        """The topic of a PUBLISH carrying `alias` and `topic` ("" to use the alias)."""
        if alias > self.maximum:
            raise MalformedPacket(f"topic alias {alias} over the maximum {self.maximum}",
                                  TOPIC_ALIAS_INVALID)
        if topic:
            self._topics[alias] = topic
            return topic
        try:
            return self._topics[alias]
        except KeyError:
            raise MalformedPacket(f"unknown topic alias {alias}", PROTOCOL_ERROR) from None

    def clear(self) -> None:
        self._topics.clear()

    def __len__(self) -> int:
        return len(self._topics)


class PublishProperties:
    """A PUBLISH's MQTT 5 properties under paho's attribute names. An absent property
    raises AttributeError, so `getattr(props, name, None)` reads as on paho's object;
    SubscriptionIdentifier and UserProperty are lists, as paho has them."""

    __slots__ = ("PayloadFormatIndicator", "MessageExpiryInterval", "ContentType",
                 "ResponseTopic", "CorrelationData", "TopicAlias", "UserProperty", "_ids")

    PayloadFormatIndicator: int
    MessageExpiryInterval: int
    ContentType: str
    ResponseTopic: str
    CorrelationData: bytes
    TopicAlias: int
    UserProperty: list[tuple[str, str]]

    def __init__(self, subscription_ids: tuple[int, ...] = ()) -> None:
        self._ids = subscription_ids

    @property
    def SubscriptionIdentifier(self) -> list[int]:
        if not self._ids:
            raise AttributeError("SubscriptionIdentifier")
        return list(self._ids)

    def names(self) -> list[str]:
        """The names of the properties the packet carried, in paho's order."""
        return [name for name in _PAHO_ORDER if hasattr(self, name)]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PublishProperties):
            return NotImplemented
        return all(getattr(self, name, None) == getattr(other, name, None)
                   for name in _PAHO_ORDER)

    __hash__ = None  # type: ignore[assignment]  # mutable, as paho's

    def __repr__(self) -> str:
        return "PublishProperties(%s)" % ", ".join(
            f"{name}={getattr(self, name)!r}" for name in self.names())


class Publish(NamedTuple):
    """One decoded PUBLISH. `mid` is 0 for QoS 0; `subscription_ids` may hold several
    (one per matching subscription) and is () under MQTT 3.1.1, where `properties` is None.
    The first seven fields are routemq.mqtt.Message's, in its order:
    `Message(*publish[:7], generation, publish.properties)`."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    dup: bool
    subscription_ids: tuple[int, ...]
    properties: Optional[PublishProperties]


# Publish(...) goes through a generated __new__ with keyword handling: 2.5x the cost of
# building the tuple directly, and one is built per message.
_make_publish = tuple.__new__

# The MQTT 5 properties the two packets may carry: identifier -> (paho name, value type).
_BYTE, _TWO, _FOUR, _VBI, _BINARY, _STRING, _PAIR = range(7)
_PROPERTIES: dict[int, tuple[str, int]] = {
    0x01: ("PayloadFormatIndicator", _BYTE),
    0x02: ("MessageExpiryInterval", _FOUR),
    0x03: ("ContentType", _STRING),
    0x08: ("ResponseTopic", _STRING),
    0x09: ("CorrelationData", _BINARY),
    0x0B: ("SubscriptionIdentifier", _VBI),
    0x1F: ("ReasonString", _STRING),
    0x23: ("TopicAlias", _TWO),
    0x26: ("UserProperty", _PAIR),
}
_KIND = {ident: kind for ident, (_, kind) in _PROPERTIES.items()}
_NAME = {ident: name for ident, (name, _) in _PROPERTIES.items()}
_REPEATABLE = frozenset({0x0B, 0x26})  # every other property at most once per packet
_IN_PUBLISH = frozenset({0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x23, 0x26})
_IN_PUBREL = frozenset({0x1F, 0x26})
_PAHO_ORDER = ("PayloadFormatIndicator", "MessageExpiryInterval", "ContentType",
               "ResponseTopic", "CorrelationData", "SubscriptionIdentifier", "TopicAlias",
               "UserProperty")
_PUBREL_REASONS = (0x00, 0x92)  # Success, Packet Identifier not found


def _text(buf: bytes, pos: int, end: int, ident: int) -> tuple[str, int]:
    """The UTF-8 string (2-byte length, bytes) of property `ident` at buf[pos:end], and
    the position after it."""
    stop = pos + 2
    if stop <= end:
        stop += (buf[pos] << 8) | buf[pos + 1]
    if stop > end:
        raise MalformedPacket(f"truncated property 0x{ident:02x}")
    try:
        text = buf[pos + 2:stop].decode()
    except UnicodeDecodeError:
        raise MalformedPacket(f"property 0x{ident:02x} is not valid UTF-8") from None
    if "\0" in text:
        raise MalformedPacket(f"property 0x{ident:02x} contains U+0000")
    return text, stop


def _refuse(buf: bytes, pos: int, end: int, packet: str) -> MalformedPacket:
    """The error for the property identifier at buf[pos] that `packet` may not carry."""
    ident, _ = _vbi(buf, pos, end, "property identifier")
    if ident < 0:
        return MalformedPacket("truncated property identifier")
    return MalformedPacket(f"property 0x{ident:02x} not allowed in {packet}", PROTOCOL_ERROR)


def _read_properties(buf: bytes, pos: int, end: int, allowed: frozenset[int],
                     packet: str) -> dict[int, Any]:
    """The properties in buf[pos:end], checked against the spec: identifier -> value, or
    the list of values, in order, of a repeatable property."""
    found: dict[int, Any] = {}
    while pos < end:
        # Every identifier defined is below 0x80, so one byte; a longer variable byte
        # integer is an identifier no packet may carry (or one not in its shortest form).
        ident = buf[pos]
        if ident not in allowed:
            raise _refuse(buf, pos, end, packet)
        repeatable = ident in _REPEATABLE
        if not repeatable and ident in found:
            raise MalformedPacket(f"duplicate property 0x{ident:02x} in {packet}",
                                  PROTOCOL_ERROR)
        pos += 1
        kind = _KIND[ident]
        value: Any
        if kind == _STRING:
            value, pos = _text(buf, pos, end, ident)
        elif kind == _PAIR:
            key, pos = _text(buf, pos, end, ident)
            value, pos = _text(buf, pos, end, ident)
            value = (key, value)
        elif kind == _VBI:
            value, pos = _vbi(buf, pos, end, f"property 0x{ident:02x}")
            if value < 0:
                raise MalformedPacket(f"truncated property 0x{ident:02x}")
            if not value:
                raise MalformedPacket("subscription identifier 0", PROTOCOL_ERROR)
        else:
            width = 1 if kind == _BYTE else 4 if kind == _FOUR else 2
            if kind == _BINARY and pos + 2 <= end:
                width = 2 + ((buf[pos] << 8) | buf[pos + 1])
            if pos + width > end:
                raise MalformedPacket(f"truncated property 0x{ident:02x}")
            if kind == _BINARY:
                value = buf[pos + 2:pos + width]
            elif kind == _BYTE:
                value = buf[pos]
                if value > 1:  # the only byte property here: payload format indicator
                    raise MalformedPacket(f"payload format indicator {value} (must be 0 or 1)",
                                          PROTOCOL_ERROR)
            else:
                value = int.from_bytes(buf[pos:pos + width], "big")
                if not value and ident == 0x23:
                    raise MalformedPacket("topic alias 0", TOPIC_ALIAS_INVALID)
            pos += width
        if repeatable:
            found.setdefault(ident, []).append(value)
        else:
            found[ident] = value
    return found


def _publish_properties(buf: bytes, pos: int, end: int
                        ) -> tuple[PublishProperties, tuple[int, ...], int]:
    """The properties object, subscription identifiers and topic alias (0: none)."""
    found = _read_properties(buf, pos, end, _IN_PUBLISH, "PUBLISH")
    props = PublishProperties(tuple(found.pop(0x0B, ())))
    for ident, value in found.items():
        setattr(props, _NAME[ident], value)
    return props, props._ids, found.get(0x23, 0)


def decode_publish(first_byte: int, body: bytes, protocol: int,
                   aliases: Optional[TopicAliases] = None) -> Publish:
    """The PUBLISH packet `first_byte` + `body` (as a Splitter gives them), for a client
    connected with `protocol` (5, or 4 for 3.1.1). `aliases`: the connection's topic
    aliases (MQTT 5); None when the client allowed none. Raises MalformedPacket."""
    if first_byte >> 4 != PUBLISH:
        raise MalformedPacket(f"packet type {first_byte >> 4} is not a PUBLISH",
                              PROTOCOL_ERROR)
    if type(body) is not bytes:
        body = bytes(body)
    size = len(body)
    if size < 2:
        raise MalformedPacket("PUBLISH ends before its topic length")
    pos = 2 + ((body[0] << 8) | body[1])
    if pos > size:
        raise MalformedPacket(f"topic of {pos - 2} bytes runs past the end of the PUBLISH")
    qos = (first_byte >> 1) & 3
    if qos:
        if qos == 3:
            raise MalformedPacket("PUBLISH with QoS 3")
        if pos + 2 > size:
            raise MalformedPacket(f"QoS {qos} PUBLISH ends before its packet id")
        mid = (body[pos] << 8) | body[pos + 1]
        if not mid:
            raise MalformedPacket(f"packet id 0 in a QoS {qos} PUBLISH", PROTOCOL_ERROR)
        start = pos + 2
    elif first_byte & 0x08:
        # MQTT-3.3.1-2; mosquitto's broker disconnects for it too (paho lets it through)
        raise MalformedPacket("PUBLISH with DUP set and QoS 0", PROTOCOL_ERROR)
    else:
        mid = 0
        start = pos
    ids: tuple[int, ...] = ()
    props: Optional[PublishProperties] = None
    alias = 0
    if protocol == MQTT5:
        if start >= size:
            raise MalformedPacket("PUBLISH ends before its property length")
        length = body[start]
        if length < 0x80:
            start += 1
        else:
            length, start = _vbi(body, start, size, "property length")
            if length < 0:
                raise MalformedPacket("PUBLISH ends inside its property length")
        stop = start + length
        if stop > size:
            raise MalformedPacket(f"property length {length} runs past the end of the PUBLISH")
        if length == 2 and body[start] == 0x0B and 0 < body[start + 1] < 0x80:
            ids = (body[start + 1],)  # the usual: one subscription identifier, nothing else
            props = PublishProperties(ids)
        elif length:
            props, ids, alias = _publish_properties(body, start, stop)
        else:
            props = PublishProperties()
        start = stop
    try:
        topic = body[2:pos].decode()
    except UnicodeDecodeError:
        raise MalformedPacket("topic is not valid UTF-8") from None
    if "+" in topic or "#" in topic:
        raise MalformedPacket(f"topic contains a wildcard: {topic!r}", PROTOCOL_ERROR)
    if "\0" in topic:
        raise MalformedPacket("topic contains U+0000")
    if alias:
        if aliases is None:
            raise MalformedPacket(f"topic alias {alias} but the client allows none",
                                  TOPIC_ALIAS_INVALID)
        topic = aliases.resolve(alias, topic)
    elif not topic:
        raise MalformedPacket("PUBLISH with an empty topic" +
                              (" and no topic alias" if protocol == MQTT5 else ""),
                              PROTOCOL_ERROR)
    return _make_publish(Publish, (topic, body[start:], qos, (first_byte & 1) == 1, mid,
                                   (first_byte & 8) == 8, ids, props))


def decode_pubrel(first_byte: int, body: bytes, protocol: int) -> tuple[int, int]:
    """(packet id, reason code) of the PUBREL `first_byte` + `body` (QoS 2, second half);
    the reason is 0 (Success) or 0x92 (Packet Identifier not found), always 0 under 3.1.1.
    Its properties (a reason string, user properties) are checked, not returned."""
    if first_byte != 0x62:
        if first_byte >> 4 != PUBREL:
            raise MalformedPacket(f"packet type {first_byte >> 4} is not a PUBREL",
                                  PROTOCOL_ERROR)
        raise MalformedPacket(f"PUBREL with flags 0b{first_byte & 15:04b} (must be 0b0010)")
    if type(body) is not bytes:
        body = bytes(body)
    size = len(body)
    if size < 2 or (size != 2 and protocol != MQTT5):
        raise MalformedPacket(f"PUBREL of {size} bytes (must be 2"
                              f"{' or more' if protocol == MQTT5 else ''})")
    mid = (body[0] << 8) | body[1]
    if not mid:
        raise MalformedPacket("packet id 0 in a PUBREL", PROTOCOL_ERROR)
    if size == 2:
        return mid, 0
    reason = body[2]
    if reason not in _PUBREL_REASONS:
        raise MalformedPacket(f"PUBREL reason code 0x{reason:02x} (must be 0x00 or 0x92)",
                              PROTOCOL_ERROR)
    if size > 3:
        length, start = _vbi(body, 3, size, "property length")
        if length < 0:
            raise MalformedPacket("PUBREL ends inside its property length")
        if start + length != size:
            raise MalformedPacket(f"PUBREL property length {length} does not end at the "
                                  f"packet's end ({size - start} bytes left)")
        _read_properties(body, start, size, _IN_PUBREL, "PUBREL")
    return mid, reason
