"""The master's tick on a real runtime directory, with health files written by the test
(no broker): joins, clean stops, crashes and the make-before-break hand-over."""
import json
import os
import time

import pytest

from routemq.config import load_config
from routemq.master import HANDOVER_TIMEOUT, Master, MasterError
from routemq.membership import GONE_AFTER, Membership
from routemq.orphans import GRACE
from routemq.plan import Plan
from routemq.router import Router


async def handler(payload, client):
    pass


def make_master(tmp_path, workers="2"):
    router = Router()
    router.on("s/{x}", handler, shared=True, worker_count=2)
    router.on("single/{x}", handler)
    config = load_config([], environ={"ROUTEMQ_RUNTIME_DIR": str(tmp_path),
                                      "WORKER_COUNT": workers}, config_file=os.devnull,
                         config_dir=str(tmp_path / "none"))
    master = Master(config, router)
    master.claim()
    return master


def health(tmp_path, i, state="running", at=0.0, version=0):
    (tmp_path / "workers").mkdir(exist_ok=True)
    (tmp_path / "workers" / f"{i}.json").write_text(json.dumps(
        {"instance": i, "pid": os.getpid(), "state": state, "updated_at": at,
         "plan_version": version, "rate": 1.5, "inflight": 1, "queued": 2}))


def plan_file(tmp_path):
    return Plan.from_json((tmp_path / "plan.json").read_text())


def test_first_tick_writes_the_plan_and_master_json(tmp_path):
    m = make_master(tmp_path)
    m.tick(0.0)
    plan = plan_file(tmp_path)
    assert plan.generation == 1 and sorted(plan.assignments) == [1, 2]
    assert plan.owners("shared:s/{x}") == (1, 2) and len(plan.owners("single:single/{x}")) == 1
    doc = json.loads((tmp_path / "master.json").read_text())
    assert doc["instances"] == [1, 2] and doc["plan_version"] == 1 and doc["backend"] == "none"


def test_a_join_is_handed_over_before_the_old_owner_lets_go(tmp_path):
    m = make_master(tmp_path)
    for i in (1, 2):
        health(tmp_path, i, at=0.0, version=1)
    m.tick(0.0)
    single = "single:single/{x}"
    old_owner = plan_file(tmp_path).owners(single)[0]
    health(tmp_path, 3, "joining", at=1.0)
    m.tick(1.0)
    between = plan_file(tmp_path)
    assert between.generation == 2 and 3 in between.assignments
    new_owner = next(i for i in between.owners(single) if i != old_owner) \
        if len(between.owners(single)) == 2 else None
    m.tick(2.0)
    assert plan_file(tmp_path).generation == 2, "must wait for the new owners"
    for i in (1, 2, 3):
        health(tmp_path, i, at=2.5, version=2)
    m.tick(2.5)
    final = plan_file(tmp_path)
    assert final.generation == 3 and sorted(final.assignments) == [1, 2, 3]
    if new_owner is not None:  # the route moved: both held it in between, one holds it now
        assert final.owners(single) == (new_owner,)


def test_an_unresponsive_new_owner_does_not_block_the_hand_over_forever(tmp_path):
    m = make_master(tmp_path)
    for i in (1, 2):
        health(tmp_path, i, at=0.0, version=1)
    m.tick(0.0)
    health(tmp_path, 3, "joining", at=1.0)
    for i in (1, 2):
        health(tmp_path, i, at=1.0, version=1)
    m.tick(1.0)
    gen = plan_file(tmp_path).generation
    health(tmp_path, 3, "joining", at=1.0 + HANDOVER_TIMEOUT)
    m.tick(1.0 + HANDOVER_TIMEOUT + 0.1)
    assert plan_file(tmp_path).generation == gen + 1


def test_a_crash_keeps_the_plan_and_a_clean_stop_moves_routes(tmp_path):
    m = make_master(tmp_path)
    single = "single:single/{x}"
    for i in (1, 2):
        health(tmp_path, i, at=0.0, version=1)
    m.tick(0.0)
    assert plan_file(tmp_path).owners(single) == (1,)
    health(tmp_path, 2, at=5.0, version=1)   # 1 crashed: its file stays, stale
    m.tick(5.0)
    assert plan_file(tmp_path).generation == 1
    health(tmp_path, 1, "stopping", at=6.0, version=1)  # restarted, then stopped cleanly
    health(tmp_path, 2, at=6.0, version=1)
    m.tick(6.0)
    between = plan_file(tmp_path)
    assert between.owners(single) == (1, 2)  # 1 keeps it until 2 has subscribed
    m.tick(6.2)
    assert plan_file(tmp_path).generation == between.generation
    health(tmp_path, 2, at=6.5, version=between.generation)
    m.tick(6.5)
    final = plan_file(tmp_path)
    assert final.assignments == {2: ("shared:s/{x}", single)}


def test_load_sums_the_fresh_workers(tmp_path):
    m = make_master(tmp_path)
    health(tmp_path, 1, at=10.0)
    health(tmp_path, 2, at=0.0)  # stale: not counted
    m.read_health(10.0)
    load = m.load(10.0)
    assert load.rate == 1.5 and load.backlog == 3


def test_a_second_master_on_the_same_directory_is_refused(tmp_path):
    m = make_master(tmp_path)  # holds master.lock until close()
    with pytest.raises(MasterError, match=rf"another master \(pid {os.getpid()}\)"):
        make_master(tmp_path)
    m.close()
    make_master(tmp_path).close()


def test_a_restarted_master_continues_the_generation(tmp_path):
    m = make_master(tmp_path)
    m.tick(0.0)
    m.close()
    again = make_master(tmp_path)
    assert again.written is not None and again.written.generation == 1
    for i in (1, 2):
        health(tmp_path, i, at=1.0, version=1)
    again.tick(1.0)
    assert plan_file(tmp_path).generation == 1  # same members: nothing rewritten


def test_a_deleted_or_damaged_plan_is_written_again_at_once(tmp_path):
    m = make_master(tmp_path)
    m.tick(0.0)
    written = (tmp_path / "plan.json").read_text()
    (tmp_path / "plan.json").unlink()
    m.tick(0.5)
    assert (tmp_path / "plan.json").read_text() == written
    (tmp_path / "plan.json").write_text("{not json")
    m.tick(1.0)
    assert (tmp_path / "plan.json").read_text() == written
    (tmp_path / "plan.json").write_text(Plan({1: ("shared:s/{x}",)}, generation=1).to_json())
    m.tick(1.5)
    assert (tmp_path / "plan.json").read_text() == written


def test_a_deleted_health_file_of_a_live_worker_moves_nothing(tmp_path):
    m = make_master(tmp_path)
    for i in (1, 2):
        health(tmp_path, i, at=0.0, version=1)
    m.tick(0.0)
    before = plan_file(tmp_path)
    (tmp_path / "workers" / "2.json").unlink()  # its pid (ours) lives
    m.tick(1.0)
    m.tick(2.0)
    assert m.membership.members == {1, 2} and plan_file(tmp_path) == before


class Drainer:
    code = None

    def __init__(self, instance):
        self.instance = instance

    def poll(self):
        return self.code

    def terminate(self):
        pass

    def wait(self, timeout=None):
        return 0


def test_an_instance_gone_for_good_has_its_session_drained(tmp_path):
    m = make_master(tmp_path, workers="3")
    t = time.time() - 120  # times in the past: health files from the future are refused
    m.membership = Membership(range(1, 4), t)
    started = []
    m.orphans.spawn = lambda i: started.append(Drainer(i)) or started[-1]
    for i in (1, 2, 3):
        health(tmp_path, i, at=t, version=1)
        (tmp_path / "workers" / f"{i}.session").touch()  # as the workers mark them
    m.tick(t)
    # 3 crashed and nobody restarts it: its file stays, its pid is gone
    doc = json.loads((tmp_path / "workers" / "3.json").read_text())
    doc["pid"] = dead_pid()
    (tmp_path / "workers" / "3.json").write_text(json.dumps(doc))

    def tick():
        nonlocal t
        t += 1.0
        for i in (1, 2):
            health(tmp_path, i, at=t, version=m.written.generation)
        m.tick(t)

    for _ in range(int(GONE_AFTER) + 2):
        tick()
    assert 3 not in m.membership.members, "a dead instance is planned out after GONE_AFTER"
    assert not started  # only once it is out of the plan and the routes are covered
    sessions = json.loads((tmp_path / "master.json").read_text())["sessions"]
    assert sessions["3"]["state"] == "waiting"
    for _ in range(int(GRACE) + 2):
        tick()
    assert [d.instance for d in started] == [3]
    assert json.loads((tmp_path / "master.json").read_text())["sessions"]["3"]["state"] == \
        "draining"
    started[0].code = 0
    (tmp_path / "workers" / "3.session").unlink()  # as the drainer does
    tick()
    assert json.loads((tmp_path / "master.json").read_text())["sessions"] == {}
    assert not (tmp_path / "workers" / "3.json").exists()


def test_no_session_is_drained_while_no_instance_holds_the_routes(tmp_path):
    """The whole fleet stopping: the kept sessions hold the messages for the next start."""
    m = make_master(tmp_path)
    started = []
    m.orphans.spawn = lambda i: started.append(i) or Drainer(i)
    for i in (1, 2):
        health(tmp_path, i, at=0.0, version=1)
        (tmp_path / "workers" / f"{i}.session").touch()
    m.tick(0.0)
    for i in (1, 2):
        health(tmp_path, i, "stopping", at=1.0, version=1)
    m.tick(1.0)
    for i in (1, 2):
        (tmp_path / "workers" / f"{i}.json").unlink()
    for t in range(2, 40):
        m.tick(float(t))
    assert m.membership.members == set() and started == []


def dead_pid():
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_new_instance_with_no_health_file_yet_is_waited_for(tmp_path):
    """The autoscaler's new instance has not written a file yet when the plan moves routes
    to it: finishing the hand-over then would leave those routes with no subscriber."""
    m = make_master(tmp_path, workers="1")
    health(tmp_path, 1, at=0.0, version=1)
    m.tick(0.0)
    m.membership.add(2, 0.5)  # what the autoscaler does, with backend.start(2)
    m._replan = True
    m.tick(0.5)
    between = plan_file(tmp_path)
    assert between.owners("shared:s/{x}") == (1, 2) and m.target is not None
    m.tick(1.0)
    assert m.target is not None  # 2 has not subscribed yet: the hand-over waits
    health(tmp_path, 2, at=1.5, version=between.generation)
    m.tick(1.5)
    assert m.target is None
