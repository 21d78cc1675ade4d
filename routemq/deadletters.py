"""The dead-letter spool: failed messages kept on disk until someone looks at or replays them.

A message whose handler failed (raised, timed out) or that was rejected (over
max_payload_bytes) becomes a dead-letter record (dispatcher.dead_letter_record). The worker's
callback (`dead_letter_sink`) appends it here, one file per letter, written and fsynced
before the Dispatcher acknowledges the original; then, when `dead_letter_topic` is set, it
also publishes the copy as before. A topic alone loses letters: with no subscriber holding a
persistent session on it, the broker drops them.

    <state_dir>/dead-letters/<time_ns>-<pid>-<seq>~<route, %-quoted>.json

Names sort oldest first; the route in the name lets `routemq status` count letters per route
from a directory listing alone (a route too long for a file name is read from the file).
A letter is one JSON object: topic, qos, payload (UTF-8 text, or base64 with
payload_encoding "base64"; None with "omitted" for a rejected oversized payload, which
cannot be replayed), route, error, time, worker, attempts (how many times the handler ran),
retain, and the MQTT 5 properties it arrived with when it had any (`properties`:
user_properties, content_type, response_topic, correlation_data in base64,
message_expiry_interval; routemq.message.properties_record).

Which state directory (environment.state_directory, the daemons' rule): `state_dir` if set;
else $STATE_DIRECTORY (what the units' StateDirectory= and every daemon export); else
/var/lib/routemq for root and for the units' user `routemq`; else $XDG_STATE_HOME/routemq
(~/.local/state/routemq), the default of `routemq run` as an ordinary user. So `routemq
dead-letters` run as root or as routemq finds the units' spool.

Replay (`replay`) republishes oldest first, with the letter's QoS and properties, and
removes each letter only after the broker acknowledged its copy: killed at any point, it
loses none and republishes at most the one in flight twice. It never sets the retain flag:
a retained message replayed days later would replace a newer retained value.
"""
from __future__ import annotations

import base64
import fnmatch
import json
import os
import time
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping
from urllib.parse import quote, unquote

from routemq.dispatcher import dead_letter_payload, dead_letter_record
from routemq.environment import config_state_directory
from routemq.message import properties_from_record, record_problem as properties_problem

__all__ = ["Spool", "Letter", "dead_letter_sink", "dead_letter_record", "replay"]

SPOOL_DIR = "dead-letters"
SUFFIX = ".json"
ROUTE_IN_NAME_MAX = 150  # %-quoted characters of the route kept in a file name
REQUIRED = {"topic": str, "qos": int, "route": str, "error": str, "time": (int, float)}
PREVIEW = 40

_seq = count()


# --- pure helpers -------------------------------------------------------------------------------

def letter_name(time_ns: int, pid: int, seq: int, route: str) -> str:
    """The file name of a letter: sortable by time, unique per process, naming its route.

    >>> letter_name(1_700_000_000_000_000_000, 42, 7, "orders/{id}")
    '1700000000000000000-42-7~orders%2F%7Bid%7D.json'
    """
    quoted = quote(route, safe="")
    if len(quoted) > ROUTE_IN_NAME_MAX:
        quoted = ""  # read from the file instead
    return f"{time_ns:019d}-{pid}-{seq}~{quoted}{SUFFIX}"


def parse_name(name: str) -> tuple[str, str | None] | None:
    """(id, route or None when not in the name) of a letter's file name; None for anything
    else (temporary files, strays).

    >>> parse_name('1700000000000000000-42-7~orders%2F%7Bid%7D.json')
    ('1700000000000000000-42-7~orders%2F%7Bid%7D', 'orders/{id}')
    >>> parse_name('.tmp-x.json') is None, parse_name('17-1-0~.json')
    (True, ('17-1-0~', None))
    """
    if not name.endswith(SUFFIX) or name.startswith(".") or "~" not in name:
        return None
    ident = name[:-len(SUFFIX)]
    stamp, route = ident.split("~", 1)
    if not stamp.replace("-", "").isdigit():
        return None
    return ident, (unquote(route) if route else None)


def record_problem(doc: Any) -> str | None:
    """Why a decoded letter is not a usable record, or None.

    >>> record_problem({"topic": "a", "qos": 1, "route": "a", "error": "x", "time": 1.0})
    >>> record_problem({"topic": "a"})
    'missing qos'
    """
    if not isinstance(doc, dict):
        return "not a JSON object"
    for key, kind in REQUIRED.items():
        if key not in doc:
            return f"missing {key}"
        if not isinstance(doc[key], kind) or isinstance(doc[key], bool):
            return f"{key} is not a {getattr(kind, '__name__', 'number')}"
    if doc["qos"] not in (0, 1, 2):
        return f"qos {doc['qos']} is not 0, 1 or 2"
    if "properties" in doc:
        problem = properties_problem(doc["properties"])
        if problem:
            return f"properties: {problem}"
    return None


def payload_bytes(record: Mapping[str, Any]) -> bytes | None:
    """The original payload, or None when the record does not hold it (rejected oversized).

    >>> payload_bytes({"payload": "hé", "payload_encoding": "utf-8"})
    b'h\\xc3\\xa9'
    >>> payload_bytes({"payload": "AAE=", "payload_encoding": "base64"})
    b'\\x00\\x01'
    """
    text, encoding = record.get("payload"), record.get("payload_encoding", "utf-8")
    if not isinstance(text, str) or encoding == "omitted":
        return None
    return base64.b64decode(text) if encoding == "base64" else text.encode("utf-8")


def not_replayable(record: Mapping[str, Any]) -> str | None:
    """Why a letter cannot be replayed, or None."""
    if payload_bytes(record) is None:
        return (f"its payload was not kept ({record.get('payload_bytes', '?')} bytes, "
                "rejected as oversized)")
    return None


def preview(record: Mapping[str, Any], width: int = PREVIEW) -> str:
    """The start of the payload for a listing.

    >>> preview({"payload": '{"seq": 1}', "payload_encoding": "utf-8"})
    '{"seq": 1}'
    >>> preview({"payload": None, "payload_encoding": "omitted", "payload_bytes": 9})
    '(not kept: 9 bytes)'
    """
    encoding = record.get("payload_encoding", "utf-8")
    if encoding == "omitted" or not isinstance(record.get("payload"), str):
        return f"(not kept: {record.get('payload_bytes', '?')} bytes)"
    text = record["payload"] if encoding != "base64" else "base64:" + record["payload"]
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[:width - 3] + "..."


def route_selected(route: str | None, pattern: str | None) -> bool:
    """--route PATTERN: the route's pattern itself, or a shell-style wildcard over it.

    >>> route_selected("orders/{id}", "orders/*"), route_selected("orders/{id}", "x")
    (True, False)
    """
    if pattern is None:
        return True
    return route is not None and (route == pattern or fnmatch.fnmatchcase(route, pattern))


def spool_for(config: Any, environ: Mapping[str, str] | None = None) -> "Spool":
    """The spool of a configuration, as every daemon and command resolves it."""
    return Spool(config_state_directory(config, environ) / SPOOL_DIR)


# --- the spool ----------------------------------------------------------------------------------

@dataclass
class Letter:
    id: str
    record: dict[str, Any]

    @property
    def route(self) -> str:
        return self.record["route"]


@dataclass
class Listing:
    letters: list[Letter] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one line per damaged file


class Spool:
    """One directory of letters. Safe for several writing processes (unique names, atomic
    renames) and for readers beside them (a letter is either complete or not there)."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"Spool({str(self.directory)!r})"

    def append(self, record: Mapping[str, Any]) -> str:
        """Write one letter durably: a temporary file, fsync, rename, fsync the directory.
        Returns its id. OSError when it could not be written (nothing is left behind)."""
        self.directory.mkdir(mode=0o750, parents=True, exist_ok=True)
        name = letter_name(time.time_ns(), os.getpid(), next(_seq), str(record.get("route")))
        final = self.directory / name
        temp = self.directory / f".tmp-{name}"
        data = json.dumps(record, separators=(",", ":")).encode()
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp, final)
        except BaseException:
            _unlink(temp)
            raise
        _fsync_dir(self.directory)  # the rename itself must survive a power loss
        return name[:-len(SUFFIX)]

    def _names(self) -> Iterator[tuple[str, str | None]]:
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return
        for name in names:
            parsed = parse_name(name)
            if parsed is not None:
                yield parsed

    def letters(self, route: str | None = None) -> Listing:
        """Every letter oldest first (of routes `route_selected` by `route`); a damaged file
        is a line in `problems`, never an exception."""
        out = Listing()
        for ident, named_route in self._names():
            if named_route is not None and not route_selected(named_route, route):
                continue
            path = self.directory / (ident + SUFFIX)
            try:
                doc = json.loads(path.read_bytes())
            except FileNotFoundError:
                continue  # replayed meanwhile
            except (OSError, ValueError) as exc:
                out.problems.append(f"{path}: unreadable: {exc}")
                continue
            problem = record_problem(doc)
            if problem:
                out.problems.append(f"{path}: not a dead letter: {problem}")
            elif route_selected(doc["route"], route):
                out.letters.append(Letter(ident, doc))
        return out

    def counts(self) -> dict[str, int]:
        """Letters per route, from the file names (files are read only for routes too long
        to be in their name): cheap enough for every `routemq status`."""
        counts: dict[str, int] = {}
        for ident, route in self._names():
            if route is None:
                try:
                    route = str(json.loads((self.directory / (ident + SUFFIX)).read_bytes())
                                .get("route"))
                except (OSError, ValueError, AttributeError):
                    route = "?"
            counts[route] = counts.get(route, 0) + 1
        return counts

    def remove(self, ident: str) -> bool:
        """Remove a letter (durably); False when it was not there."""
        if parse_name(ident + SUFFIX) is None:
            raise ValueError(f"not a dead-letter id: {ident!r}")
        try:
            os.unlink(self.directory / (ident + SUFFIX))
        except FileNotFoundError:
            return False
        _fsync_dir(self.directory)
        return True


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the worker's callback ----------------------------------------------------------------------

class SpoolFailed(Exception):
    """A letter could not be written: the message must not be acknowledged."""


def dead_letter_sink(spool: Spool, client: Any, topic: str, sender: str,
                     on_spool_error: Callable[[OSError], None] | None = None
                     ) -> Callable[[dict[str, Any]], None]:
    """The Dispatcher's `dead_letter` callback: spool each record (fsynced; the Dispatcher
    acknowledges the original only after this returns), then, with a `dead_letter_topic`,
    publish the copy at QoS 1 as before. `on_spool_error` hears of a letter that could not
    be written (before the Dispatcher acknowledges: the worker withholds the ack and stops)."""
    def sink(record: dict[str, Any]) -> None:
        record["worker"] = sender
        try:
            spool.append(record)
        except OSError as exc:
            if on_spool_error is not None:
                on_spool_error(exc)
            raise SpoolFailed(f"cannot write the dead letter to {spool.directory}: "
                              f"{exc}") from exc
        if topic:
            client.publish(topic, dead_letter_payload(record), qos=1)
    return sink


# --- replay -------------------------------------------------------------------------------------

@dataclass
class ReplayResult:
    replayed: list[Letter] = field(default_factory=list)
    skipped: list[tuple[Letter, str]] = field(default_factory=list)  # (letter, why)
    problems: list[str] = field(default_factory=list)


def replay(spool: Spool, publish: Callable[[str, bytes, int, Any], None], *,
           route: str | None = None, limit: int | None = None, dry_run: bool = False,
           on_letter: Callable[[Letter], None] | None = None) -> ReplayResult:
    """Republish letters oldest first: `publish(topic, payload, qos, properties)` (paho's
    PUBLISH Properties or None) must return only once the broker acknowledged (raise
    otherwise: the letter stays, and replay stops there); then the letter is removed. A kill
    between the two leaves that one letter to be published again by the next replay: at most
    one duplicate, none lost."""
    listing = spool.letters(route)
    result = ReplayResult(problems=listing.problems)
    for letter in listing.letters:
        if limit is not None and len(result.replayed) >= limit:
            break
        why = not_replayable(letter.record)
        if why:
            result.skipped.append((letter, why))
            continue
        if not dry_run:
            payload = payload_bytes(letter.record)
            assert payload is not None
            publish(letter.record["topic"], payload, letter.record["qos"],
                    properties_from_record(letter.record.get("properties")))
            spool.remove(letter.id)
        result.replayed.append(letter)
        if on_letter is not None:
            on_letter(letter)
    return result


# --- the broker side of `routemq dead-letters replay` -------------------------------------------

CONNECT_WAIT = 15.0  # seconds for the replaying connection's CONNACK
ACK_WAIT = 30.0  # seconds for each republished message's PUBACK


class BrokerPublisher:
    """A short clean connection with the configuration's broker settings (TLS,
    credentials): `publish` returns once the broker acknowledged (QoS 1/2) or the message
    was sent (QoS 0), and raises ConnectionError otherwise. Blocking, paho's own thread."""

    def __init__(self, config: Any, client_id: str) -> None:
        import dataclasses
        import threading

        from routemq.mqtt import MqttClient
        from routemq.session import connect_options

        options = dataclasses.replace(connect_options(config, client_id), persistent=False,
                                      receive_maximum=None)
        self.answered = threading.Event()  # connected, or the first attempt failed
        self.failure: str | None = None
        self.client = MqttClient(options, on_connect=lambda *_: self.answered.set(),
                                 on_connect_failed=self._failed)
        self.url = options.url

    def _failed(self, reason: str) -> None:
        self.failure = reason  # one attempt is enough: a replay is run by hand
        self.answered.set()

    def connect(self, timeout: float = CONNECT_WAIT) -> None:
        self.client.connect_async()
        self.client.loop_start()
        if not self.answered.wait(timeout) or self.failure is not None:
            self.client.disconnect()
            raise ConnectionError(self.failure or f"no answer from the broker at {self.url} "
                                  f"within {timeout:.0f}s")

    def publish(self, topic: str, payload: bytes, qos: int, properties: Any = None) -> None:
        info = self.client.publish(topic, payload, qos=qos, properties=properties)
        try:
            info.wait_for_publish(ACK_WAIT)  # paho raises when the connection is gone
        except (RuntimeError, ValueError) as exc:
            raise ConnectionError(f"publishing to {topic} failed: {exc}") from exc
        if not info.is_published():
            raise ConnectionError(f"the broker at {self.url} did not acknowledge the "
                                  f"message to {topic} within {ACK_WAIT:.0f}s")

    def close(self) -> None:
        self.client.disconnect()
