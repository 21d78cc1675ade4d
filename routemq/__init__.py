"""RouteMQ for systemd: MQTT routing with shared-subscription workers run as systemd units."""

__version__ = "0.1.0"
