"""The embedded default broker: a private mosquitto on a free loopback port, for `routemq run`
when no MQTT_BROKER is configured. Development only: anonymous, loopback, removed on exit.

Configured for the at-least-once guarantee (see BROKER_SETTINGS): mosquitto's default
max_queued_messages 1000 drops, silently, what a stopped worker's session should keep.
It gets SIGTERM when `routemq run` dies (PR_SET_PDEATHSIG), even of kill -9.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from routemq.backends import die_with_parent
from routemq.errors import EmbeddedBrokerError

log = logging.getLogger("routemq.embedded")

# What a persistent session needs so the broker keeps its QoS 1 messages while the worker is
# offline (restarting, stopped, SIGSTOP'ed), from mosquitto.conf(5):
BROKER_SETTINGS = (
    # Per client, beyond those in flight. Far above any max_inflight; 0 would mean no
    # limit at all, which mosquitto's manual advises against.
    ("max_queued_messages", "1000000"),
    ("max_queued_bytes", "0"),          # no byte limit (the default, stated)
    ("persistence", "true"),            # sessions and queued messages survive a restart
    ("autosave_interval", "10"),        # a broker crash loses at most ~10 s of them (1800)
    ("autosave_on_changes", "false"),   # ... counted in seconds, not changes
    # true makes 2.0.21 drop shared-subscription messages queued for an offline member
    ("per_listener_settings", "false"),
    ("queue_qos0_messages", "false"),   # QoS 0 promises nothing; do not crowd the queue
)

CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto")


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
                    f"persistence_location {self.directory}/\n"
                    f"log_dest file {self.directory}/mosquitto.log\n"
                    f"pid_file {self.directory}/mosquitto.pid\n"
                    + "".join(f"{key} {value}\n" for key, value in BROKER_SETTINGS))
        # Its own session: Ctrl-C in the terminal must not stop the broker before the workers
        # have drained into it. But it must not outlive us.
        self.proc = subprocess.Popen([binary, "-c", conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=die_with_parent(signal.SIGTERM))
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
