#!/usr/bin/env python3
"""Write or check etc/routemq/routemq.conf, the conffile: every key of
routemq.config_keys.KEYS, commented out, with its default, help and environment variable.

    scripts/conffile.py              print the conffile
    scripts/conffile.py --write      rewrite etc/routemq/routemq.conf
    scripts/conffile.py --check      exit 1 (with a diff) when the file is out of date

Generated, so a key added to config_keys.py cannot be forgotten in the shipped file:
`make deb` and the system tests run --check.
"""
from __future__ import annotations

import difflib
import os
import sys
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from routemq.config_keys import KEYS, Key  # noqa: E402  (needs ROOT on sys.path)

PATH = os.path.join(ROOT, "etc", "routemq", "routemq.conf")

HEADER = """\
# /etc/routemq/routemq.conf - configuration of RouteMQ (routemq(8)), read by every
# `routemq` command and by the routemq-master and routemq-worker@ units.
#
# Every key is listed below with its default, commented out. Put local settings here or,
# better, in /etc/routemq/conf.d/*.conf (read after this file, sorted by name; the last
# value wins), so package upgrades never have to ask about this file.
#
# Precedence, highest first: command line > environment > the application's .env >
# conf.d/*.conf > this file > defaults. Each key's environment variable is shown in
# [brackets].
#
# Syntax: `key = value`; `#` starts a comment (quote a value that contains ` #`).
# Apply a change: `systemctl reload routemq.target` restarts the workers one at a time,
# each handing its routes over first (they read this file again; so does the master's
# import of the application), `systemctl restart routemq.target` restarts everything at
# once (the master's own settings), and `systemctl daemon-reload` after changing
# worker_count (the number of instances routemq.target starts at boot comes from it).
#
# Secrets: rather than mqtt_password here, put the password in
# /etc/credstore/mqtt_password (root:root, mode 0600; the units load it with
# LoadCredential=) or point mqtt_password_file at a root:routemq 0640 file.
"""

# Defaults that depend on where the command runs, described for the systemd units.
NOTES = {
    "app_root": ("the working directory; /srv/routemq for the systemd units",
                 "/srv/routemq"),
}


def shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if value == "":
        return '""'
    return str(value)


def block(key: Key) -> str:
    note, example = NOTES.get(key.name, (None, None))
    default = note or ("unset" if key.default is None else shown(key.default))
    lines = [f"# {key.help} (default: {default}) [{key.env_var}]",
             f"#{key.name} = {example if example is not None else shown(key.default)}".rstrip()]
    return "\n".join(lines) + "\n"


def render() -> str:
    return HEADER + "".join("\n" + block(key) for key in KEYS)


def defaults_mismatch(text: str) -> dict[str, tuple[Any, Any]]:
    """Uncomment every `#key = value` line and load it with routemq's own parser: each value
    must parse and equal the built-in default (app_root aside, whose default is the cwd)."""
    import re
    import tempfile

    from routemq.config import load_config

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "routemq.conf")
        with open(path, "w", encoding="utf-8") as f:
            f.write(re.sub(r"(?m)^#([a-z_]+ =)", r"\1", text))
        empty = os.path.join(tmp, "conf.d")
        from_file = load_config([], {}, config_file=path, config_dir=empty).as_dict()
        builtin = load_config([], {}, config_file=os.path.join(tmp, "none"),
                              config_dir=empty).as_dict()
    return {k: (from_file[k], builtin[k]) for k in builtin
            if k not in NOTES and from_file[k] != builtin[k]}


def main(argv: list[str]) -> int:
    text = render()
    if not argv:
        sys.stdout.write(text)
        return 0
    if argv == ["--write"]:
        with open(PATH, "w", encoding="utf-8") as f:
            f.write(text)
        return 0
    if argv == ["--check"]:
        with open(PATH, encoding="utf-8") as f:
            current = f.read()
        wrong = defaults_mismatch(current)
        if wrong:
            print(f"{PATH}: values differ from the defaults (file, default): {wrong}",
                  file=sys.stderr)
            return 1
        if current == text:
            return 0
        sys.stdout.writelines(difflib.unified_diff(
            current.splitlines(True), text.splitlines(True), PATH, "generated"))
        print(f"{PATH} is out of date: run scripts/conffile.py --write", file=sys.stderr)
        return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
