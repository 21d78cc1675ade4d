"""The autoscaler's formula (the seed's) and its interval and cooldown."""
import pytest

from routemq.autoscale import Autoscaler, Load, Policy, desired_workers

POLICY = Policy(min_workers=2, max_workers=10, target_rate=100.0, interval=30.0, cooldown=60.0)


@pytest.mark.parametrize("load, want", [
    (Load(0.0, 50.0, 0), 2),          # idle: min_workers
    (Load(450.0, 50.0, 0), 5),        # ceil(450 / 100)
    (Load(450.0, 90.0, 0), 8),        # x1.5 on high CPU: ceil(7.5)
    (Load(450.0, 10.0, 0), 4),        # x0.7 on low CPU: ceil(3.5)
    (Load(450.0, 50.0, 5000), 7),     # x1.3 on backlog: ceil(6.5)
    (Load(5000.0, 99.0, 5000), 10),   # clamped to max_workers
])
def test_desired_workers(load, want):
    assert desired_workers(load, POLICY)[0] == want


def test_the_reason_names_every_factor():
    _, why = desired_workers(Load(450.0, 90.0, 5000), POLICY)
    assert "rate 450.0" in why and "cpu 90%" in why and "backlog 5000" in why


def test_decides_once_per_interval_and_acts_once_per_cooldown():
    scaler = Autoscaler(POLICY)
    busy = Load(450.0, 50.0, 0)
    assert scaler.decide(0.0, 2, busy) == 5
    assert scaler.decide(10.0, 5, Load(900.0, 50.0, 0)) is None   # within the interval
    assert scaler.decide(31.0, 5, Load(900.0, 50.0, 0)) is None   # within the cooldown
    assert scaler.target == 9
    assert scaler.decide(62.0, 5, Load(900.0, 50.0, 0)) == 9
    assert scaler.decide(93.0, 9, Load(900.0, 50.0, 0)) is None   # already there
    state = scaler.state()
    assert state["target"] == 9 and state["last_action"].startswith("5 -> 9 workers")
    assert state["last_action_at"] == 62.0
