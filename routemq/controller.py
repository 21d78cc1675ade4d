"""Controller: the base class RouteMQ projects' controllers extend (`routemq new` makes one).

RouteMQ 0.25's Controller offers exactly a class-level `logger`; handlers are its static or
class methods, called as `await handler(**params, payload=payload, client=client)`.
"""
from __future__ import annotations

import logging


class Controller:
    """Base class of controllers (RouteMQ-compatible): a shared `logger` for the handlers."""

    logger = logging.getLogger("routemq.controller")
