"""Retries of a failed handler: how many more attempts, and how long to wait before each.

A route's policy (`Router.on(..., retries=, retry_backoff=, retry_backoff_max=)`): when the
handler raises or times out on attempt `n` and `n <= retries`, the message stays
unacknowledged and runs again after

    min(retry_backoff * 2 ** (n - 1), retry_backoff_max)

seconds, less up to JITTER of it (so that the messages that failed together, when a
database went down, do not all come back in the same instant). After attempt `retries + 1`
it is a dead letter. Pure: the dispatcher and routemq.testing do the waiting.

>>> policy = RetryPolicy(retries=4, backoff=0.5, backoff_max=3.0)
>>> [policy.delay(n) for n in (1, 2, 3, 4, 5)]
[0.5, 1.0, 2.0, 3.0, None]
>>> RetryPolicy().delay(1) is None  # retries=0: the first failure is final
True
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from routemq.errors import RouteError

JITTER = 0.1  # a delay is shortened by up to this share of it
MAX_RETRIES = 1000
MAX_SECONDS = 86400.0

DEFAULTS = {"retries": 0, "retry_backoff": 1.0, "retry_backoff_max": 60.0}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int = 0
    backoff: float = 1.0
    backoff_max: float = 60.0

    @property
    def attempts(self) -> int:
        """How many times a message may run at most."""
        return self.retries + 1

    def delay(self, attempt: int) -> float | None:
        """Seconds to wait after failed attempt `attempt` (1-based) before the next one;
        None when it was the last."""
        if attempt > self.retries:
            return None
        # 2 ** 1000 overflows a float: past the cap the exponent no longer matters
        exponent = min(attempt - 1, 64)
        return min(self.backoff * 2.0 ** exponent, self.backoff_max)


def jittered(delay: float, rand: float | None = None) -> float:
    """`delay` shortened by up to JITTER of it (`rand` in [0, 1), random when None).

    >>> jittered(10.0, 0.0), jittered(10.0, 0.5)
    (10.0, 9.5)
    """
    return delay * (1.0 - JITTER * (random.random() if rand is None else rand))


def failure_text(exc: BaseException) -> str:
    """How a failed attempt is logged, retried and dead-lettered.

    >>> failure_text(ConnectionError("database is down"))
    'ConnectionError: database is down'
    """
    return f"{type(exc).__name__}: {exc}"


def timed_out(seconds: float, cause: BaseException | None = None) -> TimeoutError:
    """The error of an attempt that outlived its timeout (`cause`: where it was waiting).

    >>> str(timed_out(0.05))
    'handler timed out after 0.05s'
    """
    error = TimeoutError(f"handler timed out after {seconds:g}s")
    error.__cause__ = cause
    return error


def _seconds(value: object) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value) and 0 <= value <= MAX_SECONDS)


def retry_policy(topic: str, retries: object = 0, retry_backoff: object = 1.0,
                 retry_backoff_max: object = 60.0) -> RetryPolicy:
    """The checked policy of route `topic`; RouteError naming the bad keyword.

    >>> retry_policy("a", retries=-1)
    Traceback (most recent call last):
    ...
    routemq.errors.RouteError: route 'a': retries must be an integer from 0 to 1000, got -1
    """
    if isinstance(retries, bool) or not isinstance(retries, int) \
            or not 0 <= retries <= MAX_RETRIES:
        raise RouteError(f"route {topic!r}: retries must be an integer from 0 to "
                         f"{MAX_RETRIES}, got {retries!r}")
    for name, value in (("retry_backoff", retry_backoff),
                        ("retry_backoff_max", retry_backoff_max)):
        if not _seconds(value):
            raise RouteError(f"route {topic!r}: {name} must be a number of seconds from 0 to "
                             f"{MAX_SECONDS:g}, got {value!r}")
    return RetryPolicy(retries, float(retry_backoff), float(retry_backoff_max))  # type: ignore
