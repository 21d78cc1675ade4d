"""Files under the runtime directory (/run/routemq): the plan, the master's and the workers'
state.

    <runtime_dir>/plan.json          written by the master, read by every worker
    <runtime_dir>/master.json        written by the master every tick (`routemq status`)
    <runtime_dir>/workers/<N>.json   written by worker N about once a second

Writes are atomic (a temporary file in the same directory, then rename), so a reader
never sees half a document.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from typing import Any

from routemq.plan import Plan

log = logging.getLogger("routemq.runtime")


class RuntimePaths:
    def __init__(self, runtime_dir: str) -> None:
        self.root = runtime_dir
        self.plan = os.path.join(runtime_dir, "plan.json")
        self.master = os.path.join(runtime_dir, "master.json")
        self.workers = os.path.join(runtime_dir, "workers")

    def health(self, instance: int) -> str:
        return os.path.join(self.workers, f"{instance}.json")


def write_text_atomic(path: str, text: str) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # readable by `routemq status` run by any operator
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_json_atomic(path: str, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, separators=(",", ":"), sort_keys=True))


def read_json(path: str) -> Any:
    """The document at `path`, or None when it is missing or unreadable (being replaced)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_plan(path: str) -> Plan | None:
    """The plan file, or None when there is none; a broken file is logged and ignored."""
    try:
        with open(path, encoding="utf-8") as f:
            return Plan.from_json(f.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable plan %s: %s", path, exc)
        return None


MASTER_FRESH = 5.0  # master.json younger than this (seconds): its master is running


def running_master(paths: RuntimePaths, now: float) -> int | None:
    """The pid of the master that owns this runtime directory now (its process exists and
    master.json is fresh), else None."""
    doc = read_json(paths.master)
    if not isinstance(doc, dict):
        return None
    try:
        pid, updated = int(doc.get("pid") or 0), float(doc.get("updated_at") or 0)
    except (TypeError, ValueError):
        return None
    return pid if pid > 0 and now - updated < MASTER_FRESH and pid_alive(pid) else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
