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
from pathlib import Path

import pytest

from tests.helpers import (assert_all_handled, exited, mosquitto_pub_runs, parse_records,
                           seq_payloads, tally, wait_until)
from tests.integration.broker import MOSQUITTO, free_port
from tests.integration.workers import APP, ROOT, read_output

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

    def output(self):
        return read_output(self.dir / "run.log")

    def wait(self, check, timeout, what):
        return wait_until(check, timeout, f"host{self.n}: {what}",
                          abort=exited(self.proc, f"host{self.n}'s routemq run", self.output),
                          explain=lambda: self.output()[-3000:])

    def wait_ready(self, timeout=40):
        """Until both workers run the master's plan (subscriptions acknowledged)."""
        def running():
            try:
                docs = [json.loads((self.dir / "run" / "workers" / f"{i}.json").read_text())
                        for i in (1, 2)]
            except (FileNotFoundError, ValueError):
                return None
            return docs if [d.get("state") for d in docs] == ["running", "running"] else None
        docs = self.wait(running, timeout, "both workers running")
        # the hostname is what keeps the two hosts' client ids apart
        assert [d["client_id"] for d in docs] == [f"routemq-host{self.n}-{i}" for i in (1, 2)]

    def rows(self):
        return [row for path in self.out.glob("*.log")
                for row in parse_records(path.read_text(), lambda w: f"host{self.n}-{w}")]

    def handled(self):
        return len([r for r in self.rows() if r.route == "work"])

    def wait_working(self, timeout=40):
        """Until both of its workers have handled a message."""
        self.wait(lambda: len({r.worker for r in self.rows()}) >= 2, timeout,
                  "both workers handling messages")

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

        def publish_in_broker_ns(topic, lines, qos=1):
            for argv, stdin in mosquitto_pub_runs(topic, lines, host="127.0.0.1", port=port,
                                                  qos=qos):
                done = subprocess.run(["ip", "netns", "exec", net.broker, *argv], input=stdin,
                                      timeout=60, capture_output=True)
            return done.returncode == 0

        def publish():
            while not stop.wait(0.05):
                lines = seq_payloads(100, sent[0])
                assert publish_in_broker_ns(f"work/{sent[0] // 100 % 5}", lines)
                sent[0] += len(lines)

        publisher = threading.Thread(target=publish, daemon=True)
        try:
            wait_until(lambda: publish_in_broker_ns("ready", ["x"], qos=0), 10,
                       "the broker accepting connections")
            hosts = [Host(net, n, port, tmp_path / f"host{n}") for n in (1, 2)]
            for host in hosts:
                host.wait_ready()
            publisher.start()
            for host in hosts:
                host.wait_working()
            assert hosts[1].stop() == 0  # host 2 leaves mid-stream
            mark = hosts[0].handled()  # the stream goes on, on host 1 alone
            hosts[0].wait(lambda: hosts[0].handled() >= mark + 500, 30, "500 more handled")
            stop.set()
            publisher.join(60)

            def work_rows():
                return [r for h in hosts for r in h.rows() if r.route == "work"]
            wait_until(lambda: len({r.seq for r in work_rows()}) >= sent[0], 60,
                       f"all {sent[0]} messages handled")
            rows = work_rows()
            assert_all_handled(rows, range(sent[0]))
            per_worker, _ = tally(rows)
            assert {"host1-1", "host1-2", "host2-1", "host2-2"} <= set(per_worker), per_worker
            assert hosts[0].stop() == 0
        finally:
            stop.set()
            for host in hosts:
                host.kill()
            broker.terminate()
            broker.wait(10)
