"""A stand-in for systemd's NOTIFY_SOCKET in integration tests."""
import socket
import threading
import time

from tests.helpers import wait_until


class NotifySocket:
    """A real unix datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages = []  # (monotonic time, line)
        self.running = True
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while self.running:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            now = time.monotonic()
            self.messages.extend((now, line) for line in data.decode().splitlines())

    def wait_for(self, line: str, timeout: float = 20) -> float:
        """The time `line` first arrived, waiting up to `timeout` seconds for it."""
        return wait_until(lambda: next(iter(self.times(line)), None), timeout, repr(line),
                          interval=0.02,
                          explain=lambda: str([m for _, m in self.messages][-20:]))

    def times(self, line):
        return [t for t, got in self.messages if got == line]

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()
