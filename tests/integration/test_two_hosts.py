"""Two hosts, one broker: each host is a network namespace with its own hostname (UTS
namespace) running `routemq run`; the broker lives in a third namespace. Every address is
inside namespaces this test creates; nothing touches the machine's own network.

    ns B (broker) 10.77.1.1 --veth-- 10.77.1.2 ns H1 "host1"   routemq run --workers 2
                  10.77.2.1 --veth-- 10.77.2.2 ns H2 "host2"   routemq run --workers 2
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.integration.broker import MOSQUITTO, MOSQUITTO_PUB, free_port, seq_payloads
from tests.integration.workers import APP, ROOT, tally

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"),
                                reason="network namespaces need root and iproute2")


def sh(*args):
    subprocess.run(args, check=True, capture_output=True, timeout=30)


class Net:
    def __init__(self, tag):
        self.broker, self.hosts = f"{tag}b", [f"{tag}h1", f"{tag}h2"]

    def __enter__(self):
        for ns in (self.broker, *self.hosts):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        for n, host in enumerate(self.hosts, 1):
            # Both ends are made inside namespaces: the root namespace never sees them.
            sh("ip", "-n", self.broker, "link", "add", f"v{n}", "type", "veth", "peer", "name",
               "v0", "netns", host)
            sh("ip", "-n", self.broker, "addr", "add", f"10.77.{n}.1/24", "dev", f"v{n}")
            sh("ip", "-n", host, "addr", "add", f"10.77.{n}.2/24", "dev", "v0")
            sh("ip", "-n", self.broker, "link", "set", f"v{n}", "up")
            sh("ip", "-n", host, "link", "set", "v0", "up")
        return self

    def __exit__(self, *exc):
        for ns in (self.broker, *self.hosts):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


class Host:
    def __init__(self, net, n, broker_port, directory: Path):
        self.n, self.dir = n, directory
        self.out = directory / "out"
        self.out.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "ROUTEMQ_"))}
        env.update(PYTHONPATH=str(ROOT), MQTT_BROKER=f"10.77.{n}.1", MQTT_PORT=str(broker_port),
                   MQTT_GROUP_NAME="fleet", ROUTEMQ_APP_ROOT=str(APP), LOG_LEVEL="INFO",
                   ROUTEMQ_RUNTIME_DIR=str(directory / "run"), ROUTEMQ_CONFIG=os.devnull,
                   ROUTEMQ_CONFIG_DIR=str(directory / "conf.d"), TEST_OUT=str(self.out),
                   ROUTEMQ_LOG_FORMAT="json")
        self.log = open(directory / "run.log", "wb")
        script = f'hostname host{n} && exec "$0" -m routemq run --workers 2'
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", net.hosts[n - 1], "unshare", "--uts", "sh", "-c", script,
             sys.executable], env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout=40):
        """Until both workers run the master's plan (subscriptions acknowledged)."""
        deadline = time.monotonic() + timeout
        while True:
            docs = [self.dir / "run" / "workers" / f"{i}.json" for i in (1, 2)]
            try:
                docs = [json.loads(d.read_text()) for d in docs]
            except (FileNotFoundError, ValueError):
                docs = []
            if [d.get("state") for d in docs] == ["running", "running"]:
                # the hostname is what keeps the two hosts' client ids apart
                assert [d["client_id"] for d in docs] == [f"routemq-host{self.n}-{i}"
                                                          for i in (1, 2)]
                return
            assert self.proc.poll() is None, (self.dir / "run.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (self.dir / "run.log").read_text()[-3000:]
            time.sleep(0.1)

    def rows(self):
        rows = []
        for path in self.out.glob("*.log"):
            for line in path.read_text().splitlines():
                worker, route, topic, seq = line.split(" ", 3)
                rows.append((f"host{self.n}-{worker}", route, topic, seq))
        return rows

    def wait_working(self, timeout=40):
        """Until both of its workers have handled a message."""
        deadline = time.monotonic() + timeout
        while len({r[0] for r in self.rows()}) < 2:
            assert self.proc.poll() is None, (self.dir / "run.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (self.dir / "run.log").read_text()[-3000:]
            time.sleep(0.1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def test_two_hosts_share_the_load_and_one_can_leave(tmp_path):
    tag = f"rmq{os.getpid() % 100000}"
    with Net(tag) as net:
        port = free_port()
        conf = tmp_path / "mosquitto.conf"
        conf.write_text(f"user root\nlistener {port}\nallow_anonymous true\n"
                        f"persistence true\npersistence_location {tmp_path}/\n")
        broker = subprocess.Popen(["ip", "netns", "exec", net.broker, MOSQUITTO, "-c",
                                   str(conf)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        hosts = []
        sent = [0]
        stop = threading.Event()

        def publish():
            while not stop.is_set():
                lines = seq_payloads(100, sent[0])
                subprocess.run(["ip", "netns", "exec", net.broker, MOSQUITTO_PUB, "-h",
                                "127.0.0.1", "-p", str(port), "-q", "1", "-V", "5", "-t",
                                f"work/{sent[0] // 100 % 5}", "-l"],
                               input=("\n".join(lines) + "\n").encode(), check=True,
                               timeout=60)
                sent[0] += len(lines)
                time.sleep(0.05)

        publisher = threading.Thread(target=publish, daemon=True)
        try:
            time.sleep(0.5)
            hosts = [Host(net, n, port, tmp_path / f"host{n}") for n in (1, 2)]
            for host in hosts:
                host.wait_ready()
            publisher.start()
            for host in hosts:
                host.wait_working()
            assert hosts[1].stop() == 0  # host 2 leaves mid-stream
            time.sleep(2)
            stop.set()
            publisher.join(60)
            deadline = time.monotonic() + 60
            while True:
                rows = hosts[0].rows() + hosts[1].rows()
                _, per_message = tally([r for r in rows if r[1] == "work"])
                missing = set(range(sent[0])) - {int(seq) for _, seq in per_message}
                if not missing or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert not missing, f"{len(missing)} of {sent[0]} lost, e.g. {sorted(missing)[:10]}"
            per_worker, _ = tally([r for r in rows if r[1] == "work"])
            assert {"host1-1", "host1-2", "host2-1", "host2-2"} <= set(per_worker), per_worker
            assert hosts[0].stop() == 0
        finally:
            stop.set()
            for host in hosts:
                host.kill()
            broker.terminate()
            broker.wait(10)
