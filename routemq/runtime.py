"""Files under the runtime directory (/run/routemq): the plan and the workers' health.

    <runtime_dir>/plan.json          written by the master, read by every worker
    <runtime_dir>/workers/<N>.json   written by worker N about once a second

Writes are atomic (a temporary file in the same directory, then rename), so a reader
never sees half a document.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any


class RuntimePaths:
    def __init__(self, runtime_dir: str) -> None:
        self.root = runtime_dir
        self.plan = os.path.join(runtime_dir, "plan.json")
        self.workers = os.path.join(runtime_dir, "workers")

    def health(self, instance: int) -> str:
        return os.path.join(self.workers, f"{instance}.json")


def write_json_atomic(path: str, data: Any) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, separators=(",", ":"), sort_keys=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
