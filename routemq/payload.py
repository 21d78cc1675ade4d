"""Payload decoding: the seed's rule, JSON when it parses, else the raw bytes."""
from __future__ import annotations

import json
from typing import Any


def decode_payload(raw: bytes) -> Any:
    """`b'{"t": 21}'` -> `{'t': 21}`; `b'\\xff'` or `b'on'` -> the bytes unchanged.

    Invalid UTF-8 and text that is not JSON are not errors: the handler gets the bytes.
    """
    try:
        return json.loads(raw)
    except (ValueError, TypeError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return raw
