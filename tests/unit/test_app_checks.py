"""Configuration against application (routemq.app_checks): errors refuse a start, warnings
are what `routemq check` adds."""
import configparser
import os

import pytest

from routemq import app_checks
from routemq.app_checks import check_application, warn_application
from routemq.config import load_config
from routemq.router import Router

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def config(*argv, **env):
    """A real Config from the command line and environment only (no file is read)."""
    return load_config(list(argv), env, config_file="/nonexistent/routemq.conf",
                       config_dir="/nonexistent/conf.d")


def handler(**kwargs):
    return None


def router(*routes):
    """router(("sensors/{id}", {"qos": 1, "shared": True}), ...)"""
    r = Router()
    for pattern, options in routes:
        r.on(pattern, handler, **options)
    return r


QOS1 = router(("sensors/{id}/data", {"qos": 1, "shared": True, "worker_count": 2}),
              ("alerts/{id}", {"qos": 0}))
QOS0 = router(("sensors/{id}/data", {"qos": 0, "shared": True}))


def test_defaults_pass_with_no_warning():
    assert check_application(config(), QOS1) == []
    assert warn_application(config(), QOS1) == []


def test_session_expiry_0_refused_when_a_route_has_qos_1():
    """0 threw the broker session away on every restart: 200 of 200 lost after a kill -9."""
    errors = check_application(config("--session-expiry", "0"), QOS1)
    assert len(errors) == 1
    assert errors[0].startswith("session_expiry = 0 on the command line: the broker would "
                                "throw a worker's session away")
    assert "route 'sensors/{id}/data'" in errors[0] and "qos=1" in errors[0]


def test_session_expiry_0_allowed_where_it_loses_nothing():
    assert check_application(config("--session-expiry", "0"), QOS0) == []  # QoS 0: not kept
    # MQTT 3.1.1 has no session expiry: the broker keeps the session by its own rule.
    on_311 = config("--session-expiry", "0", "--mqtt-protocol", "3.1.1")
    assert check_application(on_311, QOS1) == []
    assert any("session_expiry does not apply" in w for w in warn_application(on_311, QOS1))


def test_short_session_expiry_is_a_warning():
    short = warn_application(config(), QOS1) + warn_application(
        config(ROUTEMQ_SESSION_EXPIRY="60"), QOS1)
    assert len(short) == 1
    assert short[0].startswith("session_expiry = 60 in environment ROUTEMQ_SESSION_EXPIRY: "
                               "a worker away longer than that")
    assert warn_application(config("--session-expiry", "300"), QOS1) == []


@pytest.mark.parametrize("topic, route", [
    ("sensors/x/data", "sensors/{id}/data"),  # a shared route
    ("alerts/dead", "alerts/{id}"),
    ("dead/letters", "{path*}"),  # a catch-all
])
def test_dead_letter_topic_matched_by_a_route_is_refused(topic, route):
    """A failing message went round and round, doubling: 251 MB, worker RSS 1.4 GB."""
    app = router(("sensors/{id}/data", {"qos": 1, "shared": True}),
                 ("alerts/{id}", {}), ("{path*}", {"qos": 0}))
    errors = check_application(config("--dead-letter-topic", topic), app)
    assert len(errors) == 1
    assert errors[0].startswith(f'dead_letter_topic = "{topic}" on the command line: route '
                                f"{route!r} (")
    assert "round and round" in errors[0]


def test_dead_letter_topic_no_route_matches_is_fine():
    assert check_application(config("--dead-letter-topic", "routemq/dead"), QOS1) == []


def test_auto_worker_count_beyond_the_instance_maximum_is_refused():
    wide = router(("bulk", {"shared": True, "worker_count": 65}))
    errors = check_application(config(), wide)
    assert len(errors) == 1 and errors[0].startswith("worker_count = \"auto\" (default): route "
                                                     "'bulk'")
    assert "more than the 64 instances" in errors[0]
    # A number caps it: the plan puts the route on every instance (and says so).
    assert check_application(config("--worker-count", "4"), wide) == []


def test_drain_timeout_beyond_the_unit_stop_budget_is_a_warning():
    assert warn_application(config("--drain-timeout", "33"), QOS1) == []
    [warning] = warn_application(config("--drain-timeout", "34"), QOS1)
    assert warning.startswith("drain_timeout = 34 on the command line: longer than the worker "
                              "unit allows (TimeoutStopSec=50 = 10 s hand-over + 5 s UNSUBACK "
                              "+ at most 33 s drain + 2 s for cancelled handlers)")


def test_overlapping_routes_on_mqtt_311_are_a_warning():
    app = router(("sensors/{id}/data", {"qos": 1}), ("sensors/{rest*}", {"qos": 1}),
                 ("other", {}))
    warnings = warn_application(config("--mqtt-protocol", "3.1.1"), app)
    [overlap] = [w for w in warnings if "overlap" in w]
    assert "'sensors/{id}/data' and 'sensors/{rest*}' overlap" in overlap
    assert not [w for w in warn_application(config(), app) if "overlap" in w]  # MQTT 5: fine


def test_no_routes_is_a_warning():
    assert warn_application(config(), Router()) == [
        "the application has no routes: workers will subscribe to nothing"]


def test_stop_budget_matches_the_unit():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(os.path.join(ROOT, "systemd", "routemq-worker@.service"))
    assert float(unit["Service"]["TimeoutStopSec"]) == app_checks.UNIT_STOP_BUDGET
