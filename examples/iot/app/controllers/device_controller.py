"""Device commands: must run one at a time, in the order they were published."""
import logging

from routemq import Message

log = logging.getLogger("app.devices")


class DeviceController:
    @staticmethod
    async def execute_command(device_id, payload, client, message: Message):
        command = payload.get("command") if isinstance(payload, dict) else payload
        log.info("command for %s: %r", device_id, command, extra={"device_id": device_id})
        if message.response_topic:  # an MQTT 5 request: tell the sender it was done
            await message.reply({"device_id": device_id, "command": command, "status": "done"})
        return command


class NotificationController:
    @staticmethod
    async def send_notification(user_id, payload, client):
        log.info("notify user %s", user_id, extra={"user_id": user_id})


class LogController:
    @staticmethod
    async def store(path, payload, client):
        """`logs/{path*}` receives every topic below logs/, e.g. path='gateway/7/syslog'."""
        log.debug("log line for %s (%d bytes)", path,
                  len(payload) if isinstance(payload, bytes) else 0)
