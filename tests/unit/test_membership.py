"""Membership from health files, and make-before-break hand-over plans (pure)."""
import doctest

from routemq import membership
from routemq.documents import WorkerHealth, WorkerState
from routemq.membership import Membership, Release, gains, overlap, release_on_stop
from routemq.plan import Plan


def h(i, state="running", at=0.0, version=None, pid=None):
    return WorkerHealth(instance=i, state=WorkerState(state), updated_at=at,
                        plan_version=version, pid=pid)


def test_configured_members_start_planned():
    assert Membership([1, 2, 3], now=0.0).members == {1, 2, 3}


def test_a_fresh_health_file_joins_and_a_stale_one_does_not():
    m = Membership([1], now=0.0)
    assert m.observe(10.0, {1: h(1, at=10.0), 2: h(2, "joining", at=9.0),
                            3: h(3, at=1.0)}) == ({2}, set())
    assert m.members == {1, 2}


def test_stopping_leaves_at_once_and_a_stopping_stranger_does_not_join():
    m = Membership([1, 2], now=0.0)
    assert m.observe(1.0, {1: h(1, "stopping", 1.0), 2: h(2, at=1.0),
                           3: h(3, "stopping", 1.0)}) == (set(), {1})
    assert m.members == {2}


def test_a_clean_stop_removes_the_file_and_the_member():
    m = Membership([1, 2], now=0.0)
    m.observe(1.0, {1: h(1, at=1.0), 2: h(2, at=1.0)})
    assert m.observe(2.0, {2: h(2, at=2.0)}) == (set(), {1})


def test_a_crash_keeps_the_member_until_dead_after():
    """A crashed worker's file stays (stale): systemd restarts it, its routes must not move."""
    m = Membership([1, 2], now=0.0, dead_after=60.0)
    m.observe(1.0, {1: h(1, at=1.0), 2: h(2, at=1.0)})
    assert m.observe(50.0, {1: h(1, at=1.0), 2: h(2, at=50.0)}) == (set(), set())
    assert m.observe(62.0, {1: h(1, at=1.0), 2: h(2, at=62.0)}) == (set(), {1})


def test_a_configured_instance_that_never_starts_is_dropped_after_the_grace():
    m = Membership([1, 2], now=0.0, join_grace=30.0)
    assert m.observe(29.0, {1: h(1, at=29.0)}) == (set(), set())
    assert m.observe(31.0, {1: h(1, at=31.0)}) == (set(), {2})
    # and it joins when it finally starts
    assert m.observe(40.0, {1: h(1, at=40.0), 2: h(2, "joining", 40.0)}) == ({2}, set())


def test_added_members_get_their_grace_from_when_they_were_added():
    m = Membership([1], now=0.0, join_grace=30.0)
    m.add(2, now=100.0)
    assert m.observe(120.0, {1: h(1, at=120.0)}) == (set(), set())
    assert m.observe(131.0, {1: h(1, at=131.0)}) == (set(), {2})


def test_a_member_whose_process_is_gone_leaves_sooner_than_a_silent_one():
    m = Membership([1, 2], now=0.0, dead_after=60, gone_after=20)
    m.observe(1.0, {1: h(1, at=1.0), 2: h(2, at=1.0)})
    stale = {1: h(1, at=1.0, pid=7),   # hung or stopped
             2: h(2, at=1.0, pid=8)}   # dead, not restarted: its process is gone
    assert m.observe(20.0, stale, gone={2}) == (set(), set())
    assert m.observe(22.0, stale, gone={2}) == (set(), {2})
    assert m.observe(62.0, stale, gone={2}) == (set(), {1})


def test_an_unusable_file_never_joins_and_a_member_with_one_goes_silent():
    m = Membership([1], now=0.0, dead_after=60)
    unusable = {1: WorkerHealth.unusable(1), 2: WorkerHealth.unusable(2)}
    assert m.observe(1.0, unusable) == (set(), set())
    assert m.observe(61.0, unusable) == (set(), {1})


def test_release_on_stop_keeps_what_nobody_else_holds():
    subs = {"shared:a": "$share/g/a", "shared:b": "$share/g/b", "single:c": "c"}
    # the master moved a and c; b has no other owner (all of the fleet is stopping)
    plan = Plan({2: ("shared:a", "single:c")})
    release = release_on_stop(subs, 1, plan, standalone=False)
    assert release.filters == ("$share/g/a", "c") and not release.end_session
    # still in the plan (the master did not move it in time): keep everything
    assert release_on_stop(subs, 1, Plan({1: ("shared:a",)}), standalone=False) == \
        Release((), False)
    assert release_on_stop({}, 1, Plan({2: ()}), standalone=False) == Release((), True)


def test_overlap_keeps_old_routes_on_live_instances_only():
    now = Plan({1: ("a", "c"), 2: ("b",), 3: ("d",)})
    target = Plan({1: ("a",), 2: ("b", "c", "d")})
    # 3 is gone (crashed for good): nothing to keep there; 1 keeps c until 2 has it
    assert overlap(now, target, present=[1, 2]).assignments == \
        {1: ("a", "c"), 2: ("b", "c", "d")}


def test_overlap_of_a_stopping_instance_keeps_it_until_the_final_plan():
    now = Plan({1: ("a",), 2: ("b",)})
    target = Plan({1: ("a", "b")})
    assert overlap(now, target, present=[1, 2]).assignments == {1: ("a", "b"), 2: ("b",)}


def test_gains_are_what_each_instance_must_subscribe_to():
    assert gains(Plan({1: ("a", "b")}), Plan({1: ("a",), 2: ("b",)})) == {2: {"b"}}
    assert gains(Plan({1: ("a",)}), Plan({1: ("a",)})) == {}


def test_the_docstring_examples_hold():
    assert doctest.testmod(membership).failed == 0
