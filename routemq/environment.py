"""Where the application runs: its virtualenv and its state directory.

An application with its own dependencies keeps them in a venv made from the Python that runs
routemq, with Debian's packages visible (paho-mqtt, sdnotify, ... come from there)::

    python3 -m venv --system-site-packages /srv/routemq/.venv
    /srv/routemq/.venv/bin/pip install -r /srv/routemq/requirements.txt

`<app_root>/.venv`, or the directory the key `venv` names, is then used by every command that
loads the application: the process re-executes itself under the venv's interpreter before
importing anything of the application (`reexec_argv`). What cannot work is refused before
that with one line (`venv_problem`), and what only the venv's interpreter can tell (routemq
or paho not importable there) is checked first thing after it (`BOOT`): either way exit 2,
which the units do not restart.

Handlers keep files in the state directory, named to them by $STATE_DIRECTORY: systemd's
`StateDirectory=routemq` (/var/lib/routemq) under the units, `state_dir` or a per-user
default elsewhere (`state_directory`).
"""
from __future__ import annotations

import os
import pwd
import sys
from pathlib import Path
from typing import Any, Mapping

# The venv's interpreter runs this instead of `-m routemq`: a venv that cannot import routemq
# or its libraries must end in one line and exit 2, not in a traceback and exit 1 (which
# systemd would restart five times). ROUTEMQ_PACKAGE_DIR is the routemq package the
# re-executing process ran: a venv whose own `pip install routemq` (another project on PyPI)
# shadows it is refused too.
BOOT = """\
import os, sys
venv, expected = sys.prefix, os.environ.get("ROUTEMQ_PACKAGE_DIR", "")
try:
    import routemq, paho.mqtt.client, configargparse
    found = os.path.dirname(os.path.realpath(routemq.__file__))
    if expected and found != expected:
        raise ImportError(f"its own package 'routemq' ({found}) hides the installed {expected}")
except ImportError as exc:
    print(f"routemq: config error: venv {venv}: {exc}; make it with `python3 -m venv "
          "--system-site-packages`, python3 being the one that runs routemq", file=sys.stderr)
    sys.exit(2)
from routemq.cli import main
sys.exit(main())
"""
ROUTEMQ_PACKAGE_DIR = os.path.dirname(os.path.realpath(__file__))


def chosen_venv(configured: str, app_root: str) -> Path | None:
    """The venv to run under: `configured` (relative to the application root), else
    `<app_root>/.venv` when it exists, else None.

    >>> chosen_venv("", "/nonexistent") is None
    True
    >>> chosen_venv("env", "/srv/app")
    PosixPath('/srv/app/env')
    """
    if configured:
        return Path(app_root, configured)
    default = Path(app_root, ".venv")
    return default if default.is_dir() else None


def running_in(venv: Path) -> bool:
    """True when this interpreter is the venv's (sys.prefix is the venv directory)."""
    return os.path.realpath(sys.prefix) == os.path.realpath(venv)


def _pyvenv_cfg(venv: Path) -> dict[str, str]:
    cfg = venv / "pyvenv.cfg"
    if not cfg.is_file():
        raise FileNotFoundError
    pairs = (line.split("=", 1) for line in cfg.read_text(errors="replace").splitlines()
             if "=" in line)
    return {k.strip().lower(): v.strip() for k, v in pairs}


def venv_problem(venv: Path, version: tuple[int, int] = sys.version_info[:2]) -> str | None:
    """Why routemq cannot run under `venv`, as far as its files tell, or None."""
    if not venv.is_dir():
        return "no such directory"
    try:
        cfg = _pyvenv_cfg(venv)
    except (FileNotFoundError, OSError):
        return "not a virtualenv (no pyvenv.cfg); make it with `python3 -m venv " \
               "--system-site-packages`"
    python = venv / "bin" / "python"
    if not os.access(python, os.X_OK):
        return f"{python} is missing or not executable (a broken venv: make it again)"
    made_with = cfg.get("version_info") or cfg.get("version") or ""
    if tuple(int(p) for p in made_with.split(".")[:2] if p.isdigit()) != version:
        return (f"made with Python {made_with or '(unknown)'}, routemq runs on Python "
                f"{version[0]}.{version[1]}: make it with the python3 that runs routemq")
    if cfg.get("include-system-site-packages", "false").lower() != "true":
        return ("made without --system-site-packages: routemq's own libraries (paho-mqtt, "
                "...) would not be importable; make it with `python3 -m venv "
                "--system-site-packages`")
    return None


def reexec_argv(venv: Path, args: list[str]) -> list[str]:
    """The command line that runs `routemq <args>` under the venv's interpreter."""
    return [str(venv / "bin" / "python"), "-c", BOOT, *args]


def reexec_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """Its environment: ROUTEMQ_PACKAGE_DIR names this routemq package for BOOT's check."""
    return dict(environ, ROUTEMQ_PACKAGE_DIR=ROUTEMQ_PACKAGE_DIR)


UNIT_USER = "routemq"  # systemd/sysusers.d: the units run as this user
UNIT_STATE_DIR = Path("/var/lib/routemq")  # the units' StateDirectory=routemq


def user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def state_directory(configured: str, environ: Mapping[str, str], euid: int,
                    user: str | None = None) -> Path:
    """Where handlers keep their files (and the dead-letter spool lives): `state_dir` if set;
    else systemd's $STATE_DIRECTORY (the units' StateDirectory=routemq); else
    /var/lib/routemq for root and for the units' user (a `sudo -u routemq` shell finds the
    units' directory); else $XDG_STATE_HOME/routemq (~/.local/state/routemq).

    >>> state_directory("", {"STATE_DIRECTORY": "/var/lib/routemq"}, 998)
    PosixPath('/var/lib/routemq')
    >>> state_directory("", {"HOME": "/nonexistent"}, 998, "routemq")
    PosixPath('/var/lib/routemq')
    >>> state_directory("", {"HOME": "/home/ann"}, 1000)
    PosixPath('/home/ann/.local/state/routemq')
    """
    if configured:
        return Path(configured)
    if environ.get("STATE_DIRECTORY"):
        # systemd joins several StateDirectory= entries with ':'; ours is the first.
        return Path(environ["STATE_DIRECTORY"].split(":")[0])
    if euid == 0 or user == UNIT_USER:
        return UNIT_STATE_DIR
    base = environ.get("XDG_STATE_HOME") or os.path.join(environ.get("HOME", "/"),
                                                         ".local", "state")
    return Path(base, "routemq")


def config_state_directory(config: Any, environ: Mapping[str, str] | None = None) -> Path:
    """The state directory of a configuration (its `state_dir`), for this process's user:
    what the dead-letter spool and the poison journals live in."""
    euid = os.geteuid()
    return state_directory(getattr(config, "state_dir", "") or "",
                           os.environ if environ is None else environ, euid, user_name(euid))
