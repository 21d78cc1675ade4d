"""deploy/: the Dockerfile, the compose file and the Kubernetes StatefulSet, without a
container engine (these machines have none).

The files are read, and the command lines and environment they declare are run exactly as a
container runtime would run them, against the test's real mosquitto: the image's ENV, then
the service's or pod's own; the container paths (/srv/routemq, /run/routemq,
/var/lib/routemq) mapped to directories of the test; `routemq` on PATH runs this checkout
with the test's interpreter (the image's /usr/bin/routemq); the broker address replaced by
the test broker's loopback port; the image's /etc/routemq (the package's conffile, every
line a comment) replaced by nothing. As root, each container also gets its own hostname
(a UTS namespace), as compose's `hostname:` and a pod's name give it.

YAML is read by `MiniYaml` below (PyYAML is not in the PyPI test venv); where PyYAML is
importable, both readers must agree on every file.
"""
from __future__ import annotations

import copy
import fnmatch
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from routemq.embedded import BROKER_SETTINGS
from tests.helpers import exited, wait_until
from tests.integration.broker import HOST, MOSQUITTO, Mosquitto, free_port
from tests.integration.workers import ROOT, read_output
from tests.processes import alive

DEPLOY = ROOT / "deploy"
CAN_UNSHARE = os.geteuid() == 0 and shutil.which("unshare") is not None


# -- reading the files -----------------------------------------------------------------------

class MiniYaml:
    """The YAML the deploy files are written in: block mappings and sequences, plain scalars
    (true/false/null, integers, strings), double-quoted strings and flow collections in their
    JSON form, comments, documents (---), anchors, aliases and merge keys (<<). Anything else
    raises ValueError: a construct this reader does not know fails the test, never misreads.

    >>> MiniYaml.load_all('a: &x\\n  b: [\"c\", 1]\\nd:\\n  <<: *x\\n  e: 2  # note\\n')
    [{'a': {'b': ['c', 1]}, 'd': {'b': ['c', 1], 'e': 2}}]
    """

    KEY = re.compile(r'^([A-Za-z0-9_<][A-Za-z0-9_.\-/<]*|"[^"\\]*")\s*:(?:\s+(.*))?$')

    def __init__(self, lines: list[tuple[int, str]]) -> None:
        self.lines, self.i = lines, 0
        self.anchors: dict[str, Any] = {}

    @classmethod
    def load_all(cls, text: str) -> list[Any]:
        docs: list[list[tuple[int, str]]] = [[]]
        for raw in text.splitlines():
            body = raw.lstrip(" ")
            if raw.strip() == "---":
                docs.append([])
            elif body and not body.startswith("#"):
                if body.startswith("\t"):
                    raise ValueError(f"tab in indentation: {raw!r}")
                docs[-1].append((len(raw) - len(body), body.rstrip()))
        return [cls(lines).document() for lines in docs if lines]

    def document(self) -> Any:
        value = self.block(self.lines[0][0])
        if self.i != len(self.lines):
            raise ValueError(f"cannot read from: {self.lines[self.i][1]!r}")
        return value

    def block(self, indent: int) -> Any:
        text = self.lines[self.i][1]
        return self.sequence(indent) if text == "-" or text.startswith("- ") else \
            self.mapping(indent)

    def nested(self, indent: int) -> Any:
        """The block below a line at `indent` that ended with ':' or '-' (None if none)."""
        if self.i < len(self.lines) and self.lines[self.i][0] > indent:
            return self.block(self.lines[self.i][0])
        return None

    def sequence(self, indent: int) -> list[Any]:
        items = []
        while self.i < len(self.lines):
            at, text = self.lines[self.i]
            if at != indent or not (text == "-" or text.startswith("- ")):
                break
            rest = text[1:].lstrip(" ")
            if not rest:
                self.i += 1
                items.append(self.nested(indent))
            elif self.KEY.match(rest):  # "- key: value": a mapping starting on this line
                column = indent + len(text) - len(rest)
                self.lines[self.i] = (column, rest)
                items.append(self.mapping(column))
            else:
                self.i += 1
                items.append(self.scalar(rest))
        return items

    def mapping(self, indent: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        while self.i < len(self.lines):
            at, text = self.lines[self.i]
            if at < indent:
                break
            match = self.KEY.match(text)
            if at > indent or not match:
                raise ValueError(f"not a 'key: value' line at indentation {indent}: {text!r}")
            key = json.loads(match.group(1)) if match.group(1).startswith('"') else match.group(1)
            rest = match.group(2) or ""
            self.i += 1
            anchor = None
            if rest.startswith("&"):
                anchor, _, rest = rest[1:].partition(" ")
                rest = rest.strip()
            if rest and not rest.startswith("#"):
                value = self.scalar(rest)
            elif (self.i < len(self.lines) and self.lines[self.i][0] == indent
                  and self.lines[self.i][1].startswith("- ")):
                value = self.sequence(indent)  # a sequence may sit at its key's indentation
            else:
                value = self.nested(indent)
            if anchor:
                self.anchors[anchor] = value
            if key == "<<":
                merged.update(copy.deepcopy(value))
            elif key in out:
                raise ValueError(f"duplicate key {key!r}")
            else:
                out[key] = value
        return {**merged, **out}

    def scalar(self, text: str) -> Any:
        if text.startswith("*"):
            return copy.deepcopy(self.anchors[text[1:].split()[0]])
        if text[0] in '"[{':
            value, end = json.JSONDecoder().raw_decode(text)
            if text[end:].strip() and not text[end:].strip().startswith("#"):
                raise ValueError(f"text after a value: {text!r}")
            return value
        if text[0] in "'|>!%@`&":
            raise ValueError(f"unsupported YAML: {text!r}")
        plain = text.split(" #")[0].strip()
        if plain in ("true", "false"):
            return plain == "true"
        if plain in ("null", "~"):
            return None
        if re.fullmatch(r"-?(0|[1-9][0-9]*)", plain):
            return int(plain)
        if re.fullmatch(r"-?[0-9][0-9_.eE+:-]*", plain):
            raise ValueError(f"ambiguous number (quote it): {text!r}")
        return plain


def read_yaml(path: Path) -> list[Any]:
    """The documents of `path`, checked against PyYAML where it is installed."""
    docs = MiniYaml.load_all(path.read_text())
    try:
        import yaml
    except ImportError:
        return docs
    assert docs == list(yaml.safe_load_all(path.read_text())), f"MiniYaml misreads {path}"
    return docs


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, ARGs substituted
    with their defaults."""
    steps: list[tuple[str, str]] = []
    args: dict[str, str] = {}
    pending = ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue  # comments and blank lines end nothing, even inside a continuation
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        word, _, rest = pending.strip().partition(" ")
        pending = ""
        rest = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), rest.strip())
        if word.upper() == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
        steps.append((word.upper(), rest))
    return steps


class Image:
    """What deploy/Dockerfile builds, as far as running it goes."""

    def __init__(self, path: Path = DEPLOY / "Dockerfile") -> None:
        self.steps = dockerfile(path)
        self.env: dict[str, str] = {}
        for word, rest in self.steps:
            if word == "ENV":
                self.env.update(item.split("=", 1) for item in shlex.split(rest))
        self.workdir = self.last("WORKDIR")
        self.cmd: list[str] = json.loads(self.last("CMD"))

    def last(self, word: str) -> str:
        return [rest for w, rest in self.steps if w == word][-1]

    def all(self, word: str) -> list[str]:
        return [rest for w, rest in self.steps if w == word]

    def copies(self) -> list[tuple[str, str]]:
        """(source, destination) of each COPY (no --from or --chown in ours)."""
        return [tuple(shlex.split(rest)) for rest in self.all("COPY")]  # type: ignore[misc]


def deb_name() -> str:
    """The file name scripts/deb.sh gives the package, for setup.py's version."""
    script = (ROOT / "scripts" / "deb.sh").read_text()
    assert 'OUT=$ROOT/packaging/out' in script
    template = re.search(r"deb=\$OUT/(\S+)", script).group(1)
    version = re.search(r'version="([^"]+)"', (ROOT / "setup.py").read_text()).group(1)
    return template.replace("${version}", version)


def compose() -> dict[str, Any]:
    return read_yaml(DEPLOY / "compose.yaml")[0]


def statefulset() -> dict[str, Any]:
    return next(d for d in read_yaml(DEPLOY / "k8s" / "statefulset.yaml")
                if d["kind"] == "StatefulSet")


def pod_container(sts: dict[str, Any]) -> dict[str, Any]:
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    return container


def pod_env(container: dict[str, Any], pod_name: str) -> dict[str, str]:
    """The container's env as the kubelet resolves it (fieldRef metadata.name only)."""
    env = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            assert item["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}, item
            env[item["name"]] = pod_name
    return env


# -- running them ----------------------------------------------------------------------------

class Container:
    """One container's main process, started as the runtime starts it (see the module
    docstring): `argv` and `declared` environment exactly as the file gives them, with the
    container paths mapped to `directory`."""

    def __init__(self, directory: Path, image: Image, argv: list[str], declared: dict[str, str],
                 broker: Mosquitto, hostname: str, runtime_mode: int) -> None:
        self.dir, self.hostname = directory, hostname
        self.runtime = directory / "run"
        self.paths = {"/srv/routemq": directory / "srv", "/run/routemq": self.runtime,
                      "/var/lib/routemq": directory / "state"}
        shutil.copytree(ROOT / app_source(image), self.paths["/srv/routemq"],
                        ignore=shutil.ignore_patterns("__pycache__"))
        for path in (self.runtime, self.paths["/var/lib/routemq"], directory / "bin"):
            path.mkdir(parents=True)
        self.runtime.chmod(runtime_mode)  # what the tmpfs or emptyDir mount gives
        shim = directory / "bin" / "routemq"  # the image's /usr/bin/routemq: this checkout
        shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m routemq "$@"\n')
        shim.chmod(0o755)
        self.env = {"PATH": f"{directory / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin",
                    "HOME": str(directory), "LANG": "C.UTF-8", "PYTHONPATH": str(ROOT),
                    "HOSTNAME": hostname, **image.env, **declared}
        self.env = {key: self.mapped(value) for key, value in self.env.items()}
        assert self.env.get("MQTT_BROKER"), "the file names no broker"
        self.env.update(MQTT_BROKER=broker.host, MQTT_PORT=str(broker.port),
                        ROUTEMQ_CONFIG=os.devnull, ROUTEMQ_CONFIG_DIR=str(directory / "conf.d"))
        self.argv = [self.mapped(arg) for arg in argv]
        self.cwd = self.mapped(image.workdir)
        self.log_path = directory / "stdout"
        self.proc: subprocess.Popen | None = None

    def mapped(self, text: str) -> str:
        for inside, outside in self.paths.items():
            text = text.replace(inside, str(outside))
        return text

    def start(self) -> "Container":
        wrapper = (["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', self.hostname]
                   if CAN_UNSHARE else [])
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(wrapper + self.argv, env=self.env, cwd=self.cwd,
                                         stdout=out, stderr=subprocess.STDOUT)
        return self

    def run(self, argv: list[str]) -> subprocess.CompletedProcess:
        """Another command in the container (a probe, a health check), paths mapped."""
        return subprocess.run([self.mapped(arg) for arg in argv], env=self.env, cwd=self.cwd,
                              capture_output=True, text=True, timeout=30)

    def output(self) -> str:
        return read_output(self.log_path)

    def healths(self) -> dict[int, dict[str, Any]]:
        docs = {}
        for path in (self.runtime / "workers").glob("*.json"):
            try:
                docs[int(path.stem)] = json.loads(path.read_text())
            except (OSError, ValueError):
                pass
        return docs

    def wait(self, check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
        return wait_until(check, timeout, f"{self.hostname}: {what}",
                          abort=exited(self.proc, self.hostname, self.output),
                          explain=lambda: self.output()[-3000:])

    def handled(self, route: str) -> int:
        """Messages of `route` its workers handled (their health files)."""
        return sum(doc.get("routes", {}).get(route, {}).get("processed", 0)
                   for doc in self.healths().values())

    def stop(self, grace: float) -> int:
        """SIGTERM (docker stop, a pod's deletion); its exit status within `grace` seconds."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(grace)

    def kill(self) -> None:
        """Clean-up, by pid (`routemq run`'s workers die with it: PR_SET_PDEATHSIG)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def app_source(image: Image) -> str:
    """The repository directory the Dockerfile copies to its application root."""
    (source,) = [src for src, dest in image.copies() if dest.rstrip("/") == image.workdir]
    return source.rstrip("/")


@pytest.fixture
def containers(tmp_path: Path, broker: Mosquitto) -> Iterator[Callable[..., Container]]:
    """make(name, argv, declared env, hostname, runtime_mode) -> a started Container; all
    killed (by pid) at the end."""
    made: list[Container] = []
    image = Image()

    def make(name: str, argv: list[str], declared: dict[str, str], hostname: str,
             runtime_mode: int) -> Container:
        made.append(Container(tmp_path / name, image, argv, declared, broker, hostname,
                              runtime_mode))
        return made[-1].start()
    yield make
    for container in made:
        container.kill()


def seconds(text: str) -> float:
    """Compose's durations as used here: '50s'."""
    assert re.fullmatch(r"\d+s", text), text
    return float(text[:-1])


# -- the Dockerfile ------------------------------------------------------------------------------

def test_dockerfile_installs_the_deb_from_packaging_out_with_apt_and_copies_the_app() -> None:
    image = Image()
    assert image.last("FROM").startswith("debian:trixie")
    name = deb_name()
    (deb_src, deb_dest), = [(s, d) for s, d in image.copies() if s.endswith(".deb")]
    assert os.path.dirname(deb_src) == "packaging/out"
    assert fnmatch.fnmatch(name, os.path.basename(deb_src)), (name, deb_src)
    built = sorted((ROOT / "packaging" / "out").glob("routemq_*.deb"))
    if built:  # after `make deb`: the COPY takes exactly the package it built
        assert [p.name for p in built if fnmatch.fnmatch(p.name, os.path.basename(deb_src))] \
            == [name]
    install = next(r for r in image.all("RUN") if "apt-get install" in r)
    debs = [word for word in shlex.split(install) if word.endswith(".deb")]
    assert debs and all(fnmatch.fnmatch(f"{deb_dest}{name}", d) for d in debs), install
    # The application root: a RouteMQ project, the working directory and app_root.
    routers = ROOT / app_source(image) / "app" / "routers"
    assert sorted(p.name for p in routers.glob("*.py") if p.name != "__init__.py")
    assert image.workdir == image.env["ROUTEMQ_APP_ROOT"] == "/srv/routemq"
    # The build context keeps both (deploy/Dockerfile.dockerignore).
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert f"!{deb_src}" in ignore and f"!{app_source(image).split('/')[0]}/" in ignore
    # The runtime and state directories exist for the service user, which runs the product.
    made = next(r for r in image.all("RUN") if "install -d" in r)
    for key in ("ROUTEMQ_RUNTIME_DIR", "STATE_DIRECTORY"):
        assert "-o routemq -g routemq" in made and image.env[key] in made.split(), key
    assert image.last("USER") == "routemq" and "--uid 999" in image.all("RUN")[0]
    assert image.cmd == ["routemq", "run"] and not image.all("ENTRYPOINT")


def test_manifests_run_as_the_image_user() -> None:
    """uid 999 (the Dockerfile's useradd) where the manifests need a number."""
    security = statefulset()["spec"]["template"]["spec"]["securityContext"]
    assert security["runAsUser"] == security["runAsGroup"] == security["fsGroup"] == 999
    for service in ("routemq-1", "routemq-2"):
        (tmpfs,) = compose()["services"][service]["tmpfs"]
        assert tmpfs.startswith(Image().env["ROUTEMQ_RUNTIME_DIR"] + ":uid=999,gid=999,")


# -- the compose file ----------------------------------------------------------------------------

def test_compose_mosquitto_has_the_broker_settings_and_starts(tmp_path: Path) -> None:
    """deploy/mosquitto.conf holds every setting of `routemq run`'s own broker, and a real
    mosquitto accepts it (listener and persistence directory mapped)."""
    service = compose()["services"]["mosquitto"]
    conf = DEPLOY / service["volumes"][0].split(":")[0].removeprefix("./")
    lines = conf.read_text().splitlines()
    settings = dict(line.split(None, 1) for line in lines if line and not line.startswith("#"))
    assert {key: settings.get(key) for key, _ in BROKER_SETTINGS} == dict(BROKER_SETTINGS)
    port = free_port()
    mapped = [f"listener {port} {HOST}" if line.startswith("listener ") else
              f"persistence_location {tmp_path}/" if line.startswith("persistence_location")
              else line for line in lines]
    # As root mosquitto would switch to its own user, which cannot write the test's directory.
    (tmp_path / "mosquitto.conf").write_text("\n".join([f"user {_user()}", *mapped]))
    with open(tmp_path / "log", "wb") as log:
        proc = subprocess.Popen([MOSQUITTO, "-c", str(tmp_path / "mosquitto.conf")],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _connects(port), 10, "mosquitto on deploy/mosquitto.conf",
                   abort=exited(proc, "mosquitto", lambda: read_output(tmp_path / "log")))
    finally:
        proc.terminate()
        proc.wait(10)


def _user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def _connects(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not CAN_UNSHARE, reason="two hosts on one machine need their own "
                    "hostnames (client ids): root and unshare")
def test_compose_hosts_run_handle_qos1_and_stop_on_sigterm(containers, publisher,
                                                           broker: Mosquitto) -> None:
    """Both RouteMQ services, each `routemq run` on its own hostname: the workers start and
    subscribe, the health check passes, a QoS 1 message on a route that is not shared is
    handled once per host and shared messages spread over both, SIGTERM stops each cleanly
    within stop_grace_period."""
    image, services = Image(), compose()["services"]
    hosts = []
    for name in ("routemq-1", "routemq-2"):
        service = services[name]
        argv = service.get("command") or image.cmd
        assert argv == ["routemq", "run"]
        mode = int(re.search(r"mode=(\d+)", service["tmpfs"][0]).group(1), 8)
        hosts.append((service, containers(name, argv, service["environment"],
                                          service["hostname"], mode)))
    workers = int(services["routemq-1"]["environment"]["WORKER_COUNT"])
    for service, host in hosts:
        host.wait(lambda: len(host.healths()) == workers and all(
            d.get("state") == "running" for d in host.healths().values()),
            f"{workers} workers running")
        assert {d["client_id"] for d in host.healths().values()} == \
            {f"routemq-{host.hostname}-{n}" for n in range(1, workers + 1)}
        check = service["healthcheck"]["test"]
        assert check[0] == "CMD"
        host.wait(lambda: host.run(check[1:]).returncode == 0, "the health check passes")

    pub = publisher(broker.host, broker.port)
    pub.send("alerts/dev1", json.dumps({"level": "high"}), qos=1)
    for _, host in hosts:
        host.wait(lambda: host.handled("single:alerts/{device_id}") == 1,
                  "the alert handled once")
    for n in range(16):
        pub.send("telemetry/bulk", json.dumps([n]), qos=1)
    total = lambda: sum(h.handled("shared:telemetry/bulk") for _, h in hosts)  # noqa: E731
    wait_until(lambda: total() == 16, 30, "16 shared messages handled",
               explain=lambda: f"handled {total()}")
    assert all(h.handled("shared:telemetry/bulk") for _, h in hosts), "one host got none"

    for service, host in hosts:
        pids = [d["pid"] for d in host.healths().values()]
        assert host.stop(seconds(service["stop_grace_period"])) == 0, host.output()[-3000:]
        assert not [pid for pid in pids if alive(pid)]
        assert "Traceback" not in host.output()


# -- the StatefulSet -----------------------------------------------------------------------------

def test_statefulset_pods_are_instances_ordinal_plus_one(containers, publisher,
                                                         broker: Mosquitto) -> None:
    """Pods routemq-0 and routemq-1 run their command: workers 1 and 2, each alone in its
    runtime directory (an emptyDir: mode 0777), ready once subscribed; both handle QoS 1
    messages of a shared route; the liveness probe fails while a worker is stopped
    (SIGSTOP) and passes again after; SIGTERM stops each with exit 0 within the grace
    period."""
    sts = statefulset()
    container = pod_container(sts)
    name = sts["metadata"]["name"]
    assert sts["spec"]["replicas"] == int(pod_env(container, "x")["WORKER_COUNT"])
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    env = Image().env
    assert {env["ROUTEMQ_RUNTIME_DIR"], env["STATE_DIRECTORY"], "/tmp"} <= mounts
    pods = [containers(f"{name}-{ordinal}", container["command"],
                       pod_env(container, f"{name}-{ordinal}"), f"{name}-{ordinal}", 0o777)
            for ordinal in (0, 1)]
    for ordinal, pod in enumerate(pods):
        docs = pod.wait(lambda: pod.healths(), "a health file")
        assert list(docs) == [ordinal + 1], f"{pod.hostname}: instances {list(docs)}"
        if CAN_UNSHARE:
            assert docs[ordinal + 1]["client_id"] == f"routemq-{pod.hostname}-{ordinal + 1}"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            command = container[probe]["exec"]["command"]
            pod.wait(lambda: pod.run(command).returncode == 0, f"{probe} passes")

    pub = publisher(broker.host, broker.port)
    sent = []

    def each_handled() -> bool:
        """One more message (acknowledged by the broker) until each pod handled some: which
        member of the share gets the next one is the broker's choice."""
        pub.send("telemetry/bulk", json.dumps([len(sent)]), qos=1)
        sent.append(len(sent))
        return all(pod.handled("shared:telemetry/bulk") for pod in pods)
    wait_until(each_handled, 30, "QoS 1 messages handled by both pods", interval=0.2)
    handled = lambda: sum(pod.handled("shared:telemetry/bulk") for pod in pods)  # noqa: E731
    wait_until(lambda: handled() == len(sent), 30, f"all {len(sent)} handled",
               explain=lambda: f"handled {handled()}")

    # The watchdog's part: a worker that writes no health file for 10 s is restarted.
    liveness = container["livenessProbe"]["exec"]["command"]
    os.kill(pods[1].proc.pid, signal.SIGSTOP)
    try:
        pods[1].wait(lambda: pods[1].run(liveness).returncode != 0,
                     "the liveness probe fails on a stopped worker", timeout=30)
    finally:
        os.kill(pods[1].proc.pid, signal.SIGCONT)
    pods[1].wait(lambda: pods[1].run(liveness).returncode == 0, "liveness back", timeout=30)

    grace = sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    for pod in pods:
        assert pod.stop(grace) == 0, pod.output()[-3000:]
        assert "Traceback" not in pod.output()


def test_statefulset_command_refuses_a_pod_name_without_ordinal(tmp_path: Path) -> None:
    container = pod_container(statefulset())
    env = {"PATH": "/usr/bin:/bin", **pod_env(container, "routemq-web")}
    done = subprocess.run(container["command"], env=env, capture_output=True, text=True,
                          timeout=10, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "routemq: POD_NAME 'routemq-web' does not end in -<ordinal>\n"


def test_yaml_reader_refuses_what_it_does_not_know() -> None:
    for text in ("a: 'single'", "a: |\n  block", "a: 0755", "a: !!str x", "- a\n b: c"):
        with pytest.raises(ValueError):
            MiniYaml.load_all(text)
