"""routemq.mqtt: read-ahead hands paho the same byte stream with fewer recv() calls."""
import random

import pytest

from routemq.mqtt import ConnectOptions, MqttClient


class FakeSock:
    """recv() returns what arrived so far, up to bufsize; BlockingIOError when empty."""

    def __init__(self, arrivals: list[bytes]) -> None:
        self.arrivals = list(arrivals)
        self.pending = b""
        self.calls = 0

    def recv(self, bufsize: int) -> bytes:
        self.calls += 1
        if not self.pending:
            if not self.arrivals:
                raise BlockingIOError
            self.pending = self.arrivals.pop(0)
        data, self.pending = self.pending[:bufsize], self.pending[bufsize:]
        return data

    def close(self) -> None:  # paho closes its socket when the client is collected
        pass


def paho_client(read_ahead: bool):
    client = MqttClient(ConnectOptions(client_id="read-ahead-test"))._client
    client.read_ahead = read_ahead
    return client


def read_like_paho(client, total: int, rng: random.Random) -> bytes:
    """Ask for 1-byte and larger reads as paho's packet reader does, until `total` bytes."""
    got = b""
    while len(got) < total:
        try:
            got += client._sock_recv(rng.choice([1, 1, 2, 5, 100, 4000]))
        except BlockingIOError:
            break
    return got


@pytest.mark.parametrize("seed", range(5))
def test_same_bytes_fewer_calls(seed):
    rng = random.Random(seed)
    arrivals = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000)))
                for _ in range(20)]
    stream = b"".join(arrivals)
    plain, ahead = paho_client(False), paho_client(True)
    plain._sock, ahead._sock = FakeSock(arrivals), FakeSock(arrivals)
    assert read_like_paho(plain, len(stream), random.Random(seed)) == stream
    assert read_like_paho(ahead, len(stream), random.Random(seed)) == stream
    assert ahead._sock.calls <= len(arrivals) + 1 < plain._sock.calls
    with pytest.raises(BlockingIOError):  # drained: the driver stops reading here
        ahead._sock_recv(1)


def test_a_new_connection_drops_bytes_of_the_old_one():
    client = paho_client(True)
    client._sock = FakeSock([b"old-bytes"])
    assert client._sock_recv(3) == b"old"
    client._sock = FakeSock([b"new"])  # reconnected: the rest of "old-bytes" is void
    assert client._sock_recv(3) == b"new"


def test_end_of_stream_is_returned_as_is():
    client = paho_client(True)
    client._sock = FakeSock([b""])
    assert client._sock_recv(1) == b""
