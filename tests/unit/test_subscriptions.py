"""A worker's subscriptions without a broker: entries, identifiers only where filters overlap,
acknowledgements, and what a resumed session drops (routemq.subscriptions)."""
import asyncio

from routemq.router import Router
from routemq.subscriptions import Entry, Subscriptions


async def handler(payload, client):
    pass


class Client:
    """What Subscriptions needs of the MQTT client: connected, subscribe, unsubscribe."""

    def __init__(self):
        self.connected = True
        self.sent = []
        self.mid = 0

    def subscribe(self, entries):
        self.mid += 1
        self.sent.append(("SUBSCRIBE", self.mid, list(entries)))
        return [self.mid]

    def unsubscribe(self, filters):
        self.mid += 1
        self.sent.append(("UNSUBSCRIBE", self.mid, list(filters)))
        return self.mid


def make():
    router = Router()
    a = router.on("s/{id}/data", handler, shared=True, worker_count=2, qos=2)
    b = router.on("s/{rest*}", handler, shared=True)
    c = router.on("alerts/{id}", handler, qos=1)
    events = []
    subs = Subscriptions(Client(), router, "g", on_done=lambda: events.append("done"),
                         on_refused=lambda code: events.append(code))
    return subs, (a, b, c), events


def test_identifiers_only_where_held_filters_overlap_and_qos2_is_received_at_qos1():
    subs, (a, b, c), _ = make()
    subs.change([a, c])
    assert subs.subscribed == {a.key: Entry("$share/g/s/+/data", 1, None),
                               c.key: Entry("alerts/+", 1, None)}
    subs.change([a, b, c])  # a and b overlap now: both need their identifier
    assert subs.subscribed[a.key] == Entry("$share/g/s/+/data", 1, 1)
    assert subs.subscribed[b.key].sub_id == 2


def test_done_only_when_every_suback_is_in_and_a_refusal_is_reported():
    subs, (a, b, c), events = make()
    subs.change([a])
    subs.change([a, c])
    assert events == []
    subs.on_subscribe(1, [1])
    assert events == []  # the second SUBSCRIBE is still unanswered
    subs.on_subscribe(2, [1])
    assert events == ["done"]
    subs.change([a, b, c])
    subs.on_subscribe(3, [0x87])
    assert events == ["done", 0x87]


def test_a_route_let_go_is_unsubscribed_and_its_unsuback_awaited():
    async def main():
        subs, (a, b, c), _ = make()
        subs.change([a, c])
        added, removed = subs.change([a])
        assert added == [] and removed == [c.key]
        kind, mid, filters = subs.client.sent[-1]
        assert (kind, filters) == ("UNSUBSCRIBE", ["alerts/+"])
        event = subs.unsubscribe(["x"])
        subs.on_unsubscribe(mid + 1)
        assert event.is_set() and subs.by_route() == {a.key: "$share/g/s/+/data"}
    asyncio.run(main())


def test_a_resumed_session_drops_the_filters_of_routes_not_held():
    async def main():
        subs, (a, b, c), _ = make()
        subs.held = [a]
        subs.resubscribe(session_present=True)
        assert [s[0] for s in subs.client.sent] == ["SUBSCRIBE", "UNSUBSCRIBE"]
        assert subs.client.sent[1][2] == ["$share/g/s/#", "alerts/+"]
        subs.client.sent.clear()
        subs.resubscribe(session_present=False)
        assert [s[0] for s in subs.client.sent] == ["SUBSCRIBE"]
    asyncio.run(main())


def test_without_a_connection_nothing_is_sent_and_the_next_connection_subscribes():
    subs, (a, b, c), events = make()
    subs.client.connected = False
    subs.change([a])
    assert subs.client.sent == [] and subs.subscribed == {}
    subs.client.connected = True
    subs.resubscribe(session_present=False)
    assert subs.client.sent[0][2] == [Entry("$share/g/s/+/data", 1, None)]
