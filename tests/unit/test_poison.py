"""Poison detection (routemq.poison): journals of real processes that die in different ways,
the host's tally, harvesting by concurrent processes, and the rules around them."""
import doctest
import json
import logging
import os
import selectors
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import routemq.poison as poison
from routemq.poison import Quarantine, message_key
from tests.processes import alive

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
WAIT = 30.0  # seconds a child gets to start or exit on a busy machine
DAY = 24 * 3600.0

# A worker process: opens its quarantine, takes a slot for one message, says so, then leaves
# as `mode` says. "ended" and "closed" finish their message first; "closed" exits cleanly.
CHILD = textwrap.dedent("""
    import os, sys
    from routemq.poison import Quarantine
    directory, mode, topic, payload = sys.argv[1:5]
    q = Quarantine(directory, owner="child")
    q.open()
    slot = q.begin(topic, payload.encode())
    if mode == "ended":
        q.end(slot)
    if mode == "forks":  # a grandchild inherits the journal's locked descriptor
        ran, said = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(said, b"x")  # the at-fork hooks have run (else it still holds the lock)
            sys.stdin.readline()
            os._exit(0)
        os.read(ran, 1)
        slot = f"{slot} {pid}"
    print("ready", slot, flush=True)
    if mode == "closed":
        q.close()
        sys.exit(0)
    if mode in ("waits", "killed"):
        sys.stdin.readline()
    os._exit(1)
""")

# A harvester process: harvests each time it reads a line, and prints how many journals.
HARVESTER = textwrap.dedent("""
    import sys
    from routemq.poison import Quarantine
    q = Quarantine(sys.argv[1], owner=sys.argv[2])
    q.open()
    print("ready", flush=True)
    for line in sys.stdin:
        print(q.harvest(), flush=True)
""")


def spawn(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], env=ENV, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def read_line(proc: subprocess.Popen, what: str) -> str:
    """The child's next line of output, waiting at most WAIT seconds for it."""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(WAIT):
            proc.kill()
            pytest.fail(f"no {what} from the child within {WAIT:g}s")
    line = proc.stdout.readline()
    if not line:
        proc.wait(WAIT)
        pytest.fail(f"the child exited {proc.returncode} before {what}:\n{proc.stderr.read()}")
    return line.strip()


def send(proc: subprocess.Popen, line: str = "") -> None:
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def start_child(directory: Path, mode: str, topic: str = "orders/1",
                payload: str = "boom") -> tuple[subprocess.Popen, list[int]]:
    """A child in `mode` holding (or having held) a slot: (process, the numbers it printed)."""
    proc = spawn(CHILD, str(directory), mode, topic, payload)
    words = read_line(proc, "ready line").split()
    assert words[0] == "ready", words
    return proc, [int(w) for w in words[1:]]


def child_run(directory: Path, mode: str, **message: str) -> int:
    """Run a child in `mode` to its end; its exit status."""
    proc, (slot, *_) = start_child(directory, mode, **message)
    assert slot == 0
    if mode == "killed":
        proc.kill()
    elif mode == "waits":
        send(proc)
    proc.wait(WAIT)
    proc.stdout.close(), proc.stdin.close(), proc.stderr.close()
    return proc.returncode


def journals(directory: Path) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.endswith(".slots"))


def dead_journal(directory: Path, name: str, *messages: tuple[str, bytes]) -> None:
    """A journal as a process that died holding `messages` leaves it: no one locks it."""
    data = b"".join(message_key(t, p) for t, p in messages) + bytes(16 * 4)
    (directory / f"{name}.slots").write_bytes(data)


def write_tally(directory: Path, records: dict) -> None:
    (directory / "suspects.json").write_text(json.dumps(records))


@pytest.fixture
def q(tmp_path):
    with Quarantine(tmp_path, owner="test") as quarantine:
        yield quarantine


# --- deaths of real processes ------------------------------------------------------------------

def test_a_message_in_hand_when_its_process_exits_twice_is_poison(q, tmp_path):
    assert child_run(tmp_path, "exits") == 1
    assert q.harvest() == 1
    assert q.deaths("orders/1", b"boom") == 1
    assert q.poisonous("orders/1", b"boom") is None
    assert journals(tmp_path) == [f"test-{os.getpid()}.slots"]  # the dead one was removed

    assert child_run(tmp_path, "exits") == 1
    assert q.harvest() == 1
    assert q.deaths("orders/1", b"boom") == 2
    assert q.poisonous("orders/1", b"boom") == 2
    assert q.deaths("orders/1", b"other") == 0
    assert q.poisonous("orders/1", b"other") is None
    doc = json.loads((tmp_path / "suspects.json").read_text())
    entry = doc[message_key("orders/1", b"boom").hex()]
    assert entry["deaths"] == 2 and entry["first"] <= entry["last"] <= time.time()


def test_a_process_killed_with_sigkill_is_counted(q, tmp_path):
    assert child_run(tmp_path, "killed") == -9
    assert q.harvest() == 1
    assert q.deaths("orders/1", b"boom") == 1


def test_a_message_ended_before_the_death_counts_nothing(q, tmp_path):
    assert child_run(tmp_path, "ended") == 1
    assert q.harvest() == 1  # its journal, empty, is removed all the same
    assert q.deaths("orders/1", b"boom") == 0
    assert not (tmp_path / "suspects.json").exists()


def test_a_clean_close_leaves_no_journal_and_is_no_death(q, tmp_path):
    assert child_run(tmp_path, "closed") == 0  # closed with its message still in hand
    assert journals(tmp_path) == [f"test-{os.getpid()}.slots"]
    assert q.harvest() == 0
    assert q.deaths("orders/1", b"boom") == 0


def test_the_journal_of_a_live_process_is_never_harvested(q, tmp_path):
    proc, _ = start_child(tmp_path, "waits")
    try:
        for _ in range(3):
            assert q.harvest() == 0
        assert len(journals(tmp_path)) == 2
        assert q.deaths("orders/1", b"boom") == 0
    finally:
        send(proc)  # now it dies holding its message
        proc.wait(WAIT)
    assert q.harvest() == 1
    assert q.deaths("orders/1", b"boom") == 1


def test_a_forked_child_does_not_keep_a_dead_parents_journal_alive(q, tmp_path):
    proc, (slot, grandchild) = start_child(tmp_path, "forks")
    try:
        proc.wait(WAIT)
        assert alive(grandchild)
        assert q.harvest() == 1
        assert q.deaths("orders/1", b"boom") == 1
    finally:
        send(proc)  # the grandchild shares the pipe: it exits
    deadline = time.monotonic() + WAIT
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_message_key_is_the_same_in_another_process():
    proc = spawn("from routemq.poison import message_key; "
                 "print(message_key('sensors/é/1', b'\\x00\\xff{}').hex())")
    assert read_line(proc, "key") == message_key("sensors/é/1", b"\x00\xff{}").hex()
    proc.wait(WAIT)


# --- concurrent harvesters ---------------------------------------------------------------------

def test_two_processes_harvesting_the_same_dead_journals_count_each_death_once(q, tmp_path):
    harvesters = [spawn(HARVESTER, str(tmp_path), f"harvester{i}") for i in range(2)]
    try:
        for proc in harvesters:
            assert read_line(proc, "ready line") == "ready"
        per_round = 12
        for round_ in range(25):
            for j in range(per_round):
                dead_journal(tmp_path, f"dead-{round_}-{j}", ("race", str(round_).encode()),
                             ("own", f"{round_}-{j}".encode()))
            for proc in harvesters:
                send(proc)  # both start at once
            counts = [int(read_line(proc, "harvest count")) for proc in harvesters]
            assert sum(counts) == per_round, counts
            assert q.harvest() == 0
            assert q.deaths("race", str(round_).encode()) == per_round
            assert {q.deaths("own", f"{round_}-{j}".encode()) for j in range(per_round)} == {1}
        assert len(journals(tmp_path)) == 3
    finally:
        for proc in harvesters:
            proc.stdin.close()
            proc.wait(WAIT)


def test_a_journal_harvested_under_a_harvesters_feet_is_not_counted_again(tmp_path,
                                                                          monkeypatch):
    # The race the loop above rarely hits, forced: b opens x-1; a harvests it; a new dead
    # process's journal takes the name x-1; only then does b lock what it opened.
    with Quarantine(tmp_path, owner="a") as a, Quarantine(tmp_path, owner="b") as b:
        dead_journal(tmp_path, "x-1", ("t", b"old"))
        real_open, fired = os.open, []

        def open_then_meanwhile(path, flags, *args):
            fd = real_open(path, flags, *args)
            if not fired and Path(path).name == "x-1.slots":
                fired.append(path)
                assert a.harvest() == 1
                dead_journal(tmp_path, "x-1", ("t", b"new"))
            return fd
        monkeypatch.setattr(os, "open", open_then_meanwhile)
        assert b.harvest() == 0
        monkeypatch.undo()
        assert fired
        assert b.harvest() == 1
        assert b.deaths("t", b"old") == 1 and b.deaths("t", b"new") == 1


def test_a_harvest_by_another_process_is_seen_at_the_next_harvest(tmp_path):
    with Quarantine(tmp_path, owner="a") as a, Quarantine(tmp_path, owner="b") as b:
        dead_journal(tmp_path, "x-1", ("t", b"p"))
        assert b.harvest() == 1
        assert a.deaths("t", b"p") == 0  # not yet looked
        assert a.harvest() == 0
        assert a.deaths("t", b"p") == 1
        a.forget("t", b"p")
        assert b.deaths("t", b"p") == 1
        b.harvest()
        assert b.deaths("t", b"p") == 0


def test_harvest_waits_min_interval_between_looks(q, tmp_path):
    dead_journal(tmp_path, "x-1", ("t", b"p"))
    q.harvest()
    dead_journal(tmp_path, "x-2", ("t", b"p"))
    assert q.harvest(min_interval=3600) == 0
    assert q.deaths("t", b"p") == 1
    assert q.harvest() == 1
    assert q.deaths("t", b"p") == 2


def test_a_dead_journal_with_our_own_name_is_harvested_not_replaced(tmp_path):
    # A restarted container's worker often gets the pid of the one that died.
    dead_journal(tmp_path, f"w-{os.getpid()}", ("t", b"p"))
    with Quarantine(tmp_path, owner="w") as q:
        assert q.deaths("t", b"p") == 1
        assert journals(tmp_path) == [f"w-{os.getpid()}.slots"]
        slot = q.begin("t", b"q")
        data = (tmp_path / f"w-{os.getpid()}.slots").read_bytes()
        assert data[slot * 16:slot * 16 + 16] == message_key("t", b"q")
    assert journals(tmp_path) == []
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_strays_named_like_journals_are_skipped_not_fatal(q, tmp_path, caplog):
    os.mkfifo(tmp_path / "fifo.slots")  # opening it for reading must not wait for a writer
    dead_journal(tmp_path, "elsewhere", ("t", b"link"))
    os.rename(tmp_path / "elsewhere.slots", tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", tmp_path / "link.slots")
    dead_journal(tmp_path, "x-1", ("t", b"p"))
    with caplog.at_level(logging.WARNING, logger="routemq.poison"):
        assert q.harvest() == 1
    assert q.deaths("t", b"p") == 1 and q.deaths("t", b"link") == 0
    assert any("link.slots" in r.getMessage() for r in caplog.records)


# --- the tally ---------------------------------------------------------------------------------

def test_forget_removes_the_message_from_the_tally(q, tmp_path):
    dead_journal(tmp_path, "x-1", ("t", b"p"), ("t", b"other"))
    q.harvest()
    q.forget("t", b"p")
    assert q.deaths("t", b"p") == 0 and q.deaths("t", b"other") == 1
    assert list(json.loads((tmp_path / "suspects.json").read_text())) == [
        message_key("t", b"other").hex()]
    with Quarantine(tmp_path, owner="fresh") as fresh:
        assert fresh.deaths("t", b"p") == 0 and fresh.deaths("t", b"other") == 1


def test_forget_of_an_unknown_message_writes_nothing(q, tmp_path):
    dead_journal(tmp_path, "x-1", ("t", b"p"))
    q.harvest()
    before = os.stat(tmp_path / "suspects.json")
    q.forget("t", b"never died")
    after = os.stat(tmp_path / "suspects.json")
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_entries_older_than_seven_days_are_dropped(q, tmp_path):
    now = time.time()
    old, recent = message_key("t", b"old"), message_key("t", b"recent")
    write_tally(tmp_path, {old.hex(): {"deaths": 5, "first": now - 9 * DAY, "last": now - 8 * DAY},
                           recent.hex(): {"deaths": 1, "first": now - 6 * DAY,
                                          "last": now - 6 * DAY}})
    q.harvest()
    assert q.deaths("t", b"old") == 0 and q.deaths("t", b"recent") == 1
    dead_journal(tmp_path, "x-1", ("t", b"new"))
    q.harvest()
    assert sorted(json.loads((tmp_path / "suspects.json").read_text())) == sorted(
        [recent.hex(), message_key("t", b"new").hex()])


@pytest.mark.parametrize("damage", [b'{"deaths": ', b"[1, 2]", b"\xff\xfe",
                                    b'{"00": {"deaths": 1, "first": 0, "last": 0}}'])
def test_a_damaged_tally_is_empty_with_one_warning_and_deaths_still_count(q, tmp_path, caplog,
                                                                          damage):
    (tmp_path / "suspects.json").write_bytes(damage)
    with caplog.at_level(logging.WARNING, logger="routemq.poison"):
        assert q.harvest() == 0
        assert q.harvest() == 0
        assert q.deaths("t", b"p") == 0
        warnings = [r for r in caplog.records if r.name == "routemq.poison"]
        assert len(warnings) == 1 and "damaged" in warnings[0].getMessage()
        dead_journal(tmp_path, "x-1", ("t", b"p"))
        assert q.harvest() == 1
    assert q.deaths("t", b"p") == 1
    assert list(json.loads((tmp_path / "suspects.json").read_text())) == [
        message_key("t", b"p").hex()]


def test_threshold_zero_turns_quarantine_off(tmp_path):
    for i in range(3):
        dead_journal(tmp_path, f"x-{i}", ("t", b"p"))
    with Quarantine(tmp_path, owner="off", threshold=0) as q:
        assert q.deaths("t", b"p") == 3
        assert q.poisonous("t", b"p") is None
    with Quarantine(tmp_path, owner="on", threshold=3) as q:
        assert q.poisonous("t", b"p") == 3


def test_deaths_with_no_suspect_does_not_hash(q, monkeypatch):
    def no_hashing(*args):
        raise AssertionError("hashed")
    monkeypatch.setattr(poison, "message_key", no_hashing)
    assert q.deaths("t", b"p") == 0 and q.poisonous("t", b"p") is None
    q.forget("t", b"p")


# --- the journal -------------------------------------------------------------------------------

def test_begin_writes_the_key_into_the_file_and_end_clears_it(q, tmp_path):
    path = tmp_path / f"test-{os.getpid()}.slots"
    assert path.stat().st_size == 256 * 16
    first, second = q.begin("a", b"1"), q.begin("b", b"2")
    data = path.read_bytes()
    assert data[first * 16:first * 16 + 16] == message_key("a", b"1")
    assert data[second * 16:second * 16 + 16] == message_key("b", b"2")
    q.end(first)
    q.end(second)
    assert path.read_bytes() == bytes(256 * 16)


def test_a_full_journal_returns_minus_one_and_records_nothing(tmp_path):
    with Quarantine(tmp_path, owner="small", capacity=2) as q:
        slots = [q.begin("t", b"1"), q.begin("t", b"2"), q.begin("t", b"3")]
        assert sorted(slots) == [-1, 0, 1]
        q.end(-1)
        data = (tmp_path / f"small-{os.getpid()}.slots").read_bytes()
        assert poison.slot_keys(data) == {message_key("t", b"1"), message_key("t", b"2")}
        q.end(slots[0])
        assert q.begin("t", b"4") == slots[0]


def test_close_removes_the_journal_and_later_calls_are_harmless(tmp_path):
    q = Quarantine(tmp_path, owner="c")
    assert q.begin("t", b"p") == -1  # not open yet
    q.open()
    slot = q.begin("t", b"p")
    q.close()
    assert journals(tmp_path) == []
    q.end(slot)
    assert q.begin("t", b"p") == -1
    q.close()


def test_a_directory_that_cannot_be_used_raises_oserror_naming_it(tmp_path):
    (tmp_path / "file").write_text("")
    q = Quarantine(tmp_path / "file" / "in-progress", owner="w")
    with pytest.raises(OSError, match="in-progress"):
        q.open()
    assert q.begin("t", b"p") == -1


@pytest.mark.skipif(os.geteuid() == 0, reason="permissions do not bite root")
def test_an_unwritable_directory_raises_oserror(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(OSError, match=str(tmp_path)):
            Quarantine(tmp_path / "in-progress", owner="w").open()
    finally:
        tmp_path.chmod(0o700)


def test_the_directory_is_created_with_mode_0750(tmp_path):
    with Quarantine(tmp_path / "state" / "in-progress", owner="w"):
        assert (tmp_path / "state" / "in-progress").stat().st_mode & 0o777 == 0o750 & ~_umask()


@pytest.mark.parametrize("kwargs", [{"owner": ""}, {"owner": "a/b"}, {"owner": ".hidden"},
                                    {"owner": "w", "threshold": -1},
                                    {"owner": "w", "capacity": 0}])
def test_bad_arguments_are_refused(tmp_path, kwargs):
    with pytest.raises(ValueError):
        Quarantine(tmp_path, **kwargs)


# --- pure parts --------------------------------------------------------------------------------

def test_message_key_separates_topic_from_payload():
    keys = {message_key("a", b"b/c"), message_key("a/b", b"c"), message_key("a/b/c", b""),
            message_key("a", b"\x00b/c")}
    assert len(keys) == 4
    assert all(len(k) == 16 for k in keys)
    assert message_key("t", b"p") == message_key("t", bytearray(b"p"))


def test_doctests():
    assert doctest.testmod(poison).failed == 0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
