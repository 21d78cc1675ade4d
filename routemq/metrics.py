"""Per-worker and per-route counters and latency figures.

`WorkerMetrics` keeps the API of RouteMQ's shared-subscriptions guide
(`record_message_processed`, `record_error`, `get_worker_stats`) so the guide's
`WorkerMetricsMiddleware` works as documented, and adds
what a worker's health file reports: per-route counts and latency percentiles over the
last 1,000 messages, received / processed / error totals and the recent message rate.
"""
from __future__ import annotations

import os
import resource
import time
from collections import deque
from typing import Any, Awaitable, Callable

from routemq.middleware import Context, Middleware

WINDOW = 1000  # latency samples kept per route (the guide keeps the last 1000 too)


def process_usage() -> tuple[int, float]:
    """This process's resident memory (bytes; 0 when unknown) and CPU time (seconds)."""
    try:
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        rss = 0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return rss, round(usage.ru_utime + usage.ru_stime, 3)


class LatencyWindow:
    """The last WINDOW durations (seconds), with average and percentiles."""

    __slots__ = ("samples", "total", "count")

    def __init__(self) -> None:
        self.samples: deque[float] = deque(maxlen=WINDOW)
        self.total = 0.0
        self.count = 0

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)
        self.total += seconds
        self.count += 1

    def summary(self) -> dict[str, float]:
        """Milliseconds: lifetime average, and p50 / p99 / max over the window."""
        if not self.samples:
            return {"avg_ms": 0.0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
        ordered = sorted(self.samples)
        n = len(ordered)
        return {
            "avg_ms": round(self.total / self.count * 1000, 3),
            "p50_ms": round(ordered[n // 2] * 1000, 3),
            "p99_ms": round(ordered[min(n - 1, (n * 99) // 100)] * 1000, 3),
            "max_ms": round(ordered[-1] * 1000, 3),
        }


class RouteStats:
    """One route's figures in one worker: `retries` attempts scheduled again after a failure
    (a message retried twice counts 2), `retrying` messages waiting in backoff now."""

    __slots__ = ("processed", "errors", "retries", "retrying", "latency")

    def __init__(self) -> None:
        self.processed = 0
        self.errors = 0
        self.retries = 0
        self.retrying = 0
        self.latency = LatencyWindow()

    def snapshot(self) -> dict[str, Any]:
        return {"processed": self.processed, "errors": self.errors, "retries": self.retries,
                "retrying": self.retrying, **self.latency.summary()}


class RateMeter:
    """Messages per second over the last ~10 seconds, from a running total."""

    def __init__(self, horizon: float = 10.0) -> None:
        self.horizon = horizon
        self.points: deque[tuple[float, int]] = deque()

    def rate(self, total: int, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self.points.append((now, total))
        while len(self.points) > 2 and now - self.points[1][0] >= self.horizon:
            self.points.popleft()
        t0, n0 = self.points[0]
        return round((total - n0) / (now - t0), 2) if now > t0 else 0.0


class WorkerMetrics:
    """Counters of one worker process (also usable across workers, as in the guide)."""

    def __init__(self) -> None:
        self.received = 0
        self.processed = 0
        self.errors = 0
        self.unrouted = 0
        self.rejected = 0
        self.routes: dict[str, RouteStats] = {}
        self._rate = RateMeter()
        # The guide's per-worker view, keyed by worker id.
        self.message_counts: dict[Any, int] = {}
        self.processing_times: dict[Any, deque[float]] = {}
        self.error_counts: dict[Any, int] = {}

    def route(self, key: str) -> RouteStats:
        stats = self.routes.get(key)
        if stats is None:
            stats = self.routes[key] = RouteStats()
        return stats

    def handled(self, key: str, seconds: float, ok: bool) -> None:
        """One message of route `key` finished (ok or with an error) after `seconds`."""
        stats = self.route(key)
        stats.latency.add(seconds)
        if ok:
            stats.processed += 1
            self.processed += 1
        else:
            stats.errors += 1
            self.errors += 1

    # --- the guide's API ---------------------------------------------------------------
    def record_message_processed(self, worker_id: Any, topic: str,
                                 processing_time: float) -> None:
        self.message_counts[worker_id] = self.message_counts.get(worker_id, 0) + 1
        self.processing_times.setdefault(worker_id, deque(maxlen=WINDOW)).append(
            processing_time)

    def record_error(self, worker_id: Any, topic: str, error: str) -> None:
        self.error_counts[worker_id] = self.error_counts.get(worker_id, 0) + 1

    def get_worker_stats(self) -> dict[str, Any]:
        workers = set(self.message_counts) | set(self.error_counts)
        stats: dict[str, Any] = {"total_workers": len(workers),
                                 "total_messages": sum(self.message_counts.values()),
                                 "worker_distribution": {}}
        for worker_id in workers:
            count = self.message_counts.get(worker_id, 0)
            errors = self.error_counts.get(worker_id, 0)
            times = self.processing_times.get(worker_id) or ()
            stats["worker_distribution"][worker_id] = {
                "messages_processed": count,
                "errors": errors,
                "error_rate": errors / count if count else 0,
                "avg_processing_time": sum(times) / len(times) if times else 0,
            }
        return stats

    # --- for the health file ----------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "processed": self.processed,
            "errors": self.errors,
            "unrouted": self.unrouted,
            "rejected": self.rejected,
            "rate": self._rate.rate(self.processed + self.errors),
            "routes": {key: s.snapshot() for key, s in sorted(self.routes.items())},
        }


class WorkerMetricsMiddleware(Middleware):
    """The guide's middleware: records each message's processing time or error."""

    def __init__(self, metrics_collector: WorkerMetrics, worker_id: Any = None) -> None:
        self.metrics = metrics_collector
        self.worker_id = worker_id if worker_id is not None else os.getpid()

    async def handle(self, context: Context,
                     next_handler: Callable[[Context], Awaitable[Any]]) -> Any:
        started = time.monotonic()
        try:
            result = await next_handler(context)
        except Exception as exc:
            self.metrics.record_error(self.worker_id, context["topic"], str(exc))
            raise
        self.metrics.record_message_processed(self.worker_id, context["topic"],
                                              time.monotonic() - started)
        return result
