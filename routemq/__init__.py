"""RouteMQ for systemd: MQTT routing with shared-subscription workers run as systemd units."""

from routemq.message import Message

__all__ = ["Message"]
__version__ = "0.1.0"
