"""routemq.packets: PUBLISH/PUBREL decoding checked against paho's own parser, framing at
every split, a table of malformed packets, and fuzzing (only MalformedPacket, never a crash).

paho parses through a client whose socket is a byte queue (`FeedSock`): `loop_read()` reads
what the test queued and `on_message` captures the MQTTMessage. That works alike on paho
1.6.1 (Debian 12) and 2.1.0. Packets are encoded by a small encoder here, independent of
the code under test, or with paho's `Properties.pack()` for the property block.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Optional

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import MalformedPacket as PahoMalformed, Properties

from routemq.message import Message
from routemq.packets import (MALFORMED_PACKET, PACKET_TOO_LARGE, PROTOCOL_ERROR,
                             TOPIC_ALIAS_INVALID, MalformedPacket, Publish, PublishProperties,
                             Splitter, TopicAliases, decode_publish, decode_pubrel)
from tests.mqtt_wire import packet, vbi

V5, V311 = 5, 4
MAX_VBI = 268_435_455
IDENTS = {0x01: "PayloadFormatIndicator", 0x02: "MessageExpiryInterval", 0x03: "ContentType",
          0x08: "ResponseTopic", 0x09: "CorrelationData", 0x0B: "SubscriptionIdentifier",
          0x23: "TopicAlias", 0x26: "UserProperty"}  # every property a PUBLISH may carry
PROPERTY_NAMES = tuple(IDENTS.values())
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# -- an encoder of our own ----------------------------------------------------------------

def utf8(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return len(raw).to_bytes(2, "big") + raw


def prop(ident: int, value: Any) -> bytes:
    """One property; the value's encoding follows from the identifier."""
    head = vbi(ident)
    if ident in (0x01,):
        return head + bytes([value])
    if ident == 0x02:
        return head + value.to_bytes(4, "big")
    if ident == 0x23:
        return head + value.to_bytes(2, "big")
    if ident == 0x0B:
        return head + vbi(value)
    if ident == 0x26:
        return head + utf8(value[0]) + utf8(value[1])
    return head + utf8(value)  # 0x03, 0x08, 0x09 (binary data is encoded the same way)


def publish(topic: str | bytes = "a/b", payload: bytes = b"hi", qos: int = 0,
            retain: bool = False, dup: bool = False, mid: int = 1,
            props: Optional[bytes] = b"\x00") -> bytes:
    """A whole PUBLISH; `props` is the property block with its length (None: MQTT 3.1.1)."""
    body = utf8(topic) + (mid.to_bytes(2, "big") if qos else b"") + (props or b"") + payload
    return packet(0x30 | dup << 3 | qos << 1 | retain, body)


def block(*props: bytes) -> bytes:
    raw = b"".join(props)
    return vbi(len(raw)) + raw


def body_of(raw: bytes) -> tuple[int, bytes]:
    """(first byte, body) of one whole packet, through the Splitter."""
    splitter = Splitter()
    splitter.feed(raw)
    packets = list(splitter)
    assert len(packets) == 1 and splitter.buffered == 0
    return packets[0]


# -- paho's parser ------------------------------------------------------------------------

class FeedSock:
    """What paho needs of a socket: recv() of what was queued, BlockingIOError when empty."""

    def __init__(self) -> None:
        self.inbox = bytearray()
        self.sent = bytearray()

    def recv(self, bufsize: int) -> bytes:
        if not self.inbox:
            raise BlockingIOError
        data = bytes(self.inbox[:bufsize])
        del self.inbox[:bufsize]
        return data

    def send(self, data: bytes) -> int:
        self.sent += data
        return len(data)

    def close(self) -> None:
        pass


def paho_parse(raw: bytes, protocol: int) -> list[mqtt.MQTTMessage]:
    """The messages paho's client delivers for the byte stream `raw` (QoS 2: after the
    PUBREL, which this sends for every QoS 2 PUBLISH it sees)."""
    kwargs = dict(client_id="packets-test", protocol=mqtt.MQTTv5 if protocol == V5
                  else mqtt.MQTTv311)
    if hasattr(mqtt, "CallbackAPIVersion"):
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
    else:
        client = mqtt.Client(**kwargs)
    got: list[mqtt.MQTTMessage] = []
    client.on_message = lambda c, u, m: got.append(m)
    sock = FeedSock()
    client._sock = sock
    splitter = Splitter()
    splitter.feed(raw)
    for first, body in splitter:
        sock.inbox += packet(first, body)
        if first >> 1 & 3 == 2:
            sock.inbox += b"\x62\x02" + body[2 + (body[0] << 8 | body[1]):][:2]
    while sock.inbox:
        assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
    return got


def paho_property(props: Any, name: str) -> Any:
    value = getattr(props, name, None)
    if name == "SubscriptionIdentifier" and isinstance(value, int):
        value = [value]
    return value


# -- what a generated PUBLISH holds ---------------------------------------------------------

@dataclass
class Spec:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    mid: int
    props: list[tuple[int, Any]] = field(default_factory=list)  # in wire order
    paho_pack: bool = False  # the property block from paho's Properties.pack()

    def property_block(self) -> bytes:
        if self.paho_pack:
            return paho_properties(self.props).pack()
        return block(*(prop(i, v) for i, v in self.props))

    def encode(self, protocol: int) -> bytes:
        return publish(self.topic, self.payload, self.qos, self.retain, self.dup, self.mid,
                       self.property_block() if protocol == V5 else None)

    def expected(self, name: str) -> Any:
        """A property as paho names and holds it, or None when absent."""
        [ident] = [i for i, n in IDENTS.items() if n == name]
        values = [v for i, v in self.props if i == ident]
        if ident in (0x0B, 0x26):
            return values or None
        return values[0] if values else None


def paho_properties(props: list[tuple[int, Any]]) -> Properties:
    p = Properties(PacketTypes.PUBLISH)
    for ident, value in props:
        setattr(p, IDENTS[ident], value)  # repeatable ones append, as paho does
    return p


def clean(text: str) -> str:
    """Text allowed in a topic and that paho's reader takes (it refuses U+FEFF)."""
    return "".join(c for c in text if c not in "\0+#\ufeff")


texts = st.text(max_size=12).map(clean)
topics = st.text(min_size=1, max_size=30).map(clean).filter(bool) | \
    st.sampled_from(["sensors/42/data", "a", "/", "//", "$SYS/x", "é/ü/中", "a b/c"])
small_payloads = st.binary(max_size=200)
payloads = small_payloads | st.builds(
    lambda seed, n: random.Random(seed).randbytes(n), st.integers(), st.integers(16_384, 70_000))
sub_ids = st.integers(1, 127) | st.integers(128, 16_383) | st.integers(16_384, MAX_VBI)
user_props = st.tuples(st.sampled_from(["k", "key", "é"]) | texts, texts)


@st.composite
def specs(draw: Any, protocol: int, alias: bool = True, large: bool = True) -> Spec:
    qos = draw(st.integers(0, 2))
    spec = Spec(topic=draw(topics), payload=draw(payloads if large else small_payloads),
                qos=qos,
                retain=draw(st.booleans()), dup=qos > 0 and draw(st.booleans()),
                mid=draw(st.integers(1, 65535)) if qos else 0)
    if protocol == V5:
        props = [(0x0B, i) for i in draw(st.lists(sub_ids, max_size=4))]
        props += [(0x26, kv) for kv in draw(st.lists(user_props, max_size=5))]
        singles = {0x01: st.integers(0, 1), 0x02: st.integers(0, 2**32 - 1), 0x03: texts,
                   0x08: topics, 0x09: st.binary(max_size=40)}
        if alias:
            singles[0x23] = st.integers(1, 10)
        for ident, values in singles.items():
            if draw(st.booleans()):
                props.append((ident, draw(values)))
        spec.paho_pack = draw(st.booleans())
        spec.props = props if spec.paho_pack else draw(st.permutations(props))
    return spec


def assert_same(ours: Publish, spec: Spec, theirs: Optional[mqtt.MQTTMessage],
                protocol: int) -> None:
    assert (ours.topic, ours.payload, ours.qos, ours.retain, ours.dup, ours.mid) == \
        (spec.topic, spec.payload, spec.qos, spec.retain, spec.dup, spec.mid)
    assert type(ours.payload) is bytes and type(ours.retain) is bool and type(ours.dup) is bool
    if theirs is not None:
        assert (ours.payload, ours.qos, bool(ours.retain), bool(ours.dup)) == \
            (theirs.payload, theirs.qos, bool(theirs.retain), bool(theirs.dup))
        assert ours.mid == (theirs.mid if ours.qos else 0)
    if protocol != V5:
        assert ours.properties is None and ours.subscription_ids == ()
        return
    assert ours.subscription_ids == tuple(spec.expected("SubscriptionIdentifier") or ())
    for name in PROPERTY_NAMES:
        mine = getattr(ours.properties, name, None)
        assert mine == spec.expected(name), name
        if theirs is not None:
            assert mine == paho_property(theirs.properties, name), name
        assert hasattr(ours.properties, name) == (mine is not None)


# -- decoding against paho -----------------------------------------------------------------

@pytest.mark.parametrize("protocol", [V5, V311])
@SETTINGS
@given(data=st.data())
def test_publish_decodes_as_paho_decodes_it(protocol, data):
    spec = data.draw(specs(protocol))
    raw = spec.encode(protocol)
    first, body = body_of(raw)
    ours = decode_publish(first, body, protocol, TopicAliases(10))
    [theirs] = paho_parse(raw, protocol)
    assert theirs.topic == spec.topic
    assert_same(ours, spec, theirs, protocol)


@SETTINGS
@given(data=st.data())
def test_topic_aliases_set_then_used(data):
    """Each packet sets or uses one of 3 aliases; paho (which ignores aliases) gives the
    empty topic of a packet that uses one, so the topic is checked against the model."""
    table = TopicAliases(3)
    model: dict[int, str] = {}
    stream, expected = [], []
    for _ in range(data.draw(st.integers(1, 8))):
        spec = data.draw(specs(V5, alias=False))
        alias = data.draw(st.integers(1, 3))
        use = alias in model and data.draw(st.booleans())
        wire_topic = "" if use else spec.topic
        spec.topic = model[alias] if use else spec.topic
        model[alias] = spec.topic
        spec.props = [*spec.props, (0x23, alias)]
        stream.append(publish(wire_topic, spec.payload, spec.qos, spec.retain, spec.dup,
                              spec.mid, spec.property_block()))
        expected.append((spec, wire_topic))
    raw = b"".join(stream)
    splitter = Splitter()
    splitter.feed(raw)
    ours = [decode_publish(first, body, V5, table) for first, body in splitter]
    theirs = paho_parse(raw, V5)
    assert len(theirs) == len(ours) == len(expected)  # a PUBREL follows each QoS 2 PUBLISH
    for mine, (spec, wire_topic), paho_msg in zip(ours, expected, theirs):
        assert paho_msg.topic == wire_topic
        assert_same(mine, spec, paho_msg, V5)
    assert len(table) == len(model)


def test_paho_refuses_u_feff_where_the_spec_keeps_it():
    """MQTT-1.5.4-3: U+FEFF MUST NOT be skipped or stripped: it is a character."""
    raw = publish("\ufefftopic", props=block(prop(0x03, "\ufefftext/plain")))
    msg = decode_publish(*body_of(raw), V5)
    assert msg.topic == "\ufefftopic" and msg.properties.ContentType == "\ufefftext/plain"
    with pytest.raises(PahoMalformed, match="U\\+FEFF"):
        paho_parse(raw, V5)


# -- the properties object, as routemq.message reads it ----------------------------------

def test_message_reads_decoded_properties_as_it_reads_paho_ones():
    raw = publish("rpc/7", b'{"q": 1}', qos=1, mid=9, props=block(
        prop(0x0B, 4), prop(0x26, ("tenant", "acme")), prop(0x03, "application/json"),
        prop(0x26, ("tenant", "other")), prop(0x08, "replies/7"), prop(0x09, b"\x00req"),
        prop(0x02, 30), prop(0x0B, 300)))
    delivery = decode_publish(*body_of(raw), V5)
    m = Message(delivery, {"q": 1}, {})
    assert m.user_properties == [("tenant", "acme"), ("tenant", "other")]
    assert (m.content_type, m.response_topic, m.correlation_data,
            m.message_expiry_interval) == ("application/json", "replies/7", b"\x00req", 30)
    assert delivery.subscription_ids == (4, 300)
    assert delivery.properties.SubscriptionIdentifier == [4, 300]
    assert "UserProperty=[('tenant', 'acme'), ('tenant', 'other')]" in \
        repr(delivery.properties)


@pytest.mark.parametrize("props, ids", [(b"\x00", ()), (block(prop(0x0B, 7)), (7,)),
                                        (block(prop(0x0B, 200)), (200,))])
def test_absent_properties_raise_attribute_error_as_on_paho(props, ids):
    delivery = decode_publish(*body_of(publish(props=props)), V5)
    assert isinstance(delivery.properties, PublishProperties)
    assert delivery.subscription_ids == ids
    for name in PROPERTY_NAMES:
        if name == "SubscriptionIdentifier" and ids:
            assert delivery.properties.SubscriptionIdentifier == list(ids)
            continue
        with pytest.raises(AttributeError):
            getattr(delivery.properties, name)
    m = Message(delivery, b"hi", {})
    assert (m.user_properties, m.content_type, m.correlation_data) == ([], None, None)


def test_a_publish_makes_the_worker_s_message():
    from routemq.mqtt import Message as Delivery
    p = decode_publish(*body_of(publish("a/b", b"x", qos=1, retain=True, dup=True, mid=3,
                                        props=block(prop(0x0B, 9)))), V5)
    d = Delivery(*p[:7], 4, p.properties)
    assert (d.topic, d.payload, d.qos, d.retain, d.mid, d.dup, d.subscription_ids,
            d.generation, d.properties) == ("a/b", b"x", 1, True, 3, True, (9,), 4, p.properties)


def test_mqtt311_has_no_properties_object():
    delivery = decode_publish(*body_of(publish(props=None)), V311)
    assert delivery.properties is None and delivery.subscription_ids == ()
    assert Message(delivery, b"hi", {}).response_topic is None


# -- PUBREL -------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol, body, expected", [
    (V311, b"\x12\x34", (0x1234, 0)),
    (V5, b"\x00\x01", (1, 0)),
    (V5, b"\x00\x01\x92", (1, 0x92)),
    (V5, b"\x00\x01\x00\x00", (1, 0)),
    (V5, b"\xff\xff\x92" + block(prop(0x1F, "no such id"), prop(0x26, ("k", "v")),
                                 prop(0x26, ("k", "w"))), (65535, 0x92)),
])
def test_pubrel(protocol, body, expected):
    assert decode_pubrel(0x62, body, protocol) == expected


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_bodies_other_than_bytes_decode_alike(kind):
    raw = publish(props=block(prop(0x0B, 1), prop(0x03, "text/plain")))
    first, body = body_of(raw)
    assert decode_publish(first, kind(body), V5) == decode_publish(first, body, V5)
    assert type(decode_publish(first, kind(body), V5).payload) is bytes
    other = publish(props=block(prop(0x0B, 1), prop(0x03, "text/html")))
    assert decode_publish(*body_of(other), V5) != decode_publish(first, body, V5)
    rel = b"\x00\x01\x00" + block(prop(0x1F, "ok"))
    assert decode_pubrel(0x62, kind(rel), V5) == (1, 0)


# -- framing ------------------------------------------------------------------------------

def stream_of_packets() -> tuple[bytes, list[tuple[int, bytes]]]:
    raws = [publish("a/b", b"x" * n, qos=n % 3, mid=n + 1) for n in (0, 1, 127, 200)]
    raws += [packet(0x62, b"\x00\x07"), packet(0xD0, b""),  # PINGRESP: empty body
             publish("big", b"y" * 20_000, qos=1)]
    return b"".join(raws), [body_of(r) for r in raws]


def collect(chunks: list[bytes], **kwargs: Any) -> list[tuple[int, bytes]]:
    splitter = Splitter(**kwargs)
    out = []
    for chunk in chunks:
        splitter.feed(chunk)
        out.extend(splitter)
    assert splitter.buffered == 0
    return out


def test_split_at_every_byte_boundary():
    raw, expected = stream_of_packets()
    assert sum(1 + len(vbi(len(b))) + len(b) for _, b in expected) == len(raw)
    for cut in range(len(raw) + 1):
        assert collect([raw[:cut], raw[cut:]]) == expected, cut


@SETTINGS
@given(data=st.data())
def test_generated_streams_in_random_chunks(data):
    specs_ = data.draw(st.lists(specs(V5, alias=False), min_size=1, max_size=6))
    raw = b"".join(s.encode(V5) for s in specs_)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=12)))
    bounds = [0, *cuts, len(raw)]
    got = collect([raw[a:b] for a, b in zip(bounds, bounds[1:])])
    assert len(got) == len(specs_)
    for (first, body), spec in zip(got, specs_):
        assert_same(decode_publish(first, body, V5), spec, None, V5)


def test_one_byte_at_a_time():
    raw, expected = stream_of_packets()
    assert collect([raw[i:i + 1] for i in range(len(raw))]) == expected


@given(cuts=st.lists(st.integers(0, 40_000), max_size=30), seed=st.integers())
@settings(max_examples=100, deadline=None)
def test_random_chunkings(cuts, seed):
    raw, expected = stream_of_packets()
    bounds = sorted({0, len(raw), *(c % (len(raw) + 1) for c in cuts)})
    chunks = [raw[a:b] for a, b in zip(bounds, bounds[1:])]
    kind = random.Random(seed).choice([bytes, bytearray, memoryview])
    assert collect([kind(c) for c in chunks]) == expected


def test_leaving_the_loop_early_loses_nothing():
    raw, expected = stream_of_packets()
    splitter = Splitter()
    splitter.feed(raw)
    got = []
    while len(got) < len(expected):
        for item in splitter:
            got.append(item)
            break  # one at a time, as a paused reader does
    assert got == expected and list(splitter) == [] and splitter.buffered == 0


def test_feeding_while_a_packet_is_being_handled():
    raw, expected = stream_of_packets()
    half = len(raw) // 2
    splitter = Splitter()
    splitter.feed(raw[:half])
    got = []
    for item in splitter:
        got.append(item)
        if len(got) == 1:
            splitter.feed(raw[half:])
    assert got == expected


def test_large_packet_in_many_reads_is_joined_once_complete():
    raw = publish("t", b"z" * 3_000_000, props=None)  # a 4-byte remaining length
    splitter = Splitter(protocol=V311)
    pieces = [raw[i:i + 65536] for i in range(0, len(raw), 65536)]
    for n, piece in enumerate(pieces[:-1], 1):
        splitter.feed(piece)
        assert list(splitter) == []
        assert splitter.buffered == n * 65536
        assert splitter._buf is pieces[0]  # the other pieces wait apart: no join per read
    splitter.feed(pieces[-1])
    [(first, body)] = list(splitter)
    assert decode_publish(first, body, V311).payload == b"z" * 3_000_000


def test_max_packet_size_counts_the_fixed_header_and_refuses_before_the_body():
    raw = publish("t", b"p" * 200, props=None)  # 1 + 2 (remaining length 203) + 203 bytes
    assert len(raw) == 206
    assert collect([raw], max_packet_size=len(raw)) == [body_of(raw)]
    splitter = Splitter(max_packet_size=len(raw) - 1)
    splitter.feed(raw[:3])  # the header only
    with pytest.raises(MalformedPacket) as err:
        list(splitter)
    assert str(err.value) == f"packet of {len(raw)} bytes over the maximum packet size " \
                             f"{len(raw) - 1}"
    assert err.value.reason_code == PACKET_TOO_LARGE


def test_remaining_length_longer_than_needed_is_malformed_only_in_mqtt5():
    raw = b"\x30\x86\x00" + utf8("a/b") + b"\x00"  # 6 encoded in two bytes
    assert collect([raw], protocol=V311) == [(0x30, raw[3:])]
    with pytest.raises(MalformedPacket, match="remaining length not in its shortest form"):
        collect([raw], protocol=V5)


def test_remaining_length_of_4_bytes_waits_and_a_5th_is_malformed():
    splitter = Splitter()
    splitter.feed(b"\x30\xff\xff\xff")
    assert list(splitter) == []  # the 4th byte may still end it
    splitter.feed(b"\xff")
    with pytest.raises(MalformedPacket, match="^remaining length over 4 bytes$"):
        list(splitter)
    splitter.reset()
    splitter.feed(b"\xd0\x00")
    assert list(splitter) == [(0xD0, b"")]


# -- topic aliases ------------------------------------------------------------------------

def test_topic_alias_table():
    table = TopicAliases(2)
    assert table.resolve(1, "a/b") == "a/b" and table.resolve(1, "") == "a/b"
    assert table.resolve(1, "c") == "c" and table.resolve(1, "") == "c"  # replaced
    with pytest.raises(MalformedPacket, match="^unknown topic alias 2$"):
        table.resolve(2, "")
    with pytest.raises(MalformedPacket, match="^topic alias 3 over the maximum 2$"):
        table.resolve(3, "x")
    table.clear()
    with pytest.raises(MalformedPacket, match="unknown topic alias 1"):
        table.resolve(1, "")
    with pytest.raises(ValueError):
        TopicAliases(65536)


# -- malformed packets --------------------------------------------------------------------

def pub_body(topic: bytes = b"a/b", qos: int = 0, mid: int = 1, props: bytes = b"\x00",
             payload: bytes = b"") -> bytes:
    return utf8(topic) + (mid.to_bytes(2, "big") if qos else b"") + props + payload


MALFORMED_PUBLISH = [  # (case, protocol, first byte, body, exact message, reason code)
    ("not a publish", V5, 0x40, pub_body(), "packet type 4 is not a PUBLISH", PROTOCOL_ERROR),
    ("qos 3", V5, 0x36, pub_body(qos=1), "PUBLISH with QoS 3", MALFORMED_PACKET),
    ("dup on qos 0", V5, 0x38, pub_body(), "PUBLISH with DUP set and QoS 0", PROTOCOL_ERROR),
    ("packet id 0, qos 1", V5, 0x32, pub_body(qos=1, mid=0),
     "packet id 0 in a QoS 1 PUBLISH", PROTOCOL_ERROR),
    ("packet id 0, qos 2", V311, 0x34, pub_body(qos=2, mid=0, props=b""),
     "packet id 0 in a QoS 2 PUBLISH", PROTOCOL_ERROR),
    ("empty body", V5, 0x30, b"", "PUBLISH ends before its topic length", MALFORMED_PACKET),
    ("one byte", V5, 0x30, b"\x00", "PUBLISH ends before its topic length", MALFORMED_PACKET),
    ("topic past the end", V5, 0x30, b"\x00\x09a/b",
     "topic of 9 bytes runs past the end of the PUBLISH", MALFORMED_PACKET),
    ("no packet id", V5, 0x32, utf8("a/b") + b"\x01",
     "QoS 1 PUBLISH ends before its packet id", MALFORMED_PACKET),
    ("no property length", V5, 0x30, utf8("a/b"),
     "PUBLISH ends before its property length", MALFORMED_PACKET),
    ("property length in pieces", V5, 0x30, utf8("a/b") + b"\x80",
     "PUBLISH ends inside its property length", MALFORMED_PACKET),
    ("property length over 4 bytes", V5, 0x30, pub_body(props=b"\xff\xff\xff\xff\x01"),
     "property length over 4 bytes", MALFORMED_PACKET),
    ("property length not shortest", V5, 0x30, pub_body(props=b"\x80\x00"),
     "property length not in its shortest form", MALFORMED_PACKET),
    ("property length past the end", V5, 0x30, pub_body(props=b"\x05\x01\x00"),
     "property length 5 runs past the end of the PUBLISH", MALFORMED_PACKET),
    ("topic not UTF-8", V5, 0x30, pub_body(b"a/\xff"), "topic is not valid UTF-8",
     MALFORMED_PACKET),
    ("topic with a surrogate", V5, 0x30, pub_body(b"\xed\xa0\x80"),
     "topic is not valid UTF-8", MALFORMED_PACKET),
    ("topic overlong UTF-8", V311, 0x30, pub_body(b"\xc0\xaf", props=b""),
     "topic is not valid UTF-8", MALFORMED_PACKET),
    ("topic with U+0000", V5, 0x30, pub_body(b"a\x00b"), "topic contains U+0000",
     MALFORMED_PACKET),
    ("topic with +", V5, 0x30, pub_body(b"a/+/b"), "topic contains a wildcard: 'a/+/b'",
     PROTOCOL_ERROR),
    ("topic with #", V311, 0x30, pub_body(b"a/#", props=b""),
     "topic contains a wildcard: 'a/#'", PROTOCOL_ERROR),
    ("empty topic 3.1.1", V311, 0x30, pub_body(b"", props=b""),
     "PUBLISH with an empty topic", PROTOCOL_ERROR),
    ("empty topic, no alias", V5, 0x30, pub_body(b""),
     "PUBLISH with an empty topic and no topic alias", PROTOCOL_ERROR),
    ("session expiry in PUBLISH", V5, 0x30, pub_body(props=block(b"\x11\x00\x00\x00\x05")),
     "property 0x11 not allowed in PUBLISH", PROTOCOL_ERROR),
    ("unknown property", V5, 0x30, pub_body(props=block(b"\x7f\x00")),
     "property 0x7f not allowed in PUBLISH", PROTOCOL_ERROR),
    ("two-byte property identifier", V5, 0x30, pub_body(props=block(b"\x80\x01\x00")),
     "property 0x80 not allowed in PUBLISH", PROTOCOL_ERROR),
    ("property identifier not shortest", V5, 0x30, pub_body(props=block(b"\x81\x00\x00")),
     "property identifier not in its shortest form", MALFORMED_PACKET),
    ("truncated property identifier", V5, 0x30, pub_body(props=block(b"\x0b\x05\x80")),
     "truncated property identifier", MALFORMED_PACKET),
    *[(f"duplicate 0x{i:02x}", V5, 0x30, pub_body(props=block(prop(i, v), prop(0x0B, 1),
                                                              prop(i, v))),
       f"duplicate property 0x{i:02x} in PUBLISH", PROTOCOL_ERROR)
      for i, v in [(0x01, 1), (0x02, 60), (0x03, "t"), (0x08, "r"), (0x09, b"c"),
                   (0x23, 1)]],
    ("truncated expiry", V5, 0x30, pub_body(props=block(b"\x02\x00\x00")),
     "truncated property 0x02", MALFORMED_PACKET),
    ("truncated topic alias", V5, 0x30, pub_body(props=block(b"\x23\x00")),
     "truncated property 0x23", MALFORMED_PACKET),
    ("truncated payload format", V5, 0x30, pub_body(props=block(b"\x01")),
     "truncated property 0x01", MALFORMED_PACKET),
    ("truncated subscription id", V5, 0x30, pub_body(props=block(b"\x0b\x80")),
     "truncated property 0x0b", MALFORMED_PACKET),
    ("subscription id over 4 bytes", V5, 0x30,
     pub_body(props=block(b"\x0b\xff\xff\xff\xff\x01")),
     "property 0x0b over 4 bytes", MALFORMED_PACKET),
    ("truncated string length", V5, 0x30, pub_body(props=block(b"\x03\x00")),
     "truncated property 0x03", MALFORMED_PACKET),
    ("truncated string", V5, 0x30, pub_body(props=block(b"\x08\x00\x05abc")),
     "truncated property 0x08", MALFORMED_PACKET),
    ("truncated user property value", V5, 0x30,
     pub_body(props=block(b"\x26" + utf8("k") + b"\x00\x03v")),
     "truncated property 0x26", MALFORMED_PACKET),
    ("truncated correlation data", V5, 0x30, pub_body(props=block(b"\x09\x00\x09ab")),
     "truncated property 0x09", MALFORMED_PACKET),
    ("property string not UTF-8", V5, 0x30, pub_body(props=block(prop(0x03, b"\xfe"))),
     "property 0x03 is not valid UTF-8", MALFORMED_PACKET),
    ("user property with U+0000", V5, 0x30, pub_body(props=block(prop(0x26, ("k", "a\0")))),
     "property 0x26 contains U+0000", MALFORMED_PACKET),
    ("subscription id 0", V5, 0x30, pub_body(props=block(b"\x0b\x00")),
     "subscription identifier 0", PROTOCOL_ERROR),
    ("subscription id 0 after others", V5, 0x30,
     pub_body(props=block(prop(0x0B, 3), b"\x0b\x00")),
     "subscription identifier 0", PROTOCOL_ERROR),
    ("subscription id not shortest", V5, 0x30, pub_body(props=block(b"\x0b\x85\x00")),
     "property 0x0b not in its shortest form", MALFORMED_PACKET),
    ("topic alias 0", V5, 0x30, pub_body(props=block(b"\x23\x00\x00")), "topic alias 0",
     TOPIC_ALIAS_INVALID),
    ("payload format 2", V5, 0x30, pub_body(props=block(b"\x01\x02")),
     "payload format indicator 2 (must be 0 or 1)", PROTOCOL_ERROR),
    ("unknown topic alias", V5, 0x30, pub_body(b"", props=block(prop(0x23, 7))),
     "unknown topic alias 7", PROTOCOL_ERROR),
    ("topic alias over the maximum", V5, 0x30, pub_body(props=block(prop(0x23, 11))),
     "topic alias 11 over the maximum 10", TOPIC_ALIAS_INVALID),
]


@pytest.mark.parametrize("case, protocol, first, body, message, reason",
                         MALFORMED_PUBLISH, ids=[c[0] for c in MALFORMED_PUBLISH])
def test_malformed_publish(case, protocol, first, body, message, reason):
    with pytest.raises(MalformedPacket) as err:
        decode_publish(first, body, protocol, TopicAliases(10))
    assert str(err.value) == message
    assert err.value.reason_code == reason


def test_topic_alias_when_the_client_allows_none():
    body = pub_body(props=block(prop(0x23, 1)))
    with pytest.raises(MalformedPacket, match="^topic alias 1 but the client allows none$"):
        decode_publish(0x30, body, V5, None)
    with pytest.raises(MalformedPacket, match="^topic alias 1 over the maximum 0$"):
        decode_publish(0x30, body, V5, TopicAliases(0))


MALFORMED_PUBREL = [
    ("flags 0000", V5, 0x60, b"\x00\x01", "PUBREL with flags 0b0000 (must be 0b0010)",
     MALFORMED_PACKET),
    ("flags 0011", V311, 0x63, b"\x00\x01", "PUBREL with flags 0b0011 (must be 0b0010)",
     MALFORMED_PACKET),
    ("not a pubrel", V5, 0x72, b"\x00\x01", "packet type 7 is not a PUBREL", PROTOCOL_ERROR),
    ("3 bytes in 3.1.1", V311, 0x62, b"\x00\x01\x00", "PUBREL of 3 bytes (must be 2)",
     MALFORMED_PACKET),
    ("1 byte", V5, 0x62, b"\x00", "PUBREL of 1 bytes (must be 2 or more)", MALFORMED_PACKET),
    ("packet id 0", V5, 0x62, b"\x00\x00", "packet id 0 in a PUBREL", PROTOCOL_ERROR),
    ("reason 0x10", V5, 0x62, b"\x00\x01\x10",
     "PUBREL reason code 0x10 (must be 0x00 or 0x92)", PROTOCOL_ERROR),
    ("property length short", V5, 0x62, b"\x00\x01\x00\x01\x1f\x00\x00",
     "PUBREL property length 1 does not end at the packet's end (3 bytes left)",
     MALFORMED_PACKET),
    ("property length in pieces", V5, 0x62, b"\x00\x01\x00\x80",
     "PUBREL ends inside its property length", MALFORMED_PACKET),
    ("content type in PUBREL", V5, 0x62, b"\x00\x01\x00" + block(prop(0x03, "x")),
     "property 0x03 not allowed in PUBREL", PROTOCOL_ERROR),
    ("two reason strings", V5, 0x62, b"\x00\x01\x00" + block(prop(0x1F, "a"), prop(0x1F, "b")),
     "duplicate property 0x1f in PUBREL", PROTOCOL_ERROR),
    ("reason string not UTF-8", V5, 0x62, b"\x00\x01\x00" + block(prop(0x1F, b"\xff")),
     "property 0x1f is not valid UTF-8", MALFORMED_PACKET),
]


@pytest.mark.parametrize("case, protocol, first, body, message, reason",
                         MALFORMED_PUBREL, ids=[c[0] for c in MALFORMED_PUBREL])
def test_malformed_pubrel(case, protocol, first, body, message, reason):
    with pytest.raises(MalformedPacket) as err:
        decode_pubrel(first, body, protocol)
    assert str(err.value) == message
    assert err.value.reason_code == reason


def test_malformed_packet_is_a_value_error():
    assert issubclass(MalformedPacket, ValueError)


# -- fuzzing: anything decodes or raises MalformedPacket --------------------------------------

def decode_all(raw: bytes, protocol: int, aliases: TopicAliases) -> list[Any]:
    """Frame `raw` and decode every packet as a PUBLISH and as a PUBREL, whatever its type;
    MalformedPacket from one packet ends the stream, as it ends a connection."""
    out: list[Any] = []
    splitter = Splitter(max_packet_size=100_000, protocol=protocol)
    splitter.feed(raw)
    try:
        for first, body in splitter:
            for decode in (lambda: decode_publish(first, body, protocol, aliases),
                           lambda: decode_publish(0x30 | first & 15, body, protocol, aliases),
                           lambda: decode_pubrel(first, body, protocol),
                           lambda: decode_pubrel(0x62, body, protocol)):
                try:
                    out.append(decode())
                except MalformedPacket as exc:
                    assert str(exc) and exc.reason_code in (0x81, 0x82, 0x94, 0x95)
    except MalformedPacket as exc:
        assert str(exc)
    return out


@pytest.mark.parametrize("protocol", [V5, V311])
@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300))
def test_random_bytes_never_crash(protocol, raw):
    # decode_all fails the test on any exception but MalformedPacket; what decodes must be
    # a Publish or a PUBREL's (mid, reason code)
    assert all(isinstance(r, tuple) for r in decode_all(raw, protocol, TopicAliases(5)))


@pytest.mark.parametrize("protocol", [V5, V311])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_packets_never_crash(protocol, data):
    """Small valid packets (no large payloads), then edits: bytes changed, cut, inserted."""
    spec = data.draw(specs(protocol, large=False))
    raw = bytearray(spec.encode(protocol))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw)))
        edit = data.draw(st.sampled_from(["set", "cut", "insert"]))
        if edit == "set" and at < len(raw):
            raw[at] = data.draw(st.integers(0, 255))
        elif edit == "cut":
            del raw[at:at + data.draw(st.integers(1, 3))]
        else:
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=3))
    assert all(isinstance(r, tuple) for r in decode_all(bytes(raw), protocol,
                                                         TopicAliases(5)))


@pytest.mark.parametrize("protocol", [V5, V311])
def test_many_random_mutations_of_property_rich_packets(protocol):
    """A seeded sweep of 20,000 mutations (where hypothesis draws a few hundred)."""
    rng = random.Random(14)
    base = [publish("s/1/d", b'{"t": 1}', qos=1, mid=5,
                    props=block(prop(0x0B, 3), prop(0x26, ("k", "v")), prop(0x0B, 200),
                                prop(0x03, "json"), prop(0x08, "r/1"), prop(0x09, b"id"),
                                prop(0x02, 9), prop(0x01, 1), prop(0x23, 2))
                    if protocol == V5 else None),
            publish("", b"", qos=2, mid=7, props=block(prop(0x23, 2))),
            packet(0x62, b"\x00\x07\x92" + block(prop(0x1F, "x"), prop(0x26, ("a", "b"))))]
    decoded = 0
    for _ in range(20_000):
        raw = bytearray(rng.choice(base))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(raw) + 1)
            op = rng.random()
            if op < 0.6 and at < len(raw):
                raw[at] = rng.randrange(256)
            elif op < 0.8:
                del raw[at:at + rng.randint(1, 3)]
            else:
                raw[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 3)))
        decoded += len(decode_all(bytes(raw), protocol, TopicAliases(5)))
    assert decoded  # the sweep also reaches packets that still decode
