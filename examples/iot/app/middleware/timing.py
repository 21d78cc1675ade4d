"""A RouteMQ-style middleware: logs slow handlers."""
import time

from routemq.middleware import Middleware


class SlowHandlerLogger(Middleware):
    def __init__(self, threshold_seconds: float = 0.5) -> None:
        self.threshold = threshold_seconds

    async def handle(self, context, next_handler):
        started = time.monotonic()
        try:
            return await next_handler(context)
        finally:
            took = time.monotonic() - started
            if took > self.threshold:
                self.logger.warning("slow handler for %s: %.3fs", context["topic"], took)
