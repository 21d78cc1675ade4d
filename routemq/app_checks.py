"""Checks of the configuration against the application (pure: no I/O).

Some settings are wrong only for some applications: `session_expiry = 0` is harmless with
QoS 0 routes only and loses every queued QoS 1 message at each restart otherwise. The worker,
the master and `routemq run` refuse what `check_application` returns (exit 2, one line each);
`routemq check` also prints what `warn_application` returns: settings that are legal but put
the at-least-once guarantee at risk, as far as the configuration can tell.

    errors = check_application(config, router)    # ["session_expiry = 0 (default): ..."]
    warnings = warn_application(config, router)
"""
from __future__ import annotations

import json
from itertools import combinations
from typing import Any

from routemq.config import where
from routemq.config_keys import MAX_INSTANCES
from routemq.router import Route, Router
from routemq.timings import (CANCEL_GRACE, DRAIN_BUDGET, HANDOVER_WAIT, UNIT_STOP_BUDGET,
                             UNSUBACK_WAIT)
from routemq.topics import filters_overlap

# A session must outlive the time a worker can be away: a restart-limited unit, a reboot or an
# upgrade takes minutes, and the master plans a dead instance out (and drains it) after 60 s.
MIN_SAFE_SESSION_EXPIRY = 300
SHOWN_PAIRS = 3  # overlapping route pairs named in one warning


def setting(config: Any, name: str) -> str:
    """`session_expiry = 0 in /etc/routemq/conf.d/x.conf`: a key, its value, its source."""
    value = getattr(config, name)
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # as the operator wrote it: drain_timeout = 40, not 40.0
    return f"{name} = {json.dumps(value)} {where(config.sources.get(name, 'default'))}"


def _named(route: Route) -> str:
    return f"route {route.topic!r} ({route.handler_name})"


def _acked_routes(router: Router) -> list[Route]:
    """Routes whose messages the broker keeps for an absent worker (QoS 1 and 2)."""
    return [r for r in router.routes if r.qos >= 1]


def check_application(config: Any, router: Router) -> list[str]:
    """What makes this configuration unusable with this application, one line each."""
    errors = []
    acked = _acked_routes(router)
    if config.session_expiry == 0 and config.mqtt_protocol == "5" and acked:
        errors.append(
            f"{setting(config, 'session_expiry')}: the broker would throw a worker's session "
            f"away, with the QoS 1 and 2 messages queued in it, at every restart; "
            f"{_named(acked[0])} has qos={acked[0].qos}. Use at least "
            f"{MIN_SAFE_SESSION_EXPIRY} (default 3600)")
    if config.dead_letter_topic:
        looping = [r for r in router.routes if r.matches(config.dead_letter_topic) is not None]
        if looping:
            errors.append(
                f"{setting(config, 'dead_letter_topic')}: {_named(looping[0])} matches it, so "
                f"a failing message would go round and round (its dead letter failing again); "
                f"use a topic no route matches")
    if config.worker_count == "auto":
        wide = [r for r in router.routes if r.shared and r.worker_count > MAX_INSTANCES]
        if wide:
            errors.append(
                f"{setting(config, 'worker_count')}: {_named(wide[0])} asks for "
                f"worker_count={wide[0].worker_count}, more than the {MAX_INSTANCES} instances "
                f"routemq runs; lower it or set worker_count to a number")
    return errors


def warn_application(config: Any, router: Router) -> list[str]:
    """Legal settings that endanger at-least-once delivery (or its promptness), one line each."""
    warnings = []
    acked = _acked_routes(router)
    if not router.routes:
        warnings.append("the application has no routes: workers will subscribe to nothing")
    if config.mqtt_protocol == "5" and 0 < config.session_expiry < MIN_SAFE_SESSION_EXPIRY \
            and acked:
        warnings.append(
            f"{setting(config, 'session_expiry')}: a worker away longer than that (a failed "
            f"unit, a reboot, an upgrade) loses the QoS 1 messages queued for it; "
            f"use at least {MIN_SAFE_SESSION_EXPIRY}")
    if config.mqtt_protocol == "3.1.1":
        if acked:
            warnings.append(
                f"{setting(config, 'mqtt_protocol')}: session_expiry does not apply; the broker "
                f"decides how long a disconnected worker's session and its queued messages "
                f"last (mosquitto: persistent_client_expiration, default forever)")
        pairs = [(a, b) for a, b in combinations(router.routes, 2)
                 if filters_overlap(a.mqtt_topic, b.mqtt_topic)]
        if pairs:
            shown = ", ".join(f"{a.topic!r} and {b.topic!r}" for a, b in pairs[:SHOWN_PAIRS])
            more = f" and {len(pairs) - SHOWN_PAIRS} more" if len(pairs) > SHOWN_PAIRS else ""
            warnings.append(
                f"{setting(config, 'mqtt_protocol')}: routes {shown}{more} overlap, and "
                f"without MQTT 5 subscription identifiers a message that matches both is "
                f"handled by the most specific route only when one worker holds both; "
                f"use mqtt_protocol = 5")
    if config.drain_timeout > DRAIN_BUDGET:
        warnings.append(
            f"{setting(config, 'drain_timeout')}: longer than the worker unit allows "
            f"(TimeoutStopSec={UNIT_STOP_BUDGET:.0f} = {HANDOVER_WAIT:.0f} s hand-over + "
            f"{UNSUBACK_WAIT:.0f} s UNSUBACK + at most {DRAIN_BUDGET:.0f} s drain + "
            f"{CANCEL_GRACE:.0f} s for cancelled handlers): systemd "
            f"kills a stopping worker mid-drain and its messages run again; raise "
            f"TimeoutStopSec with `systemctl edit routemq-worker@.service`")
    return warnings
