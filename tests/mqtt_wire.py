"""MQTT packets written by hand for the tests (and bench/decode.py): an encoder of our own,
independent of the decoder in routemq.packets that it checks."""
from __future__ import annotations


def vbi(n: int) -> bytes:
    """MQTT's variable byte integer: 7 bits per byte, the high bit says "more follows".

    >>> vbi(0), vbi(127), vbi(128), vbi(16_384)
    (b'\\x00', b'\\x7f', b'\\x80\\x01', b'\\x80\\x80\\x01')
    """
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(first: int, body: bytes) -> bytes:
    """A whole packet: its first byte, the remaining length, the body."""
    return bytes([first]) + vbi(len(body)) + body
