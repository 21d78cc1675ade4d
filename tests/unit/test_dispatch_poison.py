"""The dispatcher with the poison quarantine (routemq.poison) on real files, without a broker:
a message in flight at `threshold` worker deaths is spooled and acknowledged without running;
one in flight at fewer deaths runs alone among suspects and is forgotten once it ends."""
import asyncio

import pytest

import routemq.dispatcher
from routemq.poison import Quarantine, message_key
from routemq.router import Router
from tests.dispatching import D, make


@pytest.fixture
def opened(tmp_path):
    """open(threshold): a Quarantine in tmp_path, opened now (it harvests the journals of
    dead workers already there) and closed after the test."""
    made = []

    def open_(threshold=2):
        q = Quarantine(tmp_path, owner="w", threshold=threshold)
        q.open()
        made.append(q)
        return q
    yield open_
    for q in made:
        q.close()


def died_holding(directory, name, *messages):
    """The journal a worker process leaves when it dies handling `messages` (no one holds
    its lock: the harvest counts one death for each)."""
    directory.mkdir(parents=True, exist_ok=True)
    data = b"".join(message_key(t, p) for t, p in messages) + bytes(16 * 4)
    (directory / f"{name}.slots").write_bytes(data)


def test_a_message_in_flight_at_two_deaths_is_spooled_and_acked_without_running(
        opened, tmp_path):
    died_holding(tmp_path, "w1-100", ("p/13", b'{"seq": 13}'), ("p/1", b'{"seq": 1}'))
    died_holding(tmp_path, "w1-101", ("p/13", b'{"seq": 13}'))
    q = opened(2)
    ran = []

    async def handler(id, payload, client):
        ran.append(id)

    async def main():
        router = Router()
        router.on("p/{id}", handler, shared=True, qos=1)
        d, acked, dead = make(router, quarantine=q)
        d.submit(D("p/13", b'{"seq": 13}', mid=1))
        d.submit(D("p/1", b'{"seq": 1}', mid=2))  # one death: runs, then is forgotten
        assert await d.drain(5)
        assert ran == ["1"]
        assert [x.mid for x in acked] == [1, 2]
        assert len(dead) == 1 and dead[0]["topic"] == "p/13" and dead[0]["attempts"] == 2
        assert dead[0]["error"].startswith("poison: its worker process died 2 times")
        assert q.deaths("p/13", b'{"seq": 13}') == 0 and q.deaths("p/1", b'{"seq": 1}') == 0
        assert d.metrics.rejected == 1
    asyncio.run(main())


def test_suspects_run_one_at_a_time_while_other_messages_run_beside(opened, tmp_path):
    suspects = [(f"s/{i}", b"x") for i in range(4)]
    died_holding(tmp_path, "w1-100", *suspects)
    q = opened(2)
    running, peak_suspects, others = set(), [0], []

    async def handler(id, payload, client):
        running.add(id)
        peak_suspects[0] = max(peak_suspects[0], sum(1 for r in running if r.startswith("s")))
        if id.startswith("n"):
            others.append(len(running))
        await asyncio.sleep(0.02)
        running.discard(id)

    async def main():
        router = Router()
        router.on("s/{id}", lambda id, payload, client: handler(f"s{id}", payload, client),
                  shared=True, qos=1)
        router.on("n/{id}", lambda id, payload, client: handler(f"n{id}", payload, client),
                  shared=True, qos=1)
        d, acked, dead = make(router, quarantine=q, max_inflight=16)
        for i, (topic, payload) in enumerate(suspects):
            d.submit(D(topic, payload, mid=i, dup=True))
        for i in range(6):
            d.submit(D(f"n/{i}", mid=100 + i))
        assert await d.drain(5)
        assert peak_suspects[0] == 1  # never two suspects at once
        assert max(others) >= 6  # the others ran together, beside a suspect
        assert len(acked) == 10 and dead == []
        assert all(q.deaths(t, p) == 0 for t, p in suspects)  # each ended: forgotten
    asyncio.run(main())


def test_only_qos1_is_journaled_and_only_while_its_handler_runs(opened):
    q = opened(2)
    seen_slots = []

    async def handler(payload, client):
        # what this process's journal holds while the handler runs
        seen_slots.append(sum(1 for i in range(0, len(q._map), 16)
                              if q._map[i:i + 16] != bytes(16)))

    async def main():
        router = Router()
        router.on("a", handler, qos=1)
        router.on("b", handler, qos=0)
        d, acked, _ = make(router, quarantine=q)
        d.submit(D("a", mid=1))
        d.submit(D("b", qos=0))
        assert await d.drain(5)
        assert sorted(seen_slots) == [0, 1]  # QoS 1 in the journal while it ran, QoS 0 not
        assert q._map[:16] == bytes(16)  # cleared once it ended
    asyncio.run(main())


def test_a_redelivery_makes_the_dispatcher_look_for_dead_workers(opened, tmp_path, monkeypatch):
    monkeypatch.setattr(routemq.dispatcher, "DUP_HARVEST_INTERVAL", 0.0)
    q = opened(1)
    ran = []

    async def handler(payload, client):
        ran.append(1)

    async def main():
        router = Router()
        router.on("k", handler, qos=1)
        d, acked, dead = make(router, quarantine=q)
        died_holding(tmp_path, "w2-200", ("k", b"{}"))  # another worker died meanwhile
        d.submit(D("k", mid=1, dup=True))  # DUP: harvest first
        assert await d.drain(5)
        assert ran == [] and len(dead) == 1 and [x.mid for x in acked] == [1]
    asyncio.run(main())
