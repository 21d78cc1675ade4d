"""The runtime directory's files: checked reads, explicit modes, the plan's trust, locks."""
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from routemq import runtime
from routemq.documents import WorkerHealth
from routemq.plan import Plan
from routemq.runtime import (FileLock, RuntimePaths, ensure_dir, load_plan, lock_holder,
                             master_lock_holder, plan_problem, read_health, read_health_dir,
                             read_master, read_plan, running_master, write_json_atomic)

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_700_000_000.0


def write(path: Path, doc) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def health(**extra):
    return {"pid": os.getpid(), "updated_at": NOW, "state": "running", **extra}


def within(seconds, fn, *args):
    """fn(*args) in a thread; fails the test if it has not returned after `seconds`."""
    result = []
    thread = threading.Thread(target=lambda: result.append(fn(*args)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert result, f"{fn.__name__} did not return within {seconds}s"
    return result[0]


# --- health files -------------------------------------------------------------------------

def test_keys_of_the_wrong_type_are_dropped_and_named(tmp_path):
    write(tmp_path / "2.json", health(rate="fast", inflight=None, processed=True,
                                      cpu_seconds=10**400, queued=-1, connected=1,
                                      routes_held=["a", 3], client_id="c", extra="kept"))
    docs, notes = read_health_dir(str(tmp_path), NOW)
    h = docs[2]
    assert (h.rate, h.inflight, h.processed, h.cpu_seconds, h.queued, h.connected,
            h.routes_held) == (None,) * 7
    assert h.client_id == "c" and h.instance == 2 and h.usable  # "extra": a newer key, ignored
    assert notes == ["workers/2.json: ignored invalid connected (want true or false), "
                     "routes_held (want a list of strings), inflight (want an integer >= 0), "
                     "queued (want an integer >= 0), cpu_seconds (want a number >= 0), "
                     "processed (want an integer >= 0), rate (want a number >= 0)"]


def test_per_route_figures_are_checked(tmp_path):
    good = {"r": {"processed": 3, "errors": 0, "avg_ms": 1.5, "p50_ms": 1, "p99_ms": 2,
                  "max_ms": 2}}
    write(tmp_path / "1.json", health(routes=good))
    write(tmp_path / "2.json", health(routes={"r": {"processed": "x"}}))
    write(tmp_path / "3.json", health(routes={"r": 5}))
    docs, notes = read_health_dir(str(tmp_path), NOW)
    assert docs[1].routes == good and docs[2].routes is None and docs[3].routes is None
    assert len(notes) == 2 and all("routes (want an object of per-route" in n for n in notes)


def test_a_future_dated_file_is_unusable(tmp_path):
    write(tmp_path / "7.json", health(updated_at=NOW + 3600))
    write(tmp_path / "8.json", health(updated_at=NOW + 4))  # within the clock skew allowance
    docs, notes = read_health_dir(str(tmp_path), NOW)
    assert not docs[7].usable and docs[8].updated_at == NOW + 4
    assert notes == ["workers/7.json: updated_at is 3600s in the future (more than the 5s "
                     "allowed for clock skew); ignored"]
    assert not docs[7].fresh(NOW)  # the master never counts it alive


def test_a_fifo_does_not_hang_the_reader(tmp_path):
    os.mkfifo(tmp_path / "9.json")
    write(tmp_path / "1.json", health())
    docs, notes = within(5, read_health_dir, str(tmp_path), NOW)
    assert docs[9] == WorkerHealth.unusable(9) and docs[1].pid == os.getpid()
    assert notes == ["workers/9.json: not a regular file (a FIFO), not read"]


def test_symbolic_links_and_large_files_are_not_read(tmp_path):
    target = write(tmp_path / "elsewhere", health())
    (tmp_path / "w").mkdir()
    os.symlink(target, tmp_path / "w" / "1.json")
    write(tmp_path / "w" / "2.json", health(state="x" * runtime.MAX_DOC_BYTES))
    docs, notes = read_health_dir(str(tmp_path / "w"), NOW)
    assert docs == {1: WorkerHealth.unusable(1), 2: WorkerHealth.unusable(2)}
    assert notes[0] == "workers/1.json: a symbolic link, not read"
    assert notes[1].startswith("workers/2.json: 10") and "over the 1048576-byte limit" in notes[1]


def test_only_positive_instance_numbers_are_health_files(tmp_path):
    for name in ("0.json", "1.lock", ".tmp-x", "1.json.tmp", "٣.json", "-1.json"):
        write(tmp_path / name, health())
    assert read_health_dir(str(tmp_path), NOW) == ({}, [])
    assert read_health(str(tmp_path / "absent.json"), 1) == (None, [])


# --- master.json --------------------------------------------------------------------------

def test_master_json_is_checked_including_sessions(tmp_path):
    doc = {"pid": 5, "updated_at": NOW, "members": [2, 1, "x"], "handover": "no",
           "load": {"rate": 1.0, "cpu_percent": 2, "backlog": 0},
           "sessions": {"3": {"state": "draining", "since": NOW, "detail": "42 queued"}}}
    write(tmp_path / "master.json", doc)
    m, notes = read_master(str(tmp_path / "master.json"), NOW)
    assert m.members == (1, 2) and m.handover is None and m.sessions == doc["sessions"]
    assert notes == ["master.json: ignored invalid handover (want true or false)",
                     "master.json: members holds something other than positive integers"]
    write(tmp_path / "master.json", {**doc, "sessions": {"3": {"since": "then"}},
                                     "load": {"rate": "fast"}})
    m, notes = read_master(str(tmp_path / "master.json"), NOW)
    assert m.sessions == {"3": {}} and m.load is None  # a session whose details are unknown
    assert notes[0].endswith(", load (want an object of numbers >= 0)")
    assert notes[-1] == "master.json: sessions: 3: ignored invalid since (want a number >= 0)"


def test_running_master_needs_a_live_pid_and_a_fresh_present_date(tmp_path):
    paths = RuntimePaths(str(tmp_path))
    now = time.time()
    write(Path(paths.master), {"pid": os.getpid(), "updated_at": now})
    assert running_master(paths, now) == os.getpid()
    for bad in ({"pid": os.getpid(), "updated_at": now + 3600},   # from the future
                {"pid": os.getpid(), "updated_at": now - 60},     # stale
                {"pid": True, "updated_at": now}, {"pid": -1, "updated_at": now},
                {"pid": os.getpid(), "updated_at": "now"}, [1, 2]):
        write(Path(paths.master), bad)
        assert running_master(paths, now) is None, bad
    os.unlink(paths.master)
    os.mkfifo(paths.master)
    assert within(5, running_master, paths, now) is None


# --- modes --------------------------------------------------------------------------------

def test_modes_are_explicit_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        ensure_dir(str(tmp_path / "a" / "b"))
        write_json_atomic(str(tmp_path / "c" / "workers" / "1.json"), {"x": 1})
        lock = FileLock(str(tmp_path / "d" / "master.lock"))
        assert lock.try_acquire()
        lock.release()
    finally:
        os.umask(old)
    for d in ("a", "a/b", "c", "c/workers", "d"):
        assert (tmp_path / d).stat().st_mode & 0o777 == 0o755, d
    for f in ("c/workers/1.json", "d/master.lock"):
        assert (tmp_path / f).stat().st_mode & 0o777 == 0o644, f
    ensure_dir(str(tmp_path / "a"))  # exists: fine


# --- the plan -----------------------------------------------------------------------------

PLAN = Plan({1: ("shared:a",)})


def plan_in(directory: Path, mode: int = 0o644) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    path = write(directory / "plan.json", PLAN.to_json())
    path.chmod(mode)
    return str(path)


def test_a_trusted_plan_is_read(tmp_path):
    path = plan_in(tmp_path / "run")
    assert plan_problem(path) is None
    assert read_plan(path, trusted_only=True) == PLAN
    assert load_plan(str(tmp_path / "absent.json"), trusted_only=True) == (None, None)


@pytest.mark.parametrize("mode, dir_mode, why", [
    (0o666, 0o755, "writable by group or others (mode 0666)"),
    (0o664, 0o755, "writable by group or others (mode 0664)"),
    (0o644, 0o777, "in a directory writable by others (mode 0777): anyone could replace it"),
])
def test_a_plan_anyone_could_have_written_is_refused(tmp_path, caplog, mode, dir_mode, why):
    path = plan_in(tmp_path / "run", mode)
    (tmp_path / "run").chmod(dir_mode)
    assert plan_problem(path) == why
    with caplog.at_level(logging.WARNING, "routemq.runtime"):
        assert read_plan(path, trusted_only=True) is None
    assert [r.getMessage() for r in caplog.records] == [f"refusing {path}: {why}"]
    assert read_plan(path) == PLAN  # status and the master read it all the same


def test_a_sticky_directory_of_ours_is_fine(tmp_path):
    path = plan_in(tmp_path / "run")
    (tmp_path / "run").chmod(0o1777)
    assert plan_problem(path) is None and read_plan(path, trusted_only=True) == PLAN


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_plan_owned_by_someone_else_is_refused(tmp_path):
    path = plan_in(tmp_path / "run")
    os.chown(path, 65534, 65534)
    assert plan_problem(path) == "owned by uid 65534, neither this user (0) nor root"
    assert load_plan(path, trusted_only=True) == (
        None, "plan.json: owned by uid 65534, neither this user (0) nor root")


def test_a_plan_that_is_a_link_fifo_or_garbage_is_a_note(tmp_path):
    os.symlink(plan_in(tmp_path / "real"), tmp_path / "plan.json")
    assert plan_problem(str(tmp_path / "plan.json")) == "a symbolic link"
    assert load_plan(str(tmp_path / "plan.json")) == (None, "plan.json: a symbolic link, not read")
    os.mkfifo(tmp_path / "fifo.json")
    assert within(5, load_plan, str(tmp_path / "fifo.json"), True) == (
        None, "plan.json: not a regular file (a FIFO), not read")
    write(tmp_path / "deep.json", "[" * 100_000)
    assert load_plan(str(tmp_path / "deep.json"))[1].startswith("plan.json: ignored:")


# --- locks --------------------------------------------------------------------------------

HOLD = """
import sys, time
from routemq.runtime import FileLock
lock = FileLock(sys.argv[1])
print("locked" if lock.try_acquire() else "refused", flush=True)
time.sleep(120)
"""


def hold_in_child(path: Path) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.stdout.readline().strip() == "locked"
    return child


def test_a_lock_held_by_a_child_is_refused_until_the_kernel_releases_it(tmp_path):
    paths = RuntimePaths(str(tmp_path))
    child = hold_in_child(Path(paths.master_lock))
    try:
        lock = FileLock(paths.master_lock)
        assert not lock.try_acquire() and not lock.held
        assert master_lock_holder(paths) == child.pid == lock_holder(paths.master_lock)
        child.send_signal(signal.SIGKILL)  # no clean-up code runs: the kernel releases it
        child.wait(10)
        assert master_lock_holder(paths) is None  # its pid is still in the file: not trusted
        assert lock.try_acquire() and lock.held
        assert lock_holder(paths.master_lock) == os.getpid()
        lock.release()
        assert lock_holder(paths.master_lock) is None and not lock.held
    finally:
        child.kill()
        child.wait()


def test_instance_locks_are_one_per_instance(tmp_path):
    paths = RuntimePaths(str(tmp_path))
    assert paths.instance_lock(3) == str(tmp_path / "workers" / "3.lock")
    child = hold_in_child(Path(paths.instance_lock(1)))
    try:
        with FileLock(paths.instance_lock(2)) as two:
            assert two.try_acquire()
            assert not FileLock(paths.instance_lock(1)).try_acquire()
            assert not FileLock(paths.instance_lock(2)).try_acquire()  # even in one process
    finally:
        child.kill()
        child.wait()
    assert lock_holder(paths.instance_lock(2)) is None


def test_a_lock_file_that_is_not_a_regular_file_is_an_error(tmp_path):
    os.mkfifo(tmp_path / "master.lock")
    with pytest.raises(OSError, match="not a regular file"):
        FileLock(str(tmp_path / "master.lock")).try_acquire()
    os.symlink(tmp_path / "elsewhere", tmp_path / "link.lock")
    with pytest.raises(OSError):
        FileLock(str(tmp_path / "link.lock")).try_acquire()
    assert not (tmp_path / "elsewhere").exists()
    assert lock_holder(str(tmp_path / "master.lock")) is None
