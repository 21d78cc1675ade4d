"""The application's `.env` file, as RouteMQ projects keep their settings (pure parsing).

A RouteMQ project (`routemq new`) holds `MQTT_BROKER=...`, `LOG_LEVEL=...` and its own
settings (`DB_HOST=...`) in `<app_root>/.env`. The syntax is python-dotenv's common subset:

    # a comment
    MQTT_BROKER=broker.example        # unquoted: ' #...' starts a comment
    export MQTT_PORT=1883             # `export ` is allowed and ignored
    LOG_FORMAT='%(asctime)s - %(message)s'   # single quotes: literal
    GREETING="line one\\nline two"    # double quotes: \\n \\t \\" \\\\ escapes
    MQTT_PASSWORD=                    # empty value

Not supported (an error names the line): a line without `=`, a quote that does not close on
its line (multi-line values). `${VAR}` is kept literally, not expanded.
"""
from __future__ import annotations

import re
from typing import NamedTuple

from routemq.errors import ConfigError

_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


class DotenvValue(NamedTuple):
    value: str
    line: int  # 1-based, for messages that name where a value came from


def _unquote(text: str) -> str:
    """The value part after `=`; ValueError with a short reason."""
    text = text.strip()
    quote = text[:1]
    if quote not in ("'", '"'):
        comment = re.search(r"\s#", text)
        return text[:comment.start()].rstrip() if comment else text
    out: list[str] = []
    i = 1
    while i < len(text) and text[i] != quote:
        if quote == '"' and text[i] == "\\" and i + 1 < len(text):
            out.append(_ESCAPES.get(text[i + 1], text[i:i + 2]))
            i += 2
            continue
        out.append(text[i])
        i += 1
    if i >= len(text):
        raise ValueError(f"unterminated {quote} quote (values must end on their line)")
    rest = text[i + 1:].strip()
    if rest and not rest.startswith("#"):
        raise ValueError("text after the closing quote")
    return "".join(out)


def parse_dotenv(text: str, path: str) -> dict[str, DotenvValue]:
    """Parse a `.env` file's text into {NAME: (value, line)}; the last of a repeated name
    wins, as with python-dotenv. A malformed line is a ConfigError naming `path` and line.

        >>> parse_dotenv("A=1\\nexport B = 'x #y'  # note\\n", ".env")["B"]
        DotenvValue(value='x #y', line=2)
    """
    entries: dict[str, DotenvValue] = {}
    for lineno, line in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _LINE.fullmatch(stripped)
        if match is None:
            raise ConfigError(f"{path} line {lineno}: expected NAME=VALUE",
                              source=f"env file {path}")
        name = match.group(1)
        try:
            entries[name] = DotenvValue(_unquote(match.group(2)), lineno)
        except ValueError as exc:
            raise ConfigError(f"{name} in {path} line {lineno}: {exc}", key=name,
                              source=f"env file {path}") from None
    return entries
