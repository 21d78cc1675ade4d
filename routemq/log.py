"""Logging: one JSON object per line on stdout, the journal's priority prefix, text on a TTY.

setup_logging() installs one handler on the root logger. Records below the level are dropped
by the logger itself, before a record is built or a message formatted. Fields given with
``extra={"route": ..., "topic": ...}`` become JSON keys (or ``(route=..., topic=...)`` in text).
"""
from __future__ import annotations

import logging
import os
import sys
import time
from datetime import datetime, timezone
from typing import IO, Any, Mapping

try:  # python-json-logger 3.x; the old module still imports there but warns
    from pythonjsonlogger.json import JsonFormatter
except ImportError:  # 2.0.x (Debian 12) has only the old path
    from pythonjsonlogger.jsonlogger import JsonFormatter

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
CONTEXT_FIELDS = ("worker_id", "role")
# Attributes every LogRecord has on this Python (3.12 added taskName), plus the ones
# Formatter.format sets; anything else on a record came from `extra=` or our context filter.
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message",
                                                                               "asctime"}


def syslog_priority(levelno: int) -> int:
    """sd-daemon(3) priority for a logging level: DEBUG 7, INFO 6, WARNING 4, ERROR 3, CRITICAL 2."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    return 6 if levelno >= logging.INFO else 7


def is_journal_stream(stream: IO[str], environ: Mapping[str, str] | None = None) -> bool:
    """True when `stream` is the journal: JOURNAL_STREAM ("dev:ino") matches its fstat.

    A child whose stdout was redirected inherits JOURNAL_STREAM too, hence the comparison.
    """
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in value.split(":"))
        info = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):  # unset, malformed, or no file descriptor
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items()
            if k not in _RESERVED and k not in CONTEXT_FIELDS and not k.startswith("_")}


def _with_priority(text: str, levelno: int) -> str:
    # journald reads a prefix per line, so a multi-line text record keeps its level throughout.
    prefix = f"<{syslog_priority(levelno)}>"
    return "\n".join(prefix + line for line in text.split("\n"))


class JsonLineFormatter(JsonFormatter):  # type: ignore[misc, valid-type]
    """timestamp, level, logger, message, worker_id, role, then extras and exc_info."""

    def __init__(self, *, journal: bool = False) -> None:
        super().__init__(json_ensure_ascii=False)
        self.journal = journal

    def add_fields(self, log_record: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        # Overridden whole: the two library versions order and rename fields differently.
        log_record["timestamp"] = datetime.fromtimestamp(record.created, tz=timezone.utc) \
            .isoformat(timespec="microseconds").replace("+00:00", "Z")
        log_record["level"] = record.levelname
        log_record["logger"] = record.name
        log_record["message"] = record.message or ""  # 2.0 sets None for a dict message
        for name in CONTEXT_FIELDS:
            if getattr(record, name, None) is not None:
                log_record[name] = getattr(record, name)
        log_record.update(_extras(record))
        log_record.update(message_dict)  # exc_info, stack_info, or a dict given as the message

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return _with_priority(text, record.levelno) if self.journal else text


class TextFormatter(logging.Formatter):
    """``2026-11-27 20:00:00 INFO worker[3] routemq.worker: message (route=r, topic=t)``."""

    def __init__(self, *, journal: bool = False) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        role = getattr(record, "role", None)
        worker_id = getattr(record, "worker_id", None)
        tag = (role or "worker") + f"[{worker_id}] " if worker_id is not None \
            else f"{role} " if role else ""
        text = f"{stamp} {record.levelname} {tag}{record.name}: {record.getMessage()}"
        extras = _extras(record)
        if extras:
            text += " (" + ", ".join(f"{k}={v}" for k, v in extras.items()) + ")"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text += "\n" + record.exc_text
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return _with_priority(text, record.levelno) if self.journal else text


class _ContextFilter(logging.Filter):
    """Adds worker_id and role to every record that does not carry its own."""

    def __init__(self, worker_id: str | int | None, role: str | None) -> None:
        super().__init__()
        self.context = {"worker_id": worker_id, "role": role}

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in self.context.items():
            if value is not None and not hasattr(record, name):
                setattr(record, name, value)
        return True


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    name = str(level).strip().upper()
    if name not in LEVELS:
        raise ValueError(f"log level {level!r}: must be one of {', '.join(LEVELS)}")
    return int(getattr(logging, name))


def setup_logging(level: str | int = "INFO", *, fmt: str = "auto",
                  worker_id: str | int | None = None, role: str | None = None,
                  stream: IO[str] | None = None,
                  environ: Mapping[str, str] | None = None) -> None:
    """Send the root logger to `stream` (default sys.stdout) in JSON or text.

    fmt: "auto" (text on a TTY, else JSON; the journal gets JSON), "json" or "text".
    Calling again replaces the handler installed before; other handlers are left alone.
    """
    if fmt not in ("auto", "json", "text"):
        raise ValueError(f"log format {fmt!r}: must be auto, json or text")
    stream = sys.stdout if stream is None else stream
    journal = is_journal_stream(stream, environ)
    text = fmt == "text" or (fmt == "auto" and not journal and _isatty(stream))
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter(journal=journal) if text
                         else JsonLineFormatter(journal=journal))
    handler.addFilter(_ContextFilter(worker_id, role))
    handler._routemq = True  # type: ignore[attr-defined]  # marks ours for the next call
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_routemq", False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(_level(level))


def get_logger(name: str) -> logging.Logger:
    """logging.getLogger, under the name routemq modules use (e.g. "routemq.worker")."""
    return logging.getLogger(name)
