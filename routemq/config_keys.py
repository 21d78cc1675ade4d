"""Configuration keys: names, defaults, environment variables and value parsers (pure).

Each parser takes the raw string from the command line, the environment or a config file and
returns the typed value, or raises ValueError with a short reason that routemq.config puts in a
one-line error naming the key and where the value came from.
"""
from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

Parse = Callable[[str], Any]
# Worker instance numbers run 1..MAX_INSTANCES: the polkit rule lets the routemq user start
# routemq-worker@N for these N only, and max_workers / worker_count cannot exceed it.
MAX_INSTANCES = 64
TRUE, FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def _bounds(lo: float, hi: float | None, strict: bool) -> str:
    def show(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else str(x)
    if hi is not None:
        return f"between {show(lo)} and {show(hi)}"
    return f"{'>' if strict else '>='} {show(lo)}"


def _int(lo: int, hi: int | None = None) -> Parse:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip(), 10)
        except ValueError:
            raise ValueError("not an integer") from None
        if value < lo or (hi is not None and value > hi):
            raise ValueError(f"must be {_bounds(lo, hi, False)}")
        return value
    return parse


def _float(lo: float, hi: float | None = None, *, strict: bool = False) -> Parse:
    """A finite number >= lo (> lo when strict) and <= hi: an upper bound keeps a typo such
    as 1e300 from overflowing a timer, a lower one keeps 1e-6 from turning a loop into a spin."""
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError("not a number") from None
        if not math.isfinite(value) or value < lo or (strict and value == lo) \
                or (hi is not None and value > hi):
            raise ValueError(f"must be a finite number {_bounds(lo, hi, strict)}")
        return value
    return parse


def bool_value(raw: str) -> bool:
    """true/yes/1/on or false/no/0/off, any case."""
    word = raw.strip().lower()
    if word in TRUE or word in FALSE:
        return word in TRUE
    raise ValueError("not a boolean (use true/false, yes/no, on/off or 1/0)")


def _choice(choices: Mapping[str, str], *, upper: bool = False) -> Parse:
    """Case-insensitive choice; `choices` maps accepted spellings to the canonical value."""
    def parse(raw: str) -> str:
        word = raw.strip().lower()
        if word in choices:
            return choices[word]
        shown = sorted({v.upper() if upper else v for v in choices.values()})
        raise ValueError("must be one of " + ", ".join(shown))
    return parse


def _text(raw: str) -> str:
    return raw.strip()


def _optional(raw: str) -> str | None:
    return raw.strip() or None  # "" means "not set", so a conf.d file can unset a path


def _secret(raw: str) -> str | None:
    return raw or None  # never stripped: spaces may be part of a password


def _nonempty(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw.strip()


_HOST_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?")


def _host(raw: str) -> str:
    """A host name, an IPv4 address or an IPv6 address (`::1`, or `[::1]`, kept as `::1`).

    No scheme, port, user or path: the port is mqtt_port and TLS is the tls key, and a
    `host:1883` here would otherwise fail only at connect time, in a restarting unit.
    """
    host = raw.strip()
    if not host:
        return host  # "" = not configured
    if "://" in host:
        raise ValueError("give the host name only, without a scheme: use mqtt_port for the "
                         "port and tls = true for TLS")
    if "@" in host:
        raise ValueError("give the host name only: the user name is mqtt_username")
    bracketed = re.fullmatch(r"\[([^\]]*)\](.*)", host)
    if bracketed:
        if bracketed.group(2):
            raise ValueError("give the host name only, without a port: use mqtt_port")
        host = bracketed.group(1)
        if ":" not in host:
            raise ValueError("brackets are for an IPv6 address only")
    if ":" in host:
        if _ipv6(host):
            return host
        if host.count(":") == 1 or re.search(r":\d+$", host):
            raise ValueError("give the host name only, without a port: use mqtt_port")
        raise ValueError("not a valid IPv6 address")
    if not _HOST_NAME.fullmatch(host):
        raise ValueError("not a host name or IP address (letters, digits, '-', '_' and '.')")
    return host


def _ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)  # also takes a zone: fe80::1%eth0
    except ValueError:
        return False
    return True


def _share_name(raw: str) -> str:
    name = raw.strip()
    if not name or any(c in name for c in "/+#"):
        raise ValueError("not a valid MQTT share name (non-empty, without '/', '+' or '#')")
    return name


def _client_id_prefix(raw: str) -> str:
    prefix = raw.strip()
    if not prefix or any(c.isspace() or c in "/+#" for c in prefix):
        raise ValueError("must be non-empty, without spaces, '/', '+' or '#'")
    return prefix


def _worker_count(raw: str) -> str | int:
    if raw.strip().lower() == "auto":
        return "auto"
    try:
        return _int(1, MAX_INSTANCES)(raw)
    except ValueError:
        raise ValueError(f'must be "auto" or an integer between 1 and {MAX_INSTANCES}') from None


def _module_path(raw: str) -> str:
    path = raw.strip()
    if not path or not all(part.isidentifier() for part in path.split(".")):
        raise ValueError("not a dotted module path such as app.routers")
    return path


def _topic_name(raw: str) -> str:
    topic = raw.strip()
    if topic and (any(c in topic for c in "+#\0") or topic.startswith("$")):
        raise ValueError("not a topic to publish to (no '+', '#' or leading '$')")
    return topic


@dataclass(frozen=True)
class Key:
    """One configuration key: its default, parser, help, and the guide's env name if it had one."""

    name: str
    default: Any
    parse: Parse
    help: str
    env: str = ""  # empty: ROUTEMQ_<NAME>
    cli: bool = True  # False: environment and files only (a flag would show in `ps`)
    secret: bool = False

    @property
    def env_var(self) -> str:
        return self.env or "ROUTEMQ_" + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


LEVELS = {n.lower(): n for n in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")}
PROTOCOLS = {"5": "5", "v5": "5", "5.0": "5", "mqttv5": "5",
             "3.1.1": "3.1.1", "311": "3.1.1", "v311": "3.1.1", "v3.1.1": "3.1.1",
             "mqttv311": "3.1.1"}

KEYS: tuple[Key, ...] = (
    Key("mqtt_broker", "", _host, 'broker host; "" = not configured (run starts its own)',
        "MQTT_BROKER"),
    Key("mqtt_port", 1883, _int(1, 65535), "broker port", "MQTT_PORT"),
    Key("mqtt_username", None, _optional, "user name", "MQTT_USERNAME"),
    Key("mqtt_password", None, _secret, "password (environment or config file only)",
        "MQTT_PASSWORD", cli=False, secret=True),
    Key("mqtt_password_file", None, _optional, "file holding the password",
        "MQTT_PASSWORD_FILE"),
    Key("mqtt_group_name", "routemq", _share_name, "shared-subscription group",
        "MQTT_GROUP_NAME"),
    Key("worker_count", "auto", _worker_count,
        f'"auto" or the number of worker instances (1..{MAX_INSTANCES})', "WORKER_COUNT"),
    Key("min_workers", 1, _int(1, MAX_INSTANCES), f"autoscaler minimum (1..{MAX_INSTANCES})",
        "MIN_WORKERS"),
    Key("max_workers", 8, _int(1, MAX_INSTANCES),
        f"autoscaler maximum (1..{MAX_INSTANCES}: instance numbers stop at {MAX_INSTANCES})",
        "MAX_WORKERS"),
    Key("log_level", "INFO", _choice(LEVELS, upper=True), "log level", "LOG_LEVEL"),
    Key("log_format", "auto", _choice({w: w for w in ("auto", "json", "text")}),
        "auto (text on a terminal, else JSON), json or text"),
    Key("app_root", None, _nonempty, "application root directory (default: current dir)"),
    Key("router_directory", "app.routers", _module_path, "package holding the router modules"),
    Key("venv", "", _text,
        'the application\'s virtualenv (relative to app_root); "" = app_root/.venv if present'),
    Key("state_dir", "", _text, 'handlers\' files ($STATE_DIRECTORY); "" = systemd\'s '
        "StateDirectory, /var/lib/routemq as root, ~/.local/state/routemq otherwise"),
    Key("runtime_dir", "/run/routemq", _nonempty, "plan and health files"),
    Key("client_id_prefix", "routemq", _client_id_prefix,
        "client id is <prefix>-<hostname>-<instance>"),
    # At most an hour: the broker notices a silently dead worker only after 1.5 x keepalive,
    # and holds that worker's in-flight messages until then.
    Key("keepalive", 30, _int(5, 3600), "MQTT keepalive, seconds (5..3600)"),
    Key("mqtt_protocol", "5", _choice(PROTOCOLS), "5 or 3.1.1"),
    Key("session_expiry", 3600, _int(0, 2**32 - 1),
        "seconds a persistent session outlives a disconnect"),
    Key("tls", False, bool_value, "use TLS (implied by tls_ca_file or tls_cert_file)"),
    Key("tls_ca_file", None, _optional, "CA certificates file"),
    Key("tls_cert_file", None, _optional, "client certificate file"),
    Key("tls_key_file", None, _optional, "client key file"),
    Key("tls_insecure", False, bool_value, "skip the broker host name check"),
    Key("max_inflight", 64, _int(1, 65535), "messages in flight per worker"),
    # Time bounds: a typo such as 1e300 would overflow the event loop's timers, and a tiny
    # health_interval or scale_interval turns an idle loop into a spin (1e-6: 88 % of a core).
    Key("drain_timeout", 20.0, _float(0, 3600),
        "seconds to finish in-flight messages on stop (0..3600; the worker unit allows 33)"),
    Key("handler_timeout", 60.0, _float(0, 86400),
        "seconds a handler may run (0..86400); 0 = no limit"),
    Key("max_payload_bytes", 1048576, _int(1, 268435455), "larger payloads are rejected"),
    Key("dead_letter_topic", "", _topic_name, 'failed messages go here; "" = off'),
    Key("poison_threshold", 2, _int(0, 1000),
        "worker deaths while a message was in flight that make it a dead letter; 0 = off"),
    Key("health_interval", 1.0, _float(0.1, 60), "seconds between health files (0.1..60)"),
    Key("autoscale", False, bool_value, "start and stop instances with the load"),
    Key("scale_interval", 30.0, _float(1, 3600), "seconds between scaling decisions (1..3600)"),
    Key("scale_cooldown", 60.0, _float(0, 86400),
        "seconds between two scaling actions (0..86400)"),
    Key("target_rate_per_worker", 100.0, _float(0.01, 1e6),
        "messages/s per worker (0.01..1000000)"),
    Key("metrics_textfile_dir", "", _text, 'Prometheus textfile directory; "" = off'),
)
KEY_BY_NAME = {key.name: key for key in KEYS}
