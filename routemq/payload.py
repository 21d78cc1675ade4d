"""Payload decoding, the rule of RouteMQ's shared-subscriptions guide: JSON when it parses,
else the raw bytes."""
from __future__ import annotations

import json
from typing import Any

# json.loads(bytes) first sniffs the encoding (UTF-8/16/32, BOM) in Python code, then runs a
# whitespace regex on both ends; for the usual payload (UTF-8 JSON, nothing around it) the
# scanner alone gives the same value in about half the time.
_raw_decode = json.JSONDecoder().raw_decode
_JSON_WHITESPACE = " \t\n\r"


def decode_payload(raw: bytes) -> Any:
    """`b'{"t": 21}'` -> `{'t': 21}`; `b'\\xff'` or `b'on'` -> the bytes unchanged.

    Invalid UTF-8, text that is not JSON and JSON nested too deep to decode are not errors:
    the handler gets the bytes. The result is always what `json.loads(raw)` gives, or `raw`
    where that raises.
    """
    try:
        text = raw.decode("utf-8")
        value, end = _raw_decode(text)
        if end == len(text) or not text[end:].strip(_JSON_WHITESPACE):
            return value
    except (ValueError, TypeError, AttributeError):
        pass  # leading whitespace, a BOM, UTF-16/32, not JSON at all: json.loads decides
    except Exception:
        # RecursionError (JSON nested deeper than the interpreter's limit: [[[[...), or a
        # MemoryError: json.loads would raise the same, and the payload is still the
        # handler's to judge, not a handler error. An except clause costs nothing until raised.
        return raw
    return _loads_or_raw(raw)


def _loads_or_raw(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except Exception:  # JSONDecodeError, UnicodeDecodeError, RecursionError, ...
        return raw
