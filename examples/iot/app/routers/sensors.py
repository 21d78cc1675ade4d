"""Sensor routes, as in the seed's shared-subscription guide."""
from app.controllers.sensor_controller import SensorController
from app.middleware.timing import SlowHandlerLogger
from routemq.router import Router

router = Router()

# Regular subscription: a single instance, in order.
router.on("alerts/{device_id}", SensorController.handle_alert, qos=1)

# Shared subscription spread over 3 workers.
router.on("sensors/{device_id}/data", SensorController.process_data,
          shared=True, worker_count=3, qos=1, middleware=[SlowHandlerLogger()])

# High-throughput route with more workers.
router.on("telemetry/bulk", SensorController.process_bulk,
          shared=True, worker_count=4, qos=1)
