"""routemq.environment: which venv, whether it can work, and the state directory (no I/O but
the venv's own files in a temporary directory)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from routemq.environment import chosen_venv, reexec_argv, state_directory, venv_problem

HERE = sys.version_info[:2]


def make_venv(root: Path, *, version: str = f"{HERE[0]}.{HERE[1]}.9",
              system_site: str = "true", python: bool = True) -> Path:
    """The files `python3 -m venv` leaves that venv_problem reads."""
    (root / "bin").mkdir(parents=True)
    (root / "pyvenv.cfg").write_text(f"home = /usr/bin\ninclude-system-site-packages = "
                                     f"{system_site}\nversion = {version}\n")
    if python:
        os.symlink(sys.executable, root / "bin" / "python")
    return root


def test_chosen_venv_is_the_key_or_an_existing_dot_venv(tmp_path: Path) -> None:
    assert chosen_venv("", str(tmp_path)) is None
    (tmp_path / ".venv").mkdir()
    assert chosen_venv("", str(tmp_path)) == tmp_path / ".venv"
    assert chosen_venv("env", str(tmp_path)) == tmp_path / "env"  # relative to app_root
    assert chosen_venv("/opt/v", str(tmp_path)) == Path("/opt/v")


def test_a_venv_made_as_documented_has_no_problem(tmp_path: Path) -> None:
    assert venv_problem(make_venv(tmp_path / "v")) is None


def test_what_cannot_work_is_named(tmp_path: Path) -> None:
    assert venv_problem(tmp_path / "missing") == "no such directory"
    (tmp_path / "empty").mkdir()
    assert "no pyvenv.cfg" in venv_problem(tmp_path / "empty")
    assert "without --system-site-packages" in venv_problem(
        make_venv(tmp_path / "isolated", system_site="false"))
    assert "made with Python 3.99.1, routemq runs on Python" in venv_problem(
        make_venv(tmp_path / "other", version="3.99.1"))
    assert "missing or not executable" in venv_problem(make_venv(tmp_path / "nopy",
                                                                 python=False))
    broken = make_venv(tmp_path / "dangling", python=False)
    os.symlink(tmp_path / "gone" / "python3", broken / "bin" / "python")
    assert "broken venv" in venv_problem(broken)


def test_reexec_runs_the_same_command_under_the_venv_python() -> None:
    argv = reexec_argv(Path("/srv/app/.venv"), ["worker", "--instance", "3"])
    assert argv[:2] == ["/srv/app/.venv/bin/python", "-c"]
    assert argv[3:] == ["worker", "--instance", "3"]
    compile(argv[2], "<boot>", "exec")  # the boot code is valid Python


def test_state_directory_order() -> None:
    systemd = {"STATE_DIRECTORY": "/var/lib/routemq:/var/lib/other", "HOME": "/h"}
    assert state_directory("/data/s", systemd, 0) == Path("/data/s")
    assert state_directory("", systemd, 998) == Path("/var/lib/routemq")
    assert state_directory("", {"HOME": "/root"}, 0) == Path("/var/lib/routemq")
    assert state_directory("", {"HOME": "/home/ann"}, 1000) == \
        Path("/home/ann/.local/state/routemq")
    assert state_directory("", {"HOME": "/h", "XDG_STATE_HOME": "/x"}, 1000) == \
        Path("/x/routemq")
