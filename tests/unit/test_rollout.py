"""routemq.rollout: the rolling restart's steps, as pure decisions (the master acts)."""
from __future__ import annotations

import doctest

import routemq.rollout
from routemq.rollout import STEP_LIMIT, Rollout, Step, View


def test_docstring_example() -> None:
    assert doctest.testmod(routemq.rollout).failed == 0


def test_each_step_waits_for_its_condition() -> None:
    r = Rollout([3])
    assert r.tick(0.0, View(others_present=True)) == [("replan",)]
    assert r.excluded() == {3}
    # Not handed over yet: nothing happens.
    assert r.tick(1.0, View(others_present=True, pid=50)) == []
    assert r.tick(2.0, View(others_present=True, handed_over=True, pid=50)) == [("stop", 3)]
    assert r.tick(3.0, View(others_present=True, old_alive=True, pid=50)) == []
    assert r.tick(4.0, View(others_present=True, old_alive=False)) == [("start", 3)]
    # Its old pid in a stale view is not the new process.
    assert r.tick(5.0, View(others_present=True, pid=50)) == []
    assert r.tick(6.0, View(others_present=True, pid=51)) == [("replan",)]
    assert r.excluded() == set() and r.step is Step.BACK
    assert r.tick(7.0, View(others_present=True, pid=51)) == []
    assert r.tick(8.0, View(others_present=True, pid=51, applied=True)) == []
    assert r.finished and r.done == [3]


def test_a_lone_instance_is_stopped_and_started_without_leaving_the_plan() -> None:
    r = Rollout([1])
    assert r.tick(0.0, View(others_present=False, pid=10)) == [("stop", 1)]
    assert r.excluded() == {1} and r.old_pid == 10


def test_a_step_that_hangs_is_given_up_after_its_limit() -> None:
    r = Rollout([1, 2])
    r.tick(0.0, View(others_present=True))
    assert r.tick(STEP_LIMIT["out"] - 1, View(others_present=True)) == []
    assert r.tick(STEP_LIMIT["out"] + 1, View(others_present=True, pid=7)) == [("stop", 1)]
    assert r.state() == {"instance": 1, "step": "stop", "done": [], "pending": [2]}
