"""Middleware: code that wraps every handler call of a route.

A middleware receives the request `context`, a plain dict (keys `topic`, `payload`,
`params`, `client`, `route_pattern` as in RouteMQ 0.25, and `route`, the Route), and
`next_handler`, an async callable taking the context. `client` is the worker's paho client,
as RouteMQ hands it (`publish`, `_client_id`). This is RouteMQ's contract, so RouteMQ
middleware runs unchanged:

    class Timing(Middleware):
        async def handle(self, context, next_handler):
            started = time.monotonic()
            try:
                return await next_handler(context)
            finally:
                self.logger.info("took %.3fs", time.monotonic() - started)

A plain `async def mw(context, next_handler)` function is accepted as middleware too.
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any, Awaitable, Callable, Dict

Context = Dict[str, Any]
NextHandler = Callable[[Context], Awaitable[Any]]


class Middleware(ABC):
    """Base class of route middleware (RouteMQ-compatible)."""

    logger = logging.getLogger("routemq.middleware")

    @abstractmethod
    async def handle(self, context: Context, next_handler: NextHandler) -> Any:
        """Process `context`, usually by awaiting `next_handler(context)` and returning its result."""


def as_callable(middleware: Any) -> Callable[[Context, NextHandler], Awaitable[Any]]:
    """The `(context, next_handler)` coroutine function of a middleware object or function."""
    handle = getattr(middleware, "handle", None)
    if callable(handle):
        return handle
    if callable(middleware):
        return middleware
    raise TypeError(f"middleware {middleware!r} has no handle(context, next_handler) method")
