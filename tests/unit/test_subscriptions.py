"""A worker's subscriptions without a broker: entries, identifiers only where filters overlap,
acknowledgements, and what a resumed session drops (routemq.subscriptions)."""
import asyncio

from routemq.router import Router
from routemq.subscriptions import Entry, Subscriptions


async def handler(payload, client):
    pass


class Client:
    """What Subscriptions needs of the MQTT client: `connected` and the awaitable
    subscribe/unsubscribe. Each request waits until the test answers it (`answer`)."""

    def __init__(self):
        self.connected = True
        self.sent = []  # (kind, entries or filters, future of the broker's answer)

    async def subscribed(self, entries):
        if not self.connected:
            raise ConnectionError("offline")
        answer = asyncio.get_running_loop().create_future()
        self.sent.append(("SUBSCRIBE", list(entries), answer))
        return await answer

    async def unsubscribed(self, filters):
        answer = asyncio.get_running_loop().create_future()
        self.sent.append(("UNSUBSCRIBE", list(filters), answer))
        await answer

    async def answer(self, i, result=None, error=None):
        future = self.sent[i][2]
        future.set_exception(error) if error else future.set_result(result)
        for _ in range(5):  # let the waiting task run
            await asyncio.sleep(0)


def make():
    router = Router()
    a = router.on("s/{id}/data", handler, shared=True, worker_count=2, qos=2)
    b = router.on("s/{rest*}", handler, shared=True)
    c = router.on("alerts/{id}", handler, qos=1)
    events = []
    subs = Subscriptions(Client(), router, "g", on_done=lambda: events.append("done"),
                         on_refused=lambda code: events.append(code))
    return subs, (a, b, c), events


def run(test):
    def wrapper():
        asyncio.run(test())
    wrapper.__name__ = test.__name__
    return wrapper


@run
async def test_identifiers_only_where_held_filters_overlap_and_qos2_is_received_at_qos1():
    subs, (a, b, c), _ = make()
    subs.change([a, c])
    assert subs.subscribed == {a.key: Entry("$share/g/s/+/data", 1, None),
                               c.key: Entry("alerts/+", 1, None)}
    subs.change([a, b, c])  # a and b overlap now: both need their identifier
    assert subs.subscribed[a.key] == Entry("$share/g/s/+/data", 1, 1)
    assert subs.subscribed[b.key].sub_id == 2


@run
async def test_done_only_when_every_suback_is_in_and_a_refusal_is_reported():
    subs, (a, b, c), events = make()
    subs.change([a])
    subs.change([a, c])
    await asyncio.sleep(0)
    await subs.client.answer(0, [1])
    assert events == []  # the second SUBSCRIBE is still unanswered
    await subs.client.answer(1, [1])
    assert events == ["done"]
    subs.change([a, b, c])
    await asyncio.sleep(0)
    await subs.client.answer(2, [1, 0x87])
    assert events == ["done", 0x87]


@run
async def test_a_subscribe_lost_with_its_connection_is_not_waited_for():
    subs, (a, b, c), events = make()
    subs.change([a])
    await asyncio.sleep(0)
    await subs.client.answer(0, error=ConnectionError("gone"))
    assert events == []
    subs.resubscribe(session_present=False)  # the next connection
    await asyncio.sleep(0)
    await subs.client.answer(1, [1])
    assert events == ["done"]


@run
async def test_a_route_let_go_is_unsubscribed_and_its_unsuback_awaited():
    subs, (a, b, c), _ = make()
    subs.change([a, c])
    added, removed = subs.change([a])
    assert added == [] and removed == [c.key]
    await asyncio.sleep(0)
    kind, filters, _ = subs.client.sent[-1]
    assert (kind, filters) == ("UNSUBSCRIBE", ["alerts/+"])
    unsubscribing = subs.unsubscribe(["x"])
    await asyncio.sleep(0)
    assert not unsubscribing.done()
    await subs.client.answer(len(subs.client.sent) - 1)
    assert unsubscribing.done() and subs.by_route() == {a.key: "$share/g/s/+/data"}


@run
async def test_a_resumed_session_drops_the_filters_of_routes_not_held():
    subs, (a, b, c), _ = make()
    subs.held = [a]
    subs.resubscribe(session_present=True)
    await asyncio.sleep(0)
    assert [s[0] for s in subs.client.sent] == ["SUBSCRIBE", "UNSUBSCRIBE"]
    assert subs.client.sent[1][1] == ["$share/g/s/#", "alerts/+"]
    subs.client.sent.clear()
    subs.resubscribe(session_present=False)
    await asyncio.sleep(0)
    assert [s[0] for s in subs.client.sent] == ["SUBSCRIBE"]


@run
async def test_without_a_connection_nothing_is_sent_and_the_next_connection_subscribes():
    subs, (a, b, c), events = make()
    subs.client.connected = False
    subs.change([a])
    await asyncio.sleep(0)
    assert subs.client.sent == [] and subs.subscribed == {}
    subs.client.connected = True
    subs.resubscribe(session_present=False)
    await asyncio.sleep(0)
    assert subs.client.sent[0][1] == [Entry("$share/g/s/+/data", 1, None)]
