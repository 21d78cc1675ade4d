"""The shared test helpers' own logic (tests/helpers.py): waiting, records, status checks."""
import itertools
import time

import pytest

from tests.helpers import (assert_all_handled, distinct_values, mosquitto_pub_runs,
                           parse_records, status_document, tally, wait_until)


def test_wait_until_returns_the_first_truthy_value():
    values = iter([0, None, "", 7, 8])
    assert wait_until(lambda: next(values), 5, "seven", interval=0) == 7


def test_wait_until_fails_naming_what_and_the_last_value():
    began = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match=r"waiting for the answer \(last: 0\)\nwhy"):
        wait_until(lambda: 0, 0.2, "the answer", interval=0.01, explain=lambda: "why")
    assert time.monotonic() - began >= 0.2


def test_wait_until_without_fail_returns_the_last_falsy_value():
    assert wait_until(lambda: [], 0.05, "nothing", interval=0.01, fail=False) == []


def test_wait_until_stops_at_once_when_told_it_cannot_come():
    looks = itertools.count(1)
    with pytest.raises(pytest.fail.Exception, match="worker exited 1 while waiting for x"):
        wait_until(lambda: next(looks) > 100, 60, "x", interval=0,
                   abort=lambda: "worker exited 1")


def test_distinct_values_counts_new_writes_only():
    reads = iter([5.0, 11.0, 11.0, True, None, 12.0])
    count = distinct_values(lambda: next(reads), after=10.0)
    assert [count() for _ in range(6)] == [0, 1, 1, 1, 1, 2]


def test_mosquitto_pub_runs_chunks_below_the_packet_id_limit():
    runs = list(mosquitto_pub_runs("t/1", ["a"] * 120_000, host="127.0.0.1", port=1883))
    assert [stdin.count(b"\n") for _, stdin in runs] == [50_000, 50_000, 20_000]
    argv = runs[0][0]
    assert argv[:5] == ["mosquitto_pub", "-h", "127.0.0.1", "-p", "1883"] and "-l" in argv
    with pytest.raises(ValueError, match="one payload per line"):
        list(mosquitto_pub_runs("t", ["two\nlines"], host="h"))


def test_records_tally_and_loss():
    rows = parse_records("1 work work/1 0\n2 work work/2 1\n2 work work/1 0\n1 check c bytes\n")
    per_worker, per_message = tally(rows)
    assert per_worker == {1: 2, 2: 2} and per_message[("work/1", "0")] == 2
    assert rows[0].worker == 1 and rows[3].seq == "bytes"
    assert_all_handled(rows, [0, 1])
    with pytest.raises(AssertionError, match=r"1 of 3 messages lost, e.g. \[2\]"):
        assert_all_handled(rows, [0, 1, 2])


def test_status_document_checks_the_exit_status_against_the_health():
    doc = '{"health": {"status": "degraded"}}'
    assert status_document(1, doc)["health"]["status"] == "degraded"
    with pytest.raises(AssertionError):
        status_document(0, doc)
    with pytest.raises(pytest.fail.Exception, match="printed no JSON"):
        status_document(2, "config error: mqtt_port", "")
