"""A real mosquitto for integration tests, plus bulk-publish and collect helpers.

Only 127.0.0.1 is used.  The broker is a plain child process of the test run, stopped by
its pid (never by name), with its own config, persistence directory and log file.

Import from test modules as ``from tests.integration.broker import Mosquitto, publish_many``
(the repository root is on sys.path through tests/conftest.py / PYTHONPATH); waiting and
payload helpers shared with the system tests are in tests/helpers.py.
"""
from __future__ import annotations

import atexit
import ctypes
import getpass
import json
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import paho.mqtt.client as paho

from tests.helpers import seq_payloads, wait_until

MOSQUITTO = "/usr/sbin/mosquitto"
HOST = "127.0.0.1"


def free_port() -> int:
    """A port that was free a moment ago (the caller retries if another process takes it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class TlsFiles:
    """Paths of a listener's TLS material (PEM)."""

    cafile: Path
    certfile: Path
    keyfile: Path
    require_certificate: bool = False


class Mosquitto:
    """One mosquitto process on free 127.0.0.1 port(s), stopped and restarted by pid.

    ``restart()`` keeps the port(s) and the persistence directory, so persistent sessions and
    their queued messages survive when ``persistence`` is on and the broker was stopped with
    SIGTERM (mosquitto writes its database on a clean shutdown; ``kill()`` loses what was not
    autosaved yet).
    """

    def __init__(
        self,
        workdir: Path | str,
        *,
        persistence: bool = True,
        max_queued_messages: int = 100_000,
        max_inflight_messages: int | None = None,
        users: dict[str, str] | None = None,
        allow_anonymous: bool | None = None,
        tls: TlsFiles | None = None,
        subscribe_only: Sequence[str] | None = None,
        extra_config: Sequence[str] = (),
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self.port: int = 0
        self.tls_port: int | None = None
        self.persistence = persistence
        self.max_queued_messages = max_queued_messages
        self.max_inflight_messages = max_inflight_messages
        self.users = dict(users or {})
        # With a password file the broker should refuse anonymous clients unless told otherwise.
        self.allow_anonymous = (not self.users) if allow_anonymous is None else allow_anonymous
        self.tls = tls
        # Anonymous clients may subscribe only to these patterns (others get a failure SUBACK);
        # mosquitto's acl_file cannot do that (it grants every SUBSCRIBE), dynsec can.
        self.subscribe_only = list(subscribe_only) if subscribe_only is not None else None
        self.extra_config = list(extra_config)
        self.conf_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.data_dir = self.workdir / "data"
        self.proc: subprocess.Popen | None = None
        self.pki: Pki | None = None  # set by the tls_broker fixture

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, attempts: int = 5) -> "Mosquitto":
        """Start on free port(s); on a lost port race, pick new ports and retry."""
        keep_ports = self.port != 0
        for attempt in range(attempts):
            if not keep_ports:
                self.port = free_port()
                self.tls_port = free_port() if self.tls else None
            self._write_config()
            self._spawn()
            try:
                self.wait_ready()
                return self
            except RuntimeError:
                self._reap()
                if keep_ports and attempt < attempts - 1:
                    time.sleep(0.2)  # same port on restart: the old socket may linger briefly
                elif attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM by pid and wait (mosquitto saves its persistence database on the way out)."""
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reap()

    def kill(self) -> None:
        """SIGKILL by pid: a crash, nothing saved since the last autosave."""
        if self.running:
            self.proc.kill()
            self.proc.wait(5)
        self._reap()

    def restart(self) -> None:
        """Stop cleanly and start again on the same port(s) with the same persistence."""
        self.stop()
        self.start()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Return when every listener accepts TCP connections; RuntimeError if it died (start()
        retries on other ports then, so this is no test failure yet)."""
        ports = [p for p in (self.port, self.tls_port) if p]
        ready = wait_until(lambda: not self.running or all(_can_connect(self.host, p)
                                                           for p in ports),
                           timeout, "mosquitto's listeners", interval=0.02, fail=False)
        if not self.running:
            raise RuntimeError(f"mosquitto exited: {self.log_tail()}")
        if not ready:
            raise RuntimeError(f"mosquitto not ready after {timeout}s: {self.log_tail()}")

    def wait_log(self, text: str, count: int = 1, timeout: float = 10.0) -> None:
        """Until the broker's log holds `text` at least `count` times (with ``log_type
        debug`` in extra_config it logs every packet: "Received PUBACK from <client id>")."""
        wait_until(lambda: self.log_path.read_text(errors="replace").count(text) >= count,
                   timeout, f"{count} x {text!r} in the broker log",
                   explain=lambda: self.log_tail())

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> "Mosquitto":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Mosquitto(port={self.port}, tls_port={self.tls_port}, pid={self.pid})"

    # -- internals ---------------------------------------------------------------------------

    def _spawn(self) -> None:
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        _LIVE.add(self)

    def _reap(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        _LIVE.discard(self)

    def _write_config(self) -> None:
        lines = [
            # As root mosquitto would switch to user "mosquitto", which cannot write the
            # test's private tmp directory: stay the current user.
            f"user {getpass.getuser()}",
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            f"max_queued_messages {self.max_queued_messages}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_timestamp_format %H:%M:%S",
        ]
        if self.max_inflight_messages is not None:
            lines.append(f"max_inflight_messages {self.max_inflight_messages}")
        if self.persistence:
            self.data_dir.mkdir(exist_ok=True)
            lines += ["persistence true", f"persistence_location {self.data_dir}/"]
        else:
            lines.append("persistence false")
        if self.users:
            pw = self.workdir / "passwd"
            pw.write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()))
            os.chmod(pw, 0o600)
            # -U hashes the plain file in place, so no password is on a command line.
            subprocess.run(["mosquitto_passwd", "-U", str(pw)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            lines.append(f"password_file {pw}")
        if self.tls:
            lines += [
                f"listener {self.tls_port} {self.host}",
                f"cafile {self.tls.cafile}",
                f"certfile {self.tls.certfile}",
                f"keyfile {self.tls.keyfile}",
                f"require_certificate {'true' if self.tls.require_certificate else 'false'}",
            ]
        if self.subscribe_only is not None:
            lines += self._dynsec_config()
        lines += self.extra_config
        self.conf_path.write_text("\n".join(lines) + "\n")


    def _dynsec_config(self) -> list[str]:
        plugins = sorted(Path("/usr/lib").glob("*/mosquitto_dynamic_security.so"))
        if not plugins:
            raise RuntimeError("mosquitto_dynamic_security.so not found")
        acls = [{"acltype": "subscribePattern", "topic": t, "allow": True}
                for t in self.subscribe_only or ()]
        conf = {
            "defaultACLAccess": {"publishClientSend": True, "publishClientReceive": True,
                                 "subscribe": False, "unsubscribe": True},
            "clients": [], "groups": [{"groupname": "anon", "roles": [{"rolename": "sub"}]}],
            "roles": [{"rolename": "sub", "acls": acls}],
            "anonymousGroup": "anon",
        }
        path = self.workdir / "dynamic-security.json"
        path.write_text(json.dumps(conf))
        return [f"plugin {plugins[0]}", f"plugin_opt_config_file {path}"]


# Brokers still running when the test process exits are stopped by pid (atexit); if the
# process is killed outright, PR_SET_PDEATHSIG takes the broker down too.  Note: the signal
# fires when the *thread* that started the broker ends, so start brokers from the main thread.
_LIVE: set[Mosquitto] = set()
atexit.register(lambda: [b.stop() for b in list(_LIVE)])


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def _can_connect(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# -- test PKI ---------------------------------------------------------------------------------

@dataclass
class Pki:
    """A test CA with a server cert for 127.0.0.1 and a client cert, plus an unrelated CA."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path  # signs nothing we use: the "wrong CA" of the tests


def make_pki(directory: Path) -> Pki:
    """Create the test PKI with openssl (RSA 2048, valid one day)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, cwd=d,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def ca(name: str) -> None:
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", "-subj", f"/CN=RouteMQ test {name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def leaf(name: str, cn: str, ext: str) -> None:
        (d / f"{name}.ext").write_text(ext)
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", "-extfile", f"{name}.ext")

    ca("ca")
    ca("other-ca")
    leaf("server", HOST, "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
         "extendedKeyUsage=serverAuth\n")
    leaf("client", "routemq-test-client", "extendedKeyUsage=clientAuth\n")
    for key in d.glob("*.key"):
        os.chmod(key, 0o600)
    return Pki(d / "ca.crt", d / "server.crt", d / "server.key",
               d / "client.crt", d / "client.key", d / "other-ca.crt")


# -- bulk publish -----------------------------------------------------------------------------

def publish_many(
    broker: Mosquitto,
    target: str | Iterable[tuple[str, str]],
    payloads: Iterable[str] | int | None = None,
    qos: int = 1,
    *,
    protocol: str = "5",
    username: str | None = None,
    password: str | None = None,
    timeout: float = 300.0,
) -> int:
    """Publish many messages fast, all acknowledged (QoS 0: all written) before it returns.

    ``publish_many(b, "sensors/1/data", 10_000)`` sends ``seq_payloads(10_000)``;
    ``publish_many(b, "t", ["a", "b"])`` sends the given payloads; ``publish_many(b, pairs)``
    sends ``(topic, payload)`` pairs, one mosquitto_pub per run of equal topics.
    Returns the number of messages published.
    """
    if isinstance(target, str):
        if payloads is None:
            raise TypeError("publish_many(broker, topic, payloads): payloads missing")
        lines = seq_payloads(payloads) if isinstance(payloads, int) else list(payloads)
        groups: list[tuple[str, list[str]]] = [(target, lines)]
    else:
        groups = []
        for topic, payload in target:
            if groups and groups[-1][0] == topic:
                groups[-1][1].append(payload)
            else:
                groups.append((topic, [payload]))
    # A paho publisher, not mosquitto_pub -l: mosquitto_pub sometimes never exits once its
    # input ends (eclipse-mosquitto/mosquitto#1448, #2739; seen here with QoS 0).
    publisher = AckedPublisher(broker.host, broker.port, protocol=protocol, username=username,
                               password=password).start()
    total = 0
    try:
        for topic, lines in groups:
            publisher.send_all(topic, lines, qos, timeout)
            total += len(lines)
    finally:
        publisher.stop()
    return total


def publish_spread(broker: Mosquitto, route: str, n: int, start: int = 0,
                   topics: int = 8) -> int:
    """n QoS 1 messages on `topics` distinct topics of a route, seq numbers start..start+n."""
    pairs = [(f"{route}/{i % topics}", p) for i, p in enumerate(seq_payloads(n, start))]
    pairs.sort(key=lambda tp: tp[0])  # one mosquitto_pub per topic
    return publish_many(broker, pairs, qos=1)


def publish_each(broker: Mosquitto, messages: Iterable[tuple[str, bytes | str, int]]) -> None:
    """Publish (topic, payload, qos) one by one with a paho client, each acknowledged before
    the next: for payloads mosquitto_pub -l cannot carry (bytes, newlines) and for order."""
    publisher = AckedPublisher(broker.host, broker.port).start()
    try:
        for topic, payload, qos in messages:
            publisher.send(topic, payload, qos)
    finally:
        publisher.stop()


# -- a small paho subscriber, both paho versions ----------------------------------------------

V2_CALLBACKS = hasattr(paho, "CallbackAPIVersion")


def paho_client(client_id: str, protocol: str) -> paho.Client:
    """A plain paho client of either version (VERSION2 callbacks on paho 2.x)."""
    proto = paho.MQTTv5 if protocol == "5" else paho.MQTTv311
    if V2_CALLBACKS:
        return paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=proto)
    return paho.Client(client_id=client_id, protocol=proto)


@dataclass
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass
class Collector:
    """A paho subscriber in its own network thread that records every message.

    Works with paho 1.6 and 2.x (VERSION2 callbacks when available).  Use ``wait_for(n)``.
    """

    broker: Mosquitto
    topics: Sequence[tuple[str, int]]
    client_id: str = ""
    protocol: str = "5"
    messages: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._client = paho_client(self.client_id, self.protocol)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.on_message = self._on_message

    def _on_connect(self, client: paho.Client, *args: object) -> None:
        client.subscribe(list(self.topics))

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Received(msg.topic, msg.payload, msg.qos, bool(msg.retain)))
            self._cond.notify_all()

    def start(self, timeout: float = 10.0) -> "Collector":
        self._client.connect(self.broker.host, self.broker.port)
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            raise TimeoutError("collector: no SUBACK")
        return self

    def wait_for(self, n: int, timeout: float = 30.0) -> list[Received]:
        """Wait until at least ``n`` messages arrived; return them (TimeoutError otherwise)."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.messages) >= n, timeout):
                raise TimeoutError(f"collector: {len(self.messages)} of {n} messages")
            return list(self.messages)

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


# -- a publisher that knows what the broker acknowledged --------------------------------------

class AckedPublisher:
    """A QoS 1 paho publisher (paho 1.6 and 2.x) that numbers its messages and tells which of
    them the broker acknowledged (PUBACK received): the ground truth of "nothing lost".

    ``publish(topic, seq)`` sends ``{"seq": seq}``; ``acked()`` is the set of acknowledged
    seqs. ``reasons`` counts PUBACK reason codes where paho reports them (2.x): 16 is "no
    matching subscribers" (accepted, yet delivered to no one).
    """

    def __init__(self, host: str, port: int, client_id: str = "", protocol: str = "5",
                 username: str | None = None, password: str | None = None) -> None:
        self.host, self.port = host, port
        self._client = paho_client(client_id, protocol)
        if username is not None:
            self._client.username_pw_set(username, password)
        if V2_CALLBACKS:  # paho 1.6's on_publish has no reason code to count
            self._client.on_publish = self._on_publish
        self._client.max_inflight_messages_set(500)
        self._connected = threading.Event()
        self._client.on_connect = lambda *a: self._connected.set()
        self._sent: list[tuple[int, str, float, paho.MQTTMessageInfo]] = []
        self.reasons: dict[int, int] = {}

    def _on_publish(self, client: paho.Client, userdata: object, mid: int,
                    reason: object = None, properties: object = None) -> None:
        code = int(getattr(reason, "value", reason) or 0)
        self.reasons[code] = self.reasons.get(code, 0) + 1

    def start(self, timeout: float = 10.0) -> "AckedPublisher":
        self._client.connect(self.host, self.port)
        self._client.loop_start()
        if not self._connected.wait(timeout):
            raise TimeoutError(f"publisher: no CONNACK from {self.host}:{self.port}")
        return self

    def publish(self, topic: str, seq: int) -> None:
        info = self._client.publish(topic, seq_payloads(1, seq)[0], qos=1)
        self._sent.append((seq, topic, time.monotonic(), info))

    def send(self, topic: str, payload: bytes | str, qos: int, timeout: float = 10.0,
             properties: object = None) -> None:
        """One message as given (not numbered, not counted in `sent`), with paho PUBLISH
        `properties` if given; returns once the broker acknowledged it (QoS 0: once it
        left)."""
        info = self._client.publish(topic, payload, qos=qos, properties=properties)
        info.wait_for_publish(timeout)
        assert info.is_published(), f"{topic}: not acknowledged within {timeout}s"

    def send_all(self, topic: str, payloads: Sequence[bytes | str], qos: int,
                 timeout: float = 300.0) -> None:
        """Many messages as given, pipelined; returns once the broker acknowledged them all.
        Sent in windows of 20,000: a client has 65,535 message ids in flight at most."""
        deadline = time.monotonic() + timeout
        for start in range(0, len(payloads), 20_000):
            infos = [self._client.publish(topic, payload, qos=qos)
                     for payload in payloads[start:start + 20_000]]
            for info in infos:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
                assert info.is_published(), f"{topic}: not all acknowledged within {timeout}s"

    @property
    def sent(self) -> int:
        return len(self._sent)

    def acked(self, before: float | None = None) -> set[int]:
        """Seqs the broker acknowledged (published before monotonic time `before`, if given)."""
        return {seq for seq, _, at, info in list(self._sent)
                if info.is_published() and (before is None or at < before)}

    def topics(self) -> dict[int, str]:
        """seq -> topic of every message sent."""
        return {seq: topic for seq, topic, _, _ in list(self._sent)}

    def wait_acked(self, timeout: float = 30.0) -> set[int]:
        """Until every message sent so far is acknowledged or the deadline passes: the
        acknowledged seqs either way (the caller's assertion says what was not)."""
        wait_until(lambda: len(self.acked()) >= self.sent, timeout, "PUBACKs", interval=0.05,
                   fail=False)
        return self.acked()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
