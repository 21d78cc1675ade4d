"""Device, notification and log routes."""
from app.controllers.device_controller import (DeviceController, LogController,
                                                NotificationController)
from routemq.router import Router

router = Router()

with router.group(prefix="devices") as devices:
    # Commands must be processed in order: NOT shared.
    devices.on("{device_id}/commands", DeviceController.execute_command, qos=2)

# Notifications can run in parallel.
router.on("notifications/{user_id}", NotificationController.send_notification,
          shared=True, worker_count=2, qos=1)

# A trailing {name*} matches every level below logs/.
router.on("logs/{path*}", LogController.store, shared=True, worker_count=2)
