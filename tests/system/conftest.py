"""Fixtures of the system stage: the built .deb, the cached rootfs images, a booted machine
per Debian suite with the package installed, and helpers to read its journal.

Needs root (overlayfs, nspawn, cgroups). `ROUTEMQ_DEB=/path/routemq_x_all.deb` skips the
build; `ROUTEMQ_SUITES=trixie` limits the suites (default: trixie and bookworm).
"""
from __future__ import annotations

import glob
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from machine import Machine, cleanup_stale
from system_helpers import DEB_IN_MACHINE, ROOT, STREAM_IN_MACHINE

# Anonymous clients stay allowed (the tests publish anonymously); a client that names a user
# must give that user's password. Not per_listener_settings: with it, mosquitto 2.0.21
# (trixie) silently drops shared-subscription messages queued for an offline member.
MOSQUITTO_CONF = """allow_anonymous true
password_file /etc/mosquitto/passwd
"""
SUITES = os.environ.get("ROUTEMQ_SUITES", "trixie bookworm").split()


@pytest.fixture(scope="session")
def deb() -> Path:
    if os.geteuid() != 0:
        pytest.fail("the system stage needs root (systemd-nspawn, overlayfs, cgroups)")
    if os.environ.get("ROUTEMQ_DEB"):
        return Path(os.environ["ROUTEMQ_DEB"])
    subprocess.run([str(ROOT / "scripts" / "deb.sh")], check=True, stdout=subprocess.DEVNULL)
    found = glob.glob(str(ROOT / "packaging" / "out" / "routemq_*_all.deb"))
    assert len(found) == 1, found
    return Path(found[0])


@pytest.fixture(scope="session")
def images(deb: Path) -> None:
    cleanup_stale()
    subprocess.run([str(ROOT / "scripts" / "nspawn-image.sh"), *SUITES], check=True,
                   stdout=subprocess.DEVNULL)


@pytest.fixture(scope="module", params=SUITES)
def machine(request: pytest.FixtureRequest, images: None, deb: Path) -> Iterator[Machine]:
    """A booted container of one suite with mosquitto running and the .deb copied in."""
    m = Machine(request.param)
    try:
        m.start()
        m.put(deb, DEB_IN_MACHINE)
        m.put(ROOT / "tests" / "system" / "stream.py", STREAM_IN_MACHINE)
        # An installed Debian has /etc/hosts (the installer writes it); bookworm's minbase
        # image does not, and without it "localhost" (a RouteMQ project's .env) does not
        # resolve.
        m.sh("[ -e /etc/hosts ] || printf '127.0.0.1 localhost\\n::1 localhost\\n' > /etc/hosts")
        m.write("/etc/mosquitto/conf.d/routemq-test.conf", MOSQUITTO_CONF)
        m.run("mosquitto_passwd", "-b", "-c", "/etc/mosquitto/passwd", "routemq", "s3cret-pw")
        m.run("chown", "mosquitto:", "/etc/mosquitto/passwd")
        m.run("systemctl", "restart", "mosquitto")
        yield m
    finally:
        m.stop()
