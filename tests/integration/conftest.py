"""Fixtures that run a REAL mosquitto on a free 127.0.0.1 port (see broker.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import pytest

from tests.integration.broker import (AckedPublisher, Collector, Mosquitto, Pki, TlsFiles,
                                      make_pki)
from tests.integration.workers import Fleet, Run

# Password used by ``auth_broker``; tests check it never leaks into logs or reprs.
AUTH_USER = "routemq"
AUTH_PASSWORD = "pw-Zq8#not-in-logs"
T = TypeVar("T")


def _factory(build: Callable[..., T], end: Callable[[T], object],
             start: bool = True) -> Iterator[Callable[..., T]]:
    """The body of a factory fixture: yields make(*args, **kwargs), which builds
    build(n, *args, **kwargs) (n: how many were made before), keeps it and starts it; at
    teardown end(each), failed starts included."""
    made: list[Any] = []

    def make(*args: Any, **kwargs: Any) -> T:
        made.append(build(len(made), *args, **kwargs))
        return made[-1].start() if start else made[-1]
    yield make
    for thing in made:
        end(thing)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Test CA, server cert (SAN IP:127.0.0.1), client cert, and an unrelated second CA."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """Factory: ``make_broker(**Mosquitto kwargs)`` starts a broker; all stopped at teardown."""
    yield from _factory(lambda n, **kwargs: Mosquitto(tmp_path / f"broker{n}", **kwargs),
                        Mosquitto.stop)


@pytest.fixture
def broker(make_broker: Callable[..., Mosquitto]) -> Mosquitto:
    """A fresh broker with persistence on (survives ``restart()``), max_queued 100,000."""
    return make_broker(persistence=True)


@pytest.fixture(scope="session")
def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One broker for the whole run, no persistence: for cheap tests using unique topics."""
    b = Mosquitto(tmp_path_factory.mktemp("shared-broker"), persistence=False).start()
    yield b
    b.stop()


@pytest.fixture
def tls_broker(make_broker: Callable[..., Mosquitto], pki: Pki) -> Mosquitto:
    """Plain listener on ``port`` and TLS listener on ``tls_port`` (server cert from ``pki``).

    ``tls_broker.pki`` is the Pki: ``ca_cert`` verifies it, ``other_ca_cert`` does not.
    """
    b = make_broker(persistence=True,
                    tls=TlsFiles(pki.ca_cert, pki.server_cert, pki.server_key))
    b.pki = pki
    return b


@pytest.fixture
def auth_broker(make_broker: Callable[..., Mosquitto]) -> Mosquitto:
    """Password file with AUTH_USER/AUTH_PASSWORD; anonymous clients are refused."""
    return make_broker(users={AUTH_USER: AUTH_PASSWORD})


@pytest.fixture
def collector() -> Iterator[Callable[..., Collector]]:
    """Factory: ``collector(broker, [(filter, qos)], protocol="5")`` -> a started Collector."""
    yield from _factory(lambda n, broker, topics, **kwargs: Collector(broker, list(topics),
                                                                      **kwargs),
                        Collector.stop)


@pytest.fixture
def publisher() -> Iterator[Callable[[str, int], AckedPublisher]]:
    """make(host, port) -> a started AckedPublisher; all stopped at the end."""
    yield from _factory(lambda n, host, port: AckedPublisher(host, port), AckedPublisher.stop)


def _fleets(kind: type, broker: Mosquitto, tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    """make(workers, **config) -> a `kind` (Fleet or Run) in its own directory; each one's
    cleanup() at the end."""
    name = kind.__name__.lower()
    yield from _factory(lambda n, workers, **config: kind(broker, tmp_path / f"{name}{n}",
                                                          workers, **config),
                        lambda fleet: fleet.cleanup(), start=False)


@pytest.fixture
def fleet_factory(broker: Mosquitto, tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    """make(workers, **config) -> Fleet of `routemq worker` processes, killed at the end."""
    yield from _fleets(Fleet, broker, tmp_path)


@pytest.fixture
def make_run(broker: Mosquitto, tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    """make(workers, **config) -> Run (`routemq run`), stopped at the end."""
    yield from _fleets(Run, broker, tmp_path)
