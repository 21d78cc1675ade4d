"""The dead-letter spool (routemq.deadletters): durable appends, listing, removal, replay."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from routemq.deadletters import (Spool, SpoolFailed, dead_letter_sink, letter_name, parse_name,
                                 payload_bytes, replay)
from routemq.dispatcher import dead_letter_record
from routemq.environment import state_directory
from routemq.router import Router

ROOT = Path(__file__).resolve().parents[2]


class Delivery:
    def __init__(self, topic, payload, qos=1):
        self.topic, self.payload, self.qos = topic, payload, qos


def record(topic="orders/1", payload=b'{"seq": 1}', route="orders/{id}", max_bytes=None):
    router = Router()
    router.on(route, lambda **kw: None, qos=1)
    return dead_letter_record(router.routes[-1], Delivery(topic, payload), "RuntimeError: boom",
                              max_bytes)


def fill(spool, n, route="orders/{id}"):
    return [spool.append(dict(record(f"orders/{i}", f'{{"seq": {i}}}'.encode()), route=route))
            for i in range(n)]


def test_append_writes_one_complete_file_and_no_temporary(tmp_path):
    spool = Spool(tmp_path / "dead-letters")
    ident = spool.append(record())
    files = os.listdir(spool.directory)
    assert files == [ident + ".json"]
    doc = json.loads((spool.directory / files[0]).read_text())
    assert doc["topic"] == "orders/1" and doc["route"] == "orders/{id}" and doc["qos"] == 1
    assert payload_bytes(doc) == b'{"seq": 1}'


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    spool = Spool(tmp_path / "dl")

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        spool.append(record())
    assert os.listdir(spool.directory) == []


def test_listing_is_oldest_first_and_filters_by_route(tmp_path):
    spool = Spool(tmp_path)
    ids = fill(spool, 5)
    spool.append(dict(record("audit/x"), route="audit/{what}"))
    listed = spool.letters("orders/{id}").letters
    assert [l.id for l in listed] == ids
    assert [l.record["topic"] for l in listed] == [f"orders/{i}" for i in range(5)]
    assert len(spool.letters("orders/*").letters) == 5
    assert [l.route for l in spool.letters("audit/*").letters] == ["audit/{what}"]
    assert len(spool.letters().letters) == 6
    assert spool.counts() == {"orders/{id}": 5, "audit/{what}": 1}


def test_a_damaged_file_is_reported_not_raised(tmp_path):
    spool = Spool(tmp_path)
    fill(spool, 2)
    (tmp_path / "1-1-1~orders%2F%7Bid%7D.json").write_text('{"topic": ')
    (tmp_path / "2-1-1~orders%2F%7Bid%7D.json").write_text('{"topic": "x"}')
    (tmp_path / ".tmp-3-1-1~x.json").write_text("half")  # a writer killed mid-way
    listing = spool.letters()
    assert len(listing.letters) == 2
    assert len(listing.problems) == 2
    assert "unreadable" in listing.problems[0] and "missing qos" in listing.problems[1]


def test_remove(tmp_path):
    spool = Spool(tmp_path)
    first, second = fill(spool, 2)
    assert spool.remove(first) is True
    assert spool.remove(first) is False
    assert [l.id for l in spool.letters().letters] == [second]
    with pytest.raises(ValueError):
        spool.remove("../../etc/passwd")


def test_long_route_names_are_read_from_the_file(tmp_path):
    spool = Spool(tmp_path)
    route = "a/" * 100 + "{x}"
    spool.append(dict(record(), route=route))
    name = os.listdir(tmp_path)[0]
    assert parse_name(name)[1] is None
    assert spool.counts() == {route: 1}
    assert len(spool.letters(route).letters) == 1


def test_names_sort_by_time():
    assert letter_name(9, 1, 0, "r") < letter_name(10, 1, 0, "r")


def test_oversized_payload_is_kept_out_and_not_replayed(tmp_path):
    spool = Spool(tmp_path)
    spool.append(record(payload=b"x" * 100, max_bytes=10))
    published = []
    result = replay(spool, lambda *a: published.append(a))
    assert published == [] and len(result.skipped) == 1
    assert "not kept" in result.skipped[0][1]
    assert len(spool.letters().letters) == 1  # still there, for inspection


def test_replay_publishes_oldest_first_then_removes(tmp_path):
    spool = Spool(tmp_path)
    fill(spool, 4)
    published = []

    def publish(topic, payload, qos, properties):
        # the letter is still in the spool while its copy is on its way
        assert any(l.record["topic"] == topic for l in spool.letters().letters)
        published.append((topic, payload, qos))
    result = replay(spool, publish, limit=3)
    assert [p[0] for p in published] == ["orders/0", "orders/1", "orders/2"]
    assert published[0][1:] == (b'{"seq": 0}', 1)
    assert len(result.replayed) == 3
    assert [l.record["topic"] for l in spool.letters().letters] == ["orders/3"]


def test_dry_run_changes_nothing(tmp_path):
    spool = Spool(tmp_path)
    fill(spool, 2)
    result = replay(spool, lambda *a: pytest.fail("published"), dry_run=True)
    assert len(result.replayed) == 2 and len(spool.letters().letters) == 2


def test_a_publisher_that_fails_stops_the_replay_and_keeps_the_rest(tmp_path):
    spool = Spool(tmp_path)
    fill(spool, 3)
    calls = []

    def publish(topic, payload, qos, properties):
        calls.append(topic)
        if len(calls) == 2:
            raise ConnectionError("gone")
    with pytest.raises(ConnectionError):
        replay(spool, publish)
    assert [l.record["topic"] for l in spool.letters().letters] == ["orders/1", "orders/2"]


KILLED_REPLAY = textwrap.dedent("""
    import os, sys
    from routemq.deadletters import Spool, replay
    spool, out, die_after = Spool(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    def publish(topic, payload, qos, properties):
        with open(out, "a") as f:  # what "the broker" acknowledged
            f.write(topic + "\\n"); f.flush(); os.fsync(f.fileno())
        if sum(1 for _ in open(out)) == die_after:
            os._exit(9)  # killed between the broker's ack and the removal
    replay(spool, publish)
""")


@pytest.mark.parametrize("die_after", [1, 3, 5])
def test_a_replay_killed_mid_way_loses_none_and_repeats_at_most_one(tmp_path, die_after):
    spool = Spool(tmp_path / "spool")
    fill(spool, 5)
    out = tmp_path / "published"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    killed = subprocess.run([sys.executable, "-c", KILLED_REPLAY, str(spool.directory),
                             str(out), str(die_after)], env=env, timeout=60)
    assert killed.returncode == 9
    again = subprocess.run([sys.executable, "-c", KILLED_REPLAY, str(spool.directory),
                            str(out), "0"], env=env, timeout=60)
    assert again.returncode == 0
    published = out.read_text().split()
    want = [f"orders/{i}" for i in range(5)]
    assert set(published) == set(want)  # none lost
    assert len(published) - len(want) <= 1  # at most the one in flight twice
    assert spool.letters().letters == []


class FakeClient:
    def __init__(self, spool):
        self.spool, self.published = spool, []

    def publish(self, topic, payload, qos=0):
        # the letter is on disk before the copy goes out
        assert self.spool.letters().letters
        self.published.append((topic, json.loads(payload), qos))


def test_sink_spools_then_publishes_the_copy(tmp_path):
    spool = Spool(tmp_path)
    client = FakeClient(spool)
    sink = dead_letter_sink(spool, client, "dead/letters", "w-1")
    sink(record())
    (letter,) = spool.letters().letters
    assert letter.record["worker"] == "w-1" and letter.record["attempts"] == 1
    assert client.published[0][0] == "dead/letters" and client.published[0][2] == 1
    assert client.published[0][1]["topic"] == "orders/1"


def test_sink_without_topic_only_spools(tmp_path):
    spool = Spool(tmp_path)
    client = FakeClient(spool)
    dead_letter_sink(spool, client, "", "w-1")(record())
    assert client.published == [] and len(spool.letters().letters) == 1


def test_sink_that_cannot_spool_says_so_before_the_ack(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    spool = Spool(blocker / "dead-letters")  # under a file: mkdir fails
    heard = []
    sink = dead_letter_sink(spool, FakeClient(spool), "dead", "w-1",
                            on_spool_error=heard.append)
    with pytest.raises(SpoolFailed):
        sink(record())
    assert len(heard) == 1 and isinstance(heard[0], OSError)


def test_state_dir_rule():
    assert state_directory("/x", {"STATE_DIRECTORY": "/y"}, 0, "root") == Path("/x")
    assert state_directory("", {"STATE_DIRECTORY": "/y:/z"}, 998, "routemq") == Path("/y")
    assert state_directory("", {}, 0, "root") == Path("/var/lib/routemq")
    assert state_directory("", {"HOME": "/nonexistent"}, 998, "routemq") == \
        Path("/var/lib/routemq")
    assert state_directory("", {"HOME": "/home/ann"}, 1000, "ann") == \
        Path("/home/ann/.local/state/routemq")
