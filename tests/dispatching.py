"""What the unit tests of the Dispatcher share: a plain delivery, a dispatcher that records
its acks and dead letters, and a deadline wait inside a test's event loop."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Callable

from routemq.dispatcher import Dispatcher
from routemq.router import Router


@dataclass
class D:
    """A delivery as the dispatcher reads it (routemq.mqtt.Message's fields it uses)."""

    topic: str
    payload: bytes = b"{}"
    qos: int = 1
    mid: int = 0
    subscription_ids: tuple = ()
    retain: bool = False
    dup: bool = False
    properties: Any = None


def make(router: Router, **kw: Any) -> tuple[Dispatcher, list, list]:
    """A Dispatcher holding every route of `router`: (dispatcher, acked, dead letters)."""
    acked: list = []
    dead: list = []
    dispatcher = Dispatcher(router, client="C", ack=acked.append, dead_letter=dead.append, **kw)
    dispatcher.hold(router.routes)
    return dispatcher, acked, dead


async def until(condition: Callable[[], Any], timeout: float = 5.0) -> None:
    """Poll `condition` on the running loop until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)
