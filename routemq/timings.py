"""How long a stopping worker may take, part by part (no I/O, no paho: the configuration
check and `routemq run` read these without loading the worker).

A SIGTERM'd worker waits up to HANDOVER_WAIT for the master to move its routes, up to
UNSUBACK_WAIT for the broker to confirm what it released, then drain_timeout for its
in-flight messages, then CANCEL_GRACE for handlers that were cancelled. The worker unit's
TimeoutStopSec (UNIT_STOP_BUDGET) must cover the sum, or systemd kills it mid-drain and its
messages run again.
"""
HANDOVER_WAIT = 10.0
UNSUBACK_WAIT = 5.0
CANCEL_GRACE = 2.0
UNIT_STOP_BUDGET = 50.0  # TimeoutStopSec= in systemd/routemq-worker@.service
DRAIN_BUDGET = UNIT_STOP_BUDGET - HANDOVER_WAIT - UNSUBACK_WAIT - CANCEL_GRACE
