"""routemq.payload: the fast path must give exactly what json.loads(raw) gives, else raw."""
import json

import pytest
from hypothesis import given, strategies as st

from routemq.payload import decode_payload


def reference(raw: bytes):
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return raw


def same(a, b) -> bool:
    return type(a) is type(b) and repr(a) == repr(b)  # repr: NaN == NaN, 1 != 1.0 != True


CASES = [
    b'{"t": 21}', b'[1, 2]', b'"text"', b"42", b"-1.5e3", b"true", b"null", b"NaN",
    b"  {\"a\": 1}  ", b'{"a": 1}\n', b'{"a": 1} x', b"{} {}", b"", b" ", b"on", b"\xff\xfe\xfa",
    b"\xef\xbb\xbf{\"bom\": 1}", '{"u": "é"}'.encode("utf-16"), '{"u": 1}'.encode("utf-16-le"),
    '["\U0001f600"]'.encode("utf-32"), b'{"s": "\\ud800"}', b"\xed\xa0\x80", b"[1,]",
    b'{"big": 123456789012345678901234567890}', b"\t[]\r\n",
]


def test_known_cases_match_json_loads():
    for raw in CASES:
        assert same(decode_payload(raw), reference(raw)), raw


@pytest.mark.parametrize("raw", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    (" " + "[" * 100_000 + "]" * 100_000).encode("utf-16"),  # the json.loads path
    b"[" * 100_000,  # and not even closed
])
def test_json_nested_too_deep_reaches_the_handler_as_bytes(raw):
    """json raises RecursionError on such nesting: before, that escaped decode_payload and the
    message was dead-lettered as a handler error."""
    assert decode_payload(raw) is raw


def test_nesting_within_the_limit_still_decodes():
    assert decode_payload(b"[" * 500 + b"]" * 500) == json.loads(b"[" * 500 + b"]" * 500)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=4),
    max_leaves=10)


@given(json_values, st.sampled_from(["", " ", "\n", "\t \r\n"]),
       st.sampled_from(["", " ", "\n", " x", "}"]), st.sampled_from(["utf-8", "utf-16"]))
def test_serialized_values_match_json_loads(value, before, after, encoding):
    raw = (before + json.dumps(value) + after).encode(encoding)
    assert same(decode_payload(raw), reference(raw))


@given(st.binary(max_size=40))
def test_arbitrary_bytes_match_json_loads(raw):
    assert same(decode_payload(raw), reference(raw))
