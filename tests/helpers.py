"""Helpers shared by the integration and the system tests: waiting for a condition with a
deadline, publishing numbered messages with mosquitto_pub, counting what the handlers
recorded, and reading `routemq status --json`.

Pure or nearly so: nothing here starts a broker or a worker (tests/integration/broker.py,
workers.py and tests/system/machine.py do). Import as ``from tests.helpers import wait_until``
(the repository root is on sys.path through tests/conftest.py / PYTHONPATH).
"""
from __future__ import annotations

import collections
import json
import subprocess
import time
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence, TypeVar

import pytest

T = TypeVar("T")

# mosquitto_pub -l at QoS > 0 silently stops after 65,535 lines (packet ids run out): stay below.
PUB_CHUNK = 50_000
MOSQUITTO_PUB = "mosquitto_pub"


# -- waiting ------------------------------------------------------------------------------------

Abort = Callable[[], "str | None"]  # a text: stop waiting, the thing waited on cannot come


def wait_until(check: Callable[[], T], timeout: float, what: str, *, interval: float = 0.1,
               fail: bool = True, abort: Abort | None = None,
               explain: Callable[[], str] | None = None) -> T:
    """Poll `check` until it returns something truthy and return that; fail naming `what`
    after `timeout` seconds (with fail=False, return the last falsy value instead).

    `abort()` is asked after each falsy check: a text means waiting is pointless (the process
    under test exited) and fails at once with it. `explain()` adds detail to a failure.

    >>> wait_until(lambda: 42, 1, "the answer")
    42
    """
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        reason = abort() if abort is not None else None
        if reason is None and time.monotonic() <= deadline:
            time.sleep(interval)
            continue
        if not fail and reason is None:
            return last
        extra = f"\n{explain()}" if explain is not None else ""
        if reason is not None:
            pytest.fail(f"{reason} while waiting for {what} (last: {last!r}){extra}")
        pytest.fail(f"timed out after {timeout:g}s waiting for {what} (last: {last!r}){extra}")


def exited(proc: subprocess.Popen | None, name: str, output: Callable[[], str]) -> Abort:
    """An `abort` for wait_until: a text once `proc` has exited, with the tail of its output."""
    def check() -> str | None:
        if proc is None or proc.poll() is None:
            return None
        return f"{name} exited {proc.returncode}:\n{output()[-3000:]}"
    return check


def distinct_values(read: Callable[[], object], after: float) -> Callable[[], int]:
    """A counter of the distinct numbers `read()` returned above `after` so far (a file's
    `updated_at`): for "N more writes" - proof that time passed on the writer's side."""
    seen: set[float] = set()

    def count() -> int:
        value = read()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > after:
            seen.add(value)
        return len(seen)
    return count


# -- publishing numbered messages ---------------------------------------------------------------

def seq_payloads(n: int, start: int = 0, **extra: object) -> list[str]:
    """``n`` one-line JSON payloads ``{"seq": i, ...}``, i from ``start``."""
    return [json.dumps({"seq": i, **extra}, separators=(",", ":")) for i in range(start, start + n)]


def mosquitto_pub_runs(topic: str, lines: Sequence[str], *, host: str, port: int | None = None,
                       qos: int = 1, protocol: str = "5", username: str | None = None,
                       password: str | None = None) -> Iterator[tuple[list[str], bytes]]:
    """(argv, stdin) of each `mosquitto_pub -l` that publishes `lines` on `topic`, one payload
    a line, in chunks below mosquitto_pub's 65,535-line limit. The caller runs them (here,
    in a network namespace, or in a container)."""
    if any("\n" in line for line in lines):
        raise ValueError("mosquitto_pub -l sends one payload per line")
    argv = [MOSQUITTO_PUB, "-h", host, *(["-p", str(port)] if port else []), "-q", str(qos),
            "-t", topic, "-l", "-V", "5" if protocol == "5" else "mqttv311"]
    if username is not None:
        argv += ["-u", username]
    if password is not None:
        argv += ["-P", password]  # test helper only: mosquitto_pub has no password file
    for i in range(0, len(lines), PUB_CHUNK):
        yield argv, ("\n".join(lines[i:i + PUB_CHUNK]) + "\n").encode()


# -- what the handlers recorded -----------------------------------------------------------------

class Record(NamedTuple):
    """One handled message as the test applications record it (tests/integration/apps/
    recorder.py): "<worker> <route> <topic> <seq>"."""

    worker: Any  # the instance number, or a name such as "host1-2"
    route: str
    topic: str
    seq: str


def parse_records(text: str, worker: Callable[[str], Any] = int) -> list[Record]:
    """The records in a recorder log; `worker` turns the first field into the worker's key."""
    rows = []
    for line in text.splitlines():
        w, route, topic, seq = line.split(" ", 3)
        rows.append(Record(worker(w), route, topic, seq))
    return rows


def tally(rows: Iterable[Record]) -> tuple[collections.Counter, collections.Counter]:
    """(messages per worker, times each (topic, seq) was processed)."""
    rows = list(rows)
    return (collections.Counter(r[0] for r in rows),
            collections.Counter((r[2], r[3]) for r in rows))


def handled_seqs(rows: Iterable[Record]) -> set[int]:
    """The numbered messages (payload {"seq": n}) among the records."""
    return {int(r[3]) for r in rows if r[3].isdigit()}


def missing_account(missing: set[int], total: int) -> str:
    """"3 of 400 messages lost, e.g. [...]": the one line an assertion on loss prints."""
    return f"{len(missing)} of {total} messages lost, e.g. {sorted(missing)[:10]}"


def assert_all_handled(rows: Iterable[Record], seqs: Iterable[int]) -> None:
    """Every seq of `seqs` was recorded by some handler (duplicates allowed)."""
    want = set(seqs)
    missing = want - handled_seqs(rows)
    assert not missing, missing_account(missing, len(want))


def lost(rows: list[Record], acked: set[int], topics: dict[int, str]) -> tuple[set[int], str]:
    """(acknowledged seqs no handler recorded, a one-line account for the assertion: lost
    per route, duplicates, an example). Duplicates are allowed (at-least-once)."""
    handled = handled_seqs(rows)
    missing = acked - handled
    per_seq = collections.Counter(int(r[3]) for r in rows if r[3].isdigit())
    duplicates = sum(n - 1 for n in per_seq.values())
    by_route = collections.Counter(topics.get(s, "?").split("/")[0] for s in missing)
    return missing, (f"{len(missing)} of {len(acked)} acknowledged messages lost "
                     f"(by route: {dict(sorted(by_route.items()))}), {duplicates} duplicates, "
                     f"{len(handled - acked)} handled but not acknowledged; "
                     f"e.g. {sorted(missing)[:8]}")


# -- routemq status --json ----------------------------------------------------------------------

STATUS_EXIT = {"healthy": 0, "degraded": 1, "unhealthy": 3}


def status_document(code: int, stdout: str, stderr: str = "") -> dict[str, Any]:
    """The document `routemq status --json` printed, checked against its exit status (0
    healthy, 1 degraded, 3 unhealthy); fails clearly if it printed no JSON."""
    try:
        doc = json.loads(stdout)
    except ValueError:
        pytest.fail(f"status exited {code} and printed no JSON: {stdout!r} {stderr!r}")
    assert code == STATUS_EXIT[doc["health"]["status"]], (code, doc["health"], stderr)
    return doc


def workers_by_instance(doc: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """A status document's worker rows by instance number."""
    return {w["instance"]: w for w in doc["workers"]}


def routes_by_key(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A status document's route rows by route key ("shared:work/{id}")."""
    return {r["route"]: r for r in doc["routes"]}
