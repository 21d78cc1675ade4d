"""A stopping worker's wait for the master's hand-over (routemq.handover), on a real runtime
directory with master.json and plan.json written by the test."""
import asyncio
import json
import os
import time

from routemq.handover import wait_for_handover
from routemq.plan import Plan
from routemq.runtime import RuntimePaths


def master_json(paths):
    with open(paths.master, "w") as f:  # a live master: our own pid, a fresh date
        json.dump({"pid": os.getpid(), "updated_at": time.time()}, f)


def plan(paths, assignments):
    with open(paths.plan, "w") as f:
        f.write(Plan(assignments).to_json())
    os.chmod(paths.plan, 0o644)


def test_without_a_master_a_worker_is_standalone(tmp_path):
    ticks = []
    assert asyncio.run(wait_for_handover(RuntimePaths(str(tmp_path)), 1,
                                         lambda: ticks.append(1))) == (True, None)
    assert ticks == []


def test_it_returns_the_plan_that_no_longer_lists_the_instance(tmp_path):
    paths = RuntimePaths(str(tmp_path))
    master_json(paths)
    plan(paths, {1: ("a",), 2: ("a",)})
    ticks = []

    def tick():  # the master moves instance 1's routes after the worker's third look
        ticks.append(1)
        master_json(paths)
        if len(ticks) == 3:
            plan(paths, {2: ("a",)})

    standalone, moved = asyncio.run(wait_for_handover(paths, 1, tick, wait=10))
    assert not standalone and moved.assignments == {2: ("a",)} and len(ticks) >= 3


def test_a_master_that_does_not_move_it_in_time_leaves_it_in_place(tmp_path):
    paths = RuntimePaths(str(tmp_path))
    master_json(paths)
    plan(paths, {1: ("a",)})
    assert asyncio.run(wait_for_handover(paths, 1, lambda: master_json(paths), wait=0.5)) == \
        (False, None)


def test_a_master_that_stops_first_makes_it_standalone(tmp_path):
    paths = RuntimePaths(str(tmp_path))
    master_json(paths)
    plan(paths, {1: ("a",)})
    assert asyncio.run(wait_for_handover(paths, 1, lambda: os.path.exists(paths.master) and
                                         os.unlink(paths.master), wait=10)) == (True, None)
