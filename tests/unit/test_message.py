"""Message metadata and replies (routemq.message), through the worker's Dispatcher."""
import asyncio
import json

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from routemq import Message
from routemq.dispatcher import Dispatcher
from routemq.message import encode_payload, publish_properties
from routemq.mqtt import Message as Delivery
from routemq.router import Route, Router
from routemq.testing import RecordingClient


def props(**values):
    p = Properties(PacketTypes.PUBLISH)
    for name, value in values.items():
        setattr(p, name, value)
    return p


MQTT5_PROPS = dict(UserProperty=[("tenant", "acme"), ("trace", "t-1")],
                   ContentType="application/json", ResponseTopic="replies/7",
                   CorrelationData=b"\x00req-7", MessageExpiryInterval=30)


def test_message_reads_the_mqtt5_properties_of_its_delivery():
    d = Delivery("rpc/7", b'{"q": 1}', 1, True, 5, True, (3,), 0, props(**MQTT5_PROPS))
    m = Message(d, {"q": 1}, {"id": "7"}, "C")
    assert (m.topic, m.payload, m.raw, m.qos, m.retain, m.dup, m.attempt, m.params) == \
        ("rpc/7", {"q": 1}, b'{"q": 1}', 1, True, True, 1, {"id": "7"})
    assert m.user_properties == [("tenant", "acme"), ("trace", "t-1")]
    assert (m.content_type, m.response_topic, m.correlation_data,
            m.message_expiry_interval) == ("application/json", "replies/7", b"\x00req-7", 30)


def test_mqtt311_delivery_has_no_properties():
    m = Message(Delivery("a/b", b"x", 0, False, 0), b"x", {})
    assert m.user_properties == [] and m.response_topic is None
    assert m.content_type is m.correlation_data is m.message_expiry_interval is None
    assert (m.retain, m.dup, m.attempt) == (False, False, 1)


def test_message_has_slots_only():
    m = Message.build("t", b"")
    with pytest.raises(AttributeError):
        m.other = 1  # type: ignore[attr-defined]


def test_build_makes_a_message_from_plain_values():
    m = Message.build("a/1", {"x": 1}, b'{"x":1}', 1, True, False, 2, {"id": "1"},
                      [("k", "v")], "text/json", "r/1", b"c", 60, client="C")
    assert (m.topic, m.payload, m.raw, m.qos, m.retain, m.dup, m.attempt, m.params) == \
        ("a/1", {"x": 1}, b'{"x":1}', 1, True, False, 2, {"id": "1"})
    assert (m.user_properties, m.content_type, m.response_topic, m.correlation_data,
            m.message_expiry_interval) == ([("k", "v")], "text/json", "r/1", b"c", 60)
    bare = Message.build("b", b"raw")
    assert (bare.raw, bare.user_properties, bare.response_topic, bare.params) == \
        (b"raw", [], None, {})


@pytest.mark.parametrize("payload, wire", [
    ({"ok": True}, b'{"ok":true}'), ([1, 2], b"[1,2]"), ("héllo", "héllo".encode()),
    (b"\xff\x00", b"\xff\x00"), (bytearray(b"ab"), b"ab"), (3, b"3")])
def test_encode_payload(payload, wire):
    assert encode_payload(payload) == wire


def test_encode_payload_refuses_what_has_no_wire_form():
    with pytest.raises(TypeError, match="object"):
        encode_payload(object())


def test_reply_sends_correlation_data_and_user_properties():
    published = []
    client = RecordingClient(published)
    m = Message.build("rpc/7", {}, response_topic="replies/7", correlation_data=b"c-1",
                      client=client)
    info = asyncio.run(m.reply({"v": 21.5}, qos=2, user_properties=[("k", "v")]))
    assert info.rc == 0
    [p] = published
    assert (p.topic, p.payload, p.raw, p.qos, p.retain) == \
        ("replies/7", {"v": 21.5}, b'{"v":21.5}', 2, False)
    assert (p.correlation_data, p.user_properties) == (b"c-1", [("k", "v")])


def test_reply_without_response_topic_is_a_value_error():
    m = Message.build("rpc/7", {}, client=RecordingClient([]))
    with pytest.raises(ValueError, match="rpc/7.*no response topic"):
        asyncio.run(m.reply("x"))


def test_reply_under_mqtt311_sends_no_properties():
    class V311:
        _protocol = paho.MQTTv311
        calls = []

        def publish(self, *args, **kwargs):
            self.calls.append((args, kwargs))

    client = V311()
    m = Message.build("rpc/7", {}, response_topic="replies/7", correlation_data=b"c",
                      client=client)
    asyncio.run(m.reply("pong"))
    assert client.calls == [(("replies/7", b"pong"), {"qos": 1, "properties": None})]


@pytest.mark.parametrize("protocol", [paho.MQTTv5, paho.MQTTv311])
def test_reply_through_a_real_paho_client(protocol):
    """paho's own publish takes what reply passes (properties for MQTT 5), in 1.6 and 2.x:
    unconnected, a QoS 1 message is queued for sending and keeps its properties."""
    kwargs = {"protocol": protocol}
    if hasattr(paho, "CallbackAPIVersion"):
        kwargs["callback_api_version"] = paho.CallbackAPIVersion.VERSION2
    client = paho.Client(**kwargs)
    m = Message.build("rpc/7", {}, response_topic="replies/7", correlation_data=b"c-9",
                      client=client)
    info = asyncio.run(m.reply({"ok": 1}, user_properties=[("a", "b")]))
    queued = client._out_messages[info.mid]
    assert (queued.topic, queued.payload, queued.qos) == ("replies/7", b'{"ok":1}', 1)
    sent = getattr(queued, "properties", None)
    if protocol == paho.MQTTv5:
        assert (sent.CorrelationData, sent.UserProperty) == (b"c-9", [("a", "b")])
    else:
        assert sent is None


def test_publish_properties_is_none_when_there_is_nothing_to_send():
    assert publish_properties() is None
    p = publish_properties([("a", 1)], b"x", "r/t")
    assert (p.UserProperty, p.CorrelationData, p.ResponseTopic) == ([("a", "1")], b"x", "r/t")


# --- the router: who gets a Message -------------------------------------------------------

@pytest.mark.parametrize("name", ["payload", "client", "message"])
def test_route_parameter_with_a_reserved_name_is_refused(name):
    from routemq.errors import RouteError
    with pytest.raises(RouteError,
                       match=rf"pattern 'a/\{{{name}\}}/b': parameter name '{name}' is reserved"):
        Router().on(f"a/{{{name}}}/b", lambda **kw: None)


def test_route_decides_once_whether_the_handler_wants_the_message():
    async def plain(payload, client): ...
    async def wants(payload, client, message): ...
    async def keyword_only(payload, client, *, message=None): ...
    async def var_kw(payload, client, **kwargs): ...

    class Mw:
        async def handle(self, context, next_handler):
            return await next_handler(context)

    assert [Route("t", h).wants_message for h in (plain, wants, keyword_only, var_kw)] == \
        [False, True, True, False]
    assert not Route("t", plain).uses_message
    assert Route("t", plain, middleware=[Mw()]).uses_message
    assert not Route("t", print).wants_message  # a builtin without a signature


def test_router_dispatch_gives_a_declaring_handler_a_bare_message():
    seen = []

    def handler(device, payload, client, message):
        seen.append(message)
        return "done"

    router = Router()
    router.on("d/{device}", handler)
    assert asyncio.run(router.dispatch("d/1", b"raw", "C")) == "done"
    [m] = seen
    assert (m.topic, m.payload, m.raw, m.params, m.attempt, m.response_topic) == \
        ("d/1", b"raw", b"raw", {"device": "1"}, 1, None)


# --- the dispatcher: the Message a worker builds ------------------------------------------

def _dispatch(router, deliveries):
    acked = []
    dispatcher = Dispatcher(router, client="C", ack=acked.append)
    dispatcher.hold(router.routes)

    async def main():
        for d in deliveries:
            dispatcher.submit(d)
        assert await dispatcher.drain(5)
    asyncio.run(main())
    return acked, dispatcher


def test_worker_hands_the_message_to_handlers_and_middleware_that_use_it():
    seen = []

    async def with_message(id, payload, client, message):
        seen.append(("handler", message))

    async def without(id, payload, client):
        seen.append(("plain", payload))

    async def mw(context, next_handler):
        seen.append(("mw", context["message"]))
        return await next_handler(context)

    router = Router()
    router.on("m/{id}", with_message, qos=1)
    router.on("p/{id}", without, qos=1)
    router.on("w/{id}", without, qos=1, middleware=[mw])
    acked, dispatcher = _dispatch(router, [
        Delivery("m/1", b'{"a": 1}', 1, True, 1, True, (), 0, props(**MQTT5_PROPS)),
        Delivery("p/1", b"[]", 1, False, 2),
        Delivery("w/1", b"x", 1, False, 3, properties=props(UserProperty=[("u", "1")]))])
    assert len(acked) == 3 and dispatcher.metrics.errors == 0
    kinds = dict((kind, value) for kind, value in seen)
    m = kinds["handler"]
    assert (m.topic, m.payload, m.qos, m.retain, m.dup, m.params) == \
        ("m/1", {"a": 1}, 1, True, True, {"id": "1"})
    assert (m.correlation_data, m.response_topic, m.attempt) == (b"\x00req-7", "replies/7", 1)
    assert [v for k, v in seen if k == "plain"] == [[], b"x"]  # no Message for them
    assert kinds["mw"].user_properties == [("u", "1")] and kinds["mw"].raw == b"x"


def test_reply_from_a_worker_handler_goes_through_the_workers_client():
    published = []
    client = RecordingClient(published)

    async def rpc(payload, client, message):
        await message.reply({"echo": payload})

    router = Router()
    router.on("rpc", rpc, qos=1)
    dispatcher = Dispatcher(router, client=client, ack=lambda d: None)
    dispatcher.hold(router.routes)

    async def main():
        dispatcher.submit(Delivery("rpc", b'"hi"', 1, False, 1,
                                   properties=props(ResponseTopic="re", CorrelationData=b"7")))
        assert await dispatcher.drain(5)
    asyncio.run(main())
    [p] = published
    assert (p.topic, json.loads(p.raw), p.correlation_data) == ("re", {"echo": "hi"}, b"7")
