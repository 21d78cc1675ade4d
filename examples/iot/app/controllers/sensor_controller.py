"""Handlers for sensor traffic: the seed's SensorController."""
import logging

log = logging.getLogger("app.sensors")


class SensorController:
    @staticmethod
    async def process_data(device_id, payload, client):
        """One reading from one device; shared across workers (order does not matter)."""
        value = payload.get("value") if isinstance(payload, dict) else None
        log.info("reading from %s: %s", device_id, value,
                 extra={"device_id": device_id})
        return value

    @staticmethod
    async def handle_alert(device_id, payload, client):
        """Alerts are rare and ordered: one worker, in arrival order."""
        log.warning("alert from %s: %s", device_id, payload, extra={"device_id": device_id})

    @staticmethod
    async def process_bulk(payload, client):
        """A batch of readings; heavy, so spread over more workers."""
        count = len(payload) if isinstance(payload, (list, bytes)) else 1
        log.info("bulk telemetry: %d items", count)
        return count
