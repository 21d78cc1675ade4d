"""Which routes a worker instance holds, from the master's plan file or computed alone
(routemq.assignment), on a real directory."""
import asyncio
import os

import pytest

from routemq.assignment import Assignment
from routemq.errors import WorkerError
from routemq.plan import Plan
from routemq.router import Router


async def handler(payload, client):
    pass


def app():
    router = Router()
    router.on("s/{x}", handler, shared=True, worker_count=2)
    router.on("single/{x}", handler)
    return router


def test_without_a_plan_file_the_plan_is_computed_alone(tmp_path):
    a = Assignment(app(), 2, str(tmp_path / "plan.json"), "auto")
    assert not a.planned and [r.key for r in a.load()] == ["shared:s/{x}"]
    with pytest.raises(WorkerError, match="instance 3 is not in the plan: no master plan"):
        Assignment(app(), 3, str(tmp_path / "plan.json"), "auto").load()


def test_the_masters_plan_is_followed_and_its_changes_noticed(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(Plan({1: ("single:single/{x}",), 2: ("shared:s/{x}",)},
                         generation=4).to_json())
    a = Assignment(app(), 1, str(path), "auto")
    assert [r.key for r in a.load()] == ["single:single/{x}"] and a.generation == 4
    assert not a.changed()
    path.write_text(Plan({1: ("shared:s/{x}",)}, generation=5).to_json())
    os.utime(path, ns=(1, 1))  # a different mtime, whatever the clock's resolution
    assert a.changed() and [r.key for r in a.load()] == ["shared:s/{x}"]


def test_a_plan_others_can_write_is_refused(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(Plan({1: ("shared:s/{x}",)}).to_json())
    os.chmod(path, 0o666)
    with pytest.raises(WorkerError, match="refusing the plan: .*writable by group or others"):
        Assignment(app(), 1, str(path), "auto").load()


def test_waiting_for_the_master_to_add_this_instance(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(Plan({1: ("shared:s/{x}",)}).to_json())
    pings = []

    async def main():
        a = Assignment(app(), 2, str(path), "auto")
        waiting = asyncio.ensure_future(a.wait(10, lambda: pings.append(1)))
        deadline = asyncio.get_running_loop().time() + 5
        while not pings and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert pings and not waiting.done()  # it waits, and the watchdog is fed meanwhile
        path.write_text(Plan({1: ("shared:s/{x}",), 2: ("single:single/{x}",)}).to_json())
        return await asyncio.wait_for(waiting, 5)

    assert [r.key for r in asyncio.run(main())] == ["single:single/{x}"]
    with pytest.raises(WorkerError, match="after waiting 0s; is routemq-master running"):
        asyncio.run(Assignment(app(), 3, str(path), "auto").wait(0, lambda: None))
