"""The autoscaler's decision (pure): the DynamicWorkerManager formula of RouteMQ's
shared-subscriptions guide, with a cooldown.

    workers = ceil(rate / target_rate_per_worker)      at least 1
            x 1.5 when CPU > 80 %, x 0.7 when CPU < 30 %
            x 1.3 when the backlog (received, not yet handled) exceeds 1000
    clamped to [min_workers, max_workers]

    >>> policy = Policy(min_workers=2, max_workers=8, target_rate=100.0)
    >>> desired_workers(Load(rate=450.0, cpu_percent=50.0, backlog=0), policy)
    (5, 'rate 450.0 msg/s at 100.0 per worker')
    >>> desired_workers(Load(rate=0.0, cpu_percent=5.0, backlog=0), policy)[0]
    2

The master feeds it the fleet's figures from the workers' health files every scale_interval
and acts (start or stop instances through its back end) at most once per scale_cooldown.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

HIGH_CPU, LOW_CPU = 80.0, 30.0
BACKLOG = 1000


@dataclass(frozen=True)
class Load:
    rate: float          # messages/s handled by the whole fleet
    cpu_percent: float   # mean CPU use of a worker process, 0..100 (one core)
    backlog: int         # messages received by workers and not yet handled


@dataclass(frozen=True)
class Policy:
    min_workers: int
    max_workers: int
    target_rate: float
    interval: float = 30.0
    cooldown: float = 60.0


def desired_workers(load: Load, policy: Policy) -> tuple[int, str]:
    """(how many workers the load calls for, why)."""
    base = max(1, math.ceil(load.rate / policy.target_rate))
    factor, why = 1.0, [f"rate {load.rate:.1f} msg/s at {policy.target_rate:.1f} per worker"]
    if load.cpu_percent > HIGH_CPU:
        factor *= 1.5
        why.append(f"cpu {load.cpu_percent:.0f}% > {HIGH_CPU:.0f}%")
    elif load.cpu_percent < LOW_CPU and base > 1:
        factor *= 0.7
        why.append(f"cpu {load.cpu_percent:.0f}% < {LOW_CPU:.0f}%")
    if load.backlog > BACKLOG:
        factor *= 1.3
        why.append(f"backlog {load.backlog} > {BACKLOG}")
    wanted = math.ceil(round(base * factor, 6))
    return max(policy.min_workers, min(wanted, policy.max_workers)), "; ".join(why)


class Autoscaler:
    """Decides at most once per interval and acts at most once per cooldown."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.target: int | None = None
        self.last_decision = -math.inf
        self.last_action_at = -math.inf
        self.last_action = ""
        self.load = Load(0.0, 0.0, 0)

    def decide(self, now: float, current: int, load: Load) -> int | None:
        """The new worker count, or None to leave the fleet as it is."""
        if now - self.last_decision < self.policy.interval:
            return None
        self.last_decision, self.load = now, load
        wanted, why = desired_workers(load, self.policy)
        self.target = wanted
        if wanted == current or now - self.last_action_at < self.policy.cooldown:
            return None
        self.last_action_at = now
        self.last_action = f"{current} -> {wanted} workers: {why}"
        return wanted

    def state(self) -> dict[str, Any]:
        """The autoscaler's part of master.json."""
        return {"enabled": True, "min": self.policy.min_workers, "max": self.policy.max_workers,
                "target": self.target, "rate": self.load.rate,
                "cpu_percent": self.load.cpu_percent, "backlog": self.load.backlog,
                "last_action": self.last_action,
                "last_action_at": None if math.isinf(self.last_action_at) else self.last_action_at}
