"""The embedded default broker: a private mosquitto on a free loopback port, for `routemq run`
when no MQTT_BROKER is configured. Development only: anonymous, loopback, removed on exit.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time

log = logging.getLogger("routemq.embedded")

CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto")


class EmbeddedBrokerError(Exception):
    pass


def find_mosquitto() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class EmbeddedBroker:
    host = "127.0.0.1"

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.directory = ""

    def start(self, timeout: float = 10.0) -> None:
        binary = find_mosquitto()
        if binary is None:
            raise EmbeddedBrokerError("no broker configured (MQTT_BROKER) and mosquitto is not "
                                      "installed: apt install mosquitto, or set MQTT_BROKER")
        self.directory = tempfile.mkdtemp(prefix="routemq-broker-")
        self.port = free_port(self.host)
        conf = os.path.join(self.directory, "mosquitto.conf")
        with open(conf, "w", encoding="utf-8") as f:
            # `user`: mosquitto started as root drops to "mosquitto", which could not write
            # its persistence file here; stay the user we are.
            f.write(f"user {_user()}\nlistener {self.port} {self.host}\nallow_anonymous true\n"
                    f"persistence true\npersistence_location {self.directory}/\n"
                    f"log_dest file {self.directory}/mosquitto.log\n")
        # Its own session: Ctrl-C in the terminal must not stop the broker before the workers
        # have drained into it.
        self.proc = subprocess.Popen([binary, "-c", conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EmbeddedBrokerError(f"mosquitto exited with {self.proc.returncode}; see "
                                          f"{self.directory}/mosquitto.log")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                log.info("started a private mosquitto on %s:%d (the embedded default; "
                         "set MQTT_BROKER to use your own)", self.host, self.port)
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise EmbeddedBrokerError(f"mosquitto did not listen on {self.host}:{self.port} "
                                  f"within {timeout:.0f}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)


def _user() -> str:
    import pwd
    return pwd.getpwuid(os.getuid()).pw_name
