"""The dispatcher with the poison quarantine (routemq.poison) on real files, without a broker:
a message in flight at `threshold` worker deaths is spooled and acknowledged without running;
one in flight at fewer deaths runs alone among suspects and is forgotten once it ends."""
import asyncio
import time
from dataclasses import dataclass

import routemq.dispatcher
from routemq.dispatcher import Dispatcher
from routemq.poison import Quarantine, message_key
from routemq.router import Router


@dataclass
class D:
    topic: str
    payload: bytes = b"{}"
    qos: int = 1
    mid: int = 0
    subscription_ids: tuple = ()
    dup: bool = False


def died_holding(directory, name, *messages):
    """The journal a worker process leaves when it dies handling `messages` (no one holds
    its lock: the harvest counts one death for each)."""
    directory.mkdir(parents=True, exist_ok=True)
    data = b"".join(message_key(t, p) for t, p in messages) + bytes(16 * 4)
    (directory / f"{name}.slots").write_bytes(data)


def make(router, quarantine, **kw):
    acked, dead = [], []
    d = Dispatcher(router, client="C", ack=acked.append, dead_letter=dead.append,
                   quarantine=quarantine, **kw)
    d.hold(router.routes)
    return d, acked, dead


async def until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


def test_a_message_in_flight_at_two_deaths_is_spooled_and_acked_without_running(tmp_path):
    q = Quarantine(tmp_path, owner="w", threshold=2)
    died_holding(tmp_path, "w1-100", ("p/13", b'{"seq": 13}'), ("p/1", b'{"seq": 1}'))
    died_holding(tmp_path, "w1-101", ("p/13", b'{"seq": 13}'))
    q.open()
    ran = []

    async def handler(id, payload, client):
        ran.append(id)

    async def main():
        router = Router()
        router.on("p/{id}", handler, shared=True, qos=1)
        d, acked, dead = make(router, q)
        d.submit(D("p/13", b'{"seq": 13}', mid=1))
        d.submit(D("p/1", b'{"seq": 1}', mid=2))  # one death: runs, then is forgotten
        assert await d.drain(5)
        assert ran == ["1"]
        assert [x.mid for x in acked] == [1, 2]
        assert len(dead) == 1 and dead[0]["topic"] == "p/13" and dead[0]["attempts"] == 2
        assert dead[0]["error"].startswith("poison: its worker process died 2 times")
        assert q.deaths("p/13", b'{"seq": 13}') == 0 and q.deaths("p/1", b'{"seq": 1}') == 0
        assert d.metrics.rejected == 1
    try:
        asyncio.run(main())
    finally:
        q.close()


def test_suspects_run_one_at_a_time_while_other_messages_run_beside(tmp_path):
    q = Quarantine(tmp_path, owner="w", threshold=2)
    suspects = [(f"s/{i}", b"x") for i in range(4)]
    died_holding(tmp_path, "w1-100", *suspects)
    q.open()
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
        d, acked, dead = make(router, q, max_inflight=16)
        for i, (topic, payload) in enumerate(suspects):
            d.submit(D(topic, payload, mid=i, dup=True))
        for i in range(6):
            d.submit(D(f"n/{i}", mid=100 + i))
        assert await d.drain(5)
        assert peak_suspects[0] == 1  # never two suspects at once
        assert max(others) >= 6  # the others ran together, beside a suspect
        assert len(acked) == 10 and dead == []
        assert all(q.deaths(t, p) == 0 for t, p in suspects)  # each ended: forgotten
    try:
        asyncio.run(main())
    finally:
        q.close()


def test_qos0_is_not_journaled_and_a_dead_worker_holding_it_counts_nothing(tmp_path):
    q = Quarantine(tmp_path, owner="w", threshold=2)
    q.open()
    seen_slots = []

    async def handler(payload, client):
        # what this process's journal holds while the handler runs
        seen_slots.append(sum(1 for i in range(0, len(q._map), 16)
                              if q._map[i:i + 16] != bytes(16)))

    async def main():
        router = Router()
        router.on("a", handler, qos=1)
        router.on("b", handler, qos=0)
        d, acked, _ = make(router, q)
        d.submit(D("a", mid=1))
        d.submit(D("b", qos=0))
        assert await d.drain(5)
        assert sorted(seen_slots) == [0, 1]  # QoS 1 in the journal while it ran, QoS 0 not
        assert q._map[:16] == bytes(16)  # cleared once it ended
    try:
        asyncio.run(main())
    finally:
        q.close()


def test_a_redelivery_makes_the_dispatcher_look_for_dead_workers(tmp_path, monkeypatch):
    monkeypatch.setattr(routemq.dispatcher, "DUP_HARVEST_INTERVAL", 0.0)
    q = Quarantine(tmp_path, owner="w", threshold=1)
    q.open()
    ran = []

    async def handler(payload, client):
        ran.append(1)

    async def main():
        router = Router()
        router.on("k", handler, qos=1)
        d, acked, dead = make(router, q)
        died_holding(tmp_path, "w2-200", ("k", b"{}"))  # another worker died meanwhile
        d.submit(D("k", mid=1, dup=True))  # DUP: harvest first
        assert await d.drain(5)
        assert ran == [] and len(dead) == 1 and [x.mid for x in acked] == [1]
    try:
        asyncio.run(main())
    finally:
        q.close()
