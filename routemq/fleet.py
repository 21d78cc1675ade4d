"""Read the fleet's state: the runtime directory, the workers' pids and, under systemd, the units.

This is the I/O edge of `routemq status` and `routemq metrics` (routemq.status and
routemq.prometheus turn what it reads into a dashboard and Prometheus text, without I/O):

    <runtime_dir>/plan.json         the master's plan (absent: standalone workers)
    <runtime_dir>/master.json       the master's state (absent: no master is running here)
    <runtime_dir>/workers/<N>.json  worker N's health, rewritten about once a second

Nothing here raises for a missing, partial or corrupt file: status must show what it can, so
each problem becomes one line in ``Snapshot.notes`` ("workers/3.json: not valid JSON ...").

    >>> snap = read_fleet("/nonexistent", units=False)
    >>> snap.workers, snap.notes[0].startswith("runtime directory /nonexistent does not exist")
    ({}, True)
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from routemq.plan import Plan
from routemq.runtime import RuntimePaths, pid_alive

MASTER_FILE = "master.json"  # written by routemq.master every health_interval
UNIT_TEMPLATE = "routemq-worker@{}.service"
UNIT_PATTERN = "routemq-worker@*.service"
_UNIT_RE = re.compile(r"^routemq-worker@(\d+)\.service$")
_HEALTH_NAME_RE = re.compile(r"^(\d+)\.json$")
UNIT_PROPERTIES = ("Id", "LoadState", "ActiveState", "SubState", "NRestarts", "MainPID",
                   "ActiveEnterTimestampMonotonic")
SYSTEMCTL_TIMEOUT = 10.0


@dataclass(frozen=True)
class UnitState:
    """One routemq-worker@N unit as `systemctl show` reports it."""

    instance: int
    load_state: str = ""  # "loaded", or "not-found" when no such unit exists
    active_state: str = ""  # active, reloading, inactive, failed, activating, deactivating
    sub_state: str = ""  # running, dead, auto-restart, ...
    restarts: int = 0  # NRestarts: automatic restarts since the unit was last started by hand
    main_pid: int = 0
    active_since: float | None = None  # CLOCK_MONOTONIC seconds; None: never active

    @property
    def active(self) -> bool:
        return self.active_state in ("active", "reloading")


@dataclass
class Snapshot:
    """Everything `routemq status` knows, read at one moment (``taken_at``, wall clock)."""

    runtime_dir: str
    taken_at: float
    monotonic: float  # time.monotonic() at taken_at: systemd's timestamps use this clock
    hostname: str
    group: str | None = None  # from the configuration; master.json's wins when present
    health_interval: float = 1.0
    plan: Plan | None = None
    plan_source: str | None = None  # "plan.json", "standalone" (computed from the config)
    master: dict[str, Any] | None = None
    workers: dict[int, dict[str, Any]] = field(default_factory=dict)  # instance -> health
    pids: dict[int, bool] = field(default_factory=dict)  # pid -> the process exists
    units: dict[int, UnitState] | None = None  # None: not under systemd (or not queried)
    notes: list[str] = field(default_factory=list)


def read_json(path: str, name: str) -> tuple[Any, str | None]:
    """(document, None), (None, None) when the file does not exist, or (None, a note)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"{name}: cannot read: {exc.strerror or exc}"
    except UnicodeDecodeError:
        return None, f"{name}: not UTF-8 text"
    if not text.strip():
        return None, f"{name}: empty file"
    try:
        return json.loads(text), None
    except ValueError as exc:
        return None, f"{name}: not valid JSON ({exc})"


def read_plan(path: str) -> tuple[Plan | None, str | None]:
    """The master's plan, or (None, a note) when it exists but cannot be used."""
    try:
        with open(path, encoding="utf-8") as f:
            return Plan.from_json(f.read()), None
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"plan.json: cannot read: {exc.strerror or exc}"
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"plan.json: ignored: {exc}"


# Keys of master.json and the types a reader can rely on; a wrong type drops the key.
_MASTER_TYPES: dict[str, tuple[type, ...]] = {
    "pid": (int,), "hostname": (str,), "group": (str,), "backend": (str,),
    "started_at": (int, float), "updated_at": (int, float), "plan_version": (int,),
    "instances": (list,), "restarts": (dict,), "autoscaler": (dict, type(None)),
    "warnings": (list,),
}


def _wrong_types(doc: dict[str, Any], types: dict[str, tuple[type, ...]]) -> list[str]:
    """The keys of ``doc`` whose value is not of its expected type (a bool is no number)."""
    return [k for k, t in types.items()
            if k in doc and (not isinstance(doc[k], t) or isinstance(doc[k], bool))]


def read_master(path: str) -> tuple[dict[str, Any] | None, list[str]]:
    """master.json with every key of the wrong type dropped (and named in a note)."""
    doc, note = read_json(path, "master.json")
    if doc is None:
        return None, [note] if note else []
    if not isinstance(doc, dict):
        return None, ["master.json: not a JSON object"]
    bad = _wrong_types(doc, _MASTER_TYPES)
    notes = [f"master.json: {key} has the wrong type, ignored" for key in bad]
    clean = {k: v for k, v in doc.items() if k not in bad}
    if isinstance(clean.get("instances"), list):
        good = [i for i in clean["instances"] if isinstance(i, int) and not isinstance(i, bool)
                and i > 0]
        if len(good) != len(clean["instances"]):
            notes.append("master.json: instances holds something other than positive integers")
        clean["instances"] = sorted(set(good))
    return clean, notes


_HEALTH_TYPES: dict[str, tuple[type, ...]] = {
    "pid": (int,), "updated_at": (int, float), "started_at": (int, float),
    "processed": (int,), "errors": (int,), "routes_held": (list,), "routes": (dict,),
}


def read_health_dir(directory: str) -> tuple[dict[int, dict[str, Any]], list[str]]:
    """Each workers/<N>.json as instance -> document. Other names (temporaries) are skipped."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return {}, []
    except OSError as exc:
        return {}, [f"workers/: cannot list: {exc.strerror or exc}"]
    workers: dict[int, dict[str, Any]] = {}
    notes: list[str] = []
    for name in sorted(names, key=lambda n: (len(n), n)):
        match = _HEALTH_NAME_RE.match(name)
        if not match:
            continue
        instance = int(match.group(1))
        # A worker that stops cleanly deletes its file: between listdir and open it may be
        # gone, which read_json reports as "no file", not as a problem.
        doc, note = read_json(os.path.join(directory, name), f"workers/{name}")
        if note:
            notes.append(note)
            workers[instance] = {}  # present but unusable: shown, never counted alive
            continue
        if doc is None:
            continue
        if not isinstance(doc, dict):
            notes.append(f"workers/{name}: not a JSON object")
            workers[instance] = {}
            continue
        bad = _wrong_types(doc, _HEALTH_TYPES)
        missing = [k for k in ("pid", "updated_at") if k not in doc]
        if bad or missing:
            notes.append(f"workers/{name}: " + "; ".join(
                ([f"missing {', '.join(missing)}"] if missing else [])
                + ([f"wrong type: {', '.join(bad)}"] if bad else [])))
            doc = {k: v for k, v in doc.items() if k not in bad}
        if doc.get("instance", instance) != instance:
            notes.append(f"workers/{name}: says instance {doc.get('instance')!r}; "
                         f"the file name wins")
        doc["instance"] = instance
        workers[instance] = doc
    return workers, notes


# --- systemd ----------------------------------------------------------------------------------

def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


def parse_systemctl_show(text: str) -> dict[int, UnitState]:
    """Parse `systemctl show -p Id,... unit...`: one block of Key=Value lines per unit,
    blocks separated by a blank line. Units that are not routemq-worker@N are skipped.

        >>> out = "Id=routemq-worker@2.service\\nActiveState=active\\nNRestarts=3\\n\\n"
        >>> parse_systemctl_show(out)[2].restarts
        3
    """
    units: dict[int, UnitState] = {}
    for block in re.split(r"\n\s*\n", text):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        match = _UNIT_RE.match(props.get("Id", ""))
        if not match:
            continue
        since = _int(props.get("ActiveEnterTimestampMonotonic", "0"))  # microseconds
        instance = int(match.group(1))
        units[instance] = UnitState(
            instance=instance, load_state=props.get("LoadState", ""),
            active_state=props.get("ActiveState", ""), sub_state=props.get("SubState", ""),
            restarts=_int(props.get("NRestarts", "0")), main_pid=_int(props.get("MainPID", "0")),
            active_since=since / 1e6 if since > 0 else None)
    return units


def _systemctl(systemctl: str, *args: str) -> tuple[str | None, str | None]:
    """(stdout, None) or (None, why it failed) — never raises."""
    try:
        r = subprocess.run([systemctl, *args], capture_output=True, text=True,
                           timeout=SYSTEMCTL_TIMEOUT, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return None, f"{systemctl} not found"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"systemctl failed: {exc}"
    if r.returncode != 0:
        detail = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        return None, f"systemctl {args[0]} failed: {detail}"
    return r.stdout, None


def list_worker_units(systemctl: str = "systemctl") -> tuple[list[int] | None, str | None]:
    """Instances of the routemq-worker@ units systemd has loaded (running, failed, ...)."""
    out, err = _systemctl(systemctl, "list-units", "--all", "--full", "--plain", "--no-legend",
                          "--no-pager", UNIT_PATTERN)
    if out is None:
        return None, err
    found = set()
    for line in out.splitlines():
        match = _UNIT_RE.match(line.split()[0]) if line.split() else None
        if match:
            found.add(int(match.group(1)))
    return sorted(found), None


def query_units(instances: Iterable[int], systemctl: str = "systemctl"
                ) -> tuple[dict[int, UnitState] | None, str | None]:
    """`systemctl show` for routemq-worker@N of each instance, named explicitly (a pattern
    would only match loaded units, and a stopped instance is often unloaded)."""
    names = [UNIT_TEMPLATE.format(i) for i in sorted(set(instances))]
    if not names:
        return {}, None
    out, err = _systemctl(systemctl, "show", "--no-pager", "-p", ",".join(UNIT_PROPERTIES),
                          *names)
    if out is None:
        return None, err
    return parse_systemctl_show(out), None


# --- everything at once -----------------------------------------------------------------------

def read_fleet(source: str | Any, *, health_interval: float | None = None,
               group: str | None = None, fallback_plan: Plan | None = None,
               units: bool | None = None, systemctl: str = "systemctl") -> Snapshot:
    """Read plan, master and health files, check the pids, and query systemd when it applies.

    ``source`` is the runtime directory, or a configuration (routemq.config) whose
    runtime_dir, health_interval and mqtt_group_name are used unless given here.
    ``fallback_plan`` stands in when there is no plan.json (standalone workers compute the
    same plan from the configuration). ``units``: True queries systemd, False never does,
    None decides: yes when master.json says backend "systemd", or when there is no
    master.json and systemd has routemq-worker@ units loaded.
    """
    if isinstance(source, str):
        runtime_dir = source
    else:
        runtime_dir = source.runtime_dir
        health_interval = health_interval or getattr(source, "health_interval", None)
        group = group or getattr(source, "mqtt_group_name", None)
    health_interval = health_interval or 1.0
    paths = RuntimePaths(runtime_dir)
    snap = Snapshot(runtime_dir=runtime_dir, taken_at=time.time(), monotonic=time.monotonic(),
                    hostname=socket.gethostname(), group=group,
                    health_interval=health_interval)
    if not os.path.isdir(runtime_dir):
        snap.notes.append(f"runtime directory {runtime_dir} does not exist (nothing has run "
                          f"here, or runtime_dir is set differently)")
    snap.plan, note = read_plan(paths.plan)
    snap.notes.extend([note] if note else [])
    if snap.plan is not None:
        snap.plan_source = "plan.json"
    elif fallback_plan is not None:
        snap.plan, snap.plan_source = fallback_plan, "standalone"
    snap.master, notes = read_master(os.path.join(runtime_dir, MASTER_FILE))
    snap.notes.extend(notes)
    snap.workers, notes = read_health_dir(paths.workers)
    snap.notes.extend(notes)
    pids = {h["pid"] for h in snap.workers.values() if isinstance(h.get("pid"), int)}
    if snap.master and isinstance(snap.master.get("pid"), int):
        pids.add(snap.master["pid"])
    snap.pids = {pid: pid_alive(pid) for pid in sorted(pids)}
    _read_units(snap, units, systemctl)
    return snap


def _read_units(snap: Snapshot, want: bool | None, systemctl: str) -> None:
    backend = (snap.master or {}).get("backend")
    if want is None:
        want = backend == "systemd" or (snap.master is None and _has_units(systemctl))
    if not want:
        return
    instances = set(snap.workers) | set((snap.master or {}).get("instances", []))
    if snap.plan is not None:
        instances |= set(snap.plan.assignments)
    loaded, _ = list_worker_units(systemctl)
    instances |= set(loaded or [])
    snap.units, err = query_units(instances, systemctl)
    if err:
        snap.notes.append(f"cannot read the worker units' state: {err}")
        return
    # Units queried by name that systemd does not know: not part of this fleet's units.
    snap.units = {i: u for i, u in (snap.units or {}).items() if u.load_state != "not-found"}
    # A pid that systemd reports as a unit's main process is checked too (no health file yet).
    for unit in snap.units.values():
        if unit.main_pid and unit.main_pid not in snap.pids:
            snap.pids[unit.main_pid] = pid_alive(unit.main_pid)


def _has_units(systemctl: str) -> bool:
    found, _ = list_worker_units(systemctl)
    return bool(found)


def read_configured_fleet(config: Any, **kwargs: Any) -> Snapshot:
    """read_fleet for `routemq status` / `metrics`: with no plan.json (standalone workers),
    the plan they compute from the configuration (worker_count and the application's
    routes) says which instances should be running, so a cleanly stopped one shows as
    missing. If the application cannot be loaded, the health files alone say it, noted."""
    fallback, note = None, None
    if not os.path.exists(RuntimePaths(config.runtime_dir).plan):
        from routemq.registry import load_router
        from routemq.worker import standalone_plan
        try:
            router = load_router(config.router_directory, config.app_root)
            fallback = standalone_plan(router, config.worker_count)
        except Exception as exc:  # the application's own import errors included
            note = (f"no plan.json, and the application cannot be loaded to compute the "
                    f"standalone plan ({str(exc).splitlines()[0] if str(exc) else exc!r}); "
                    f"the planned instances are those with health files")
    snap = read_fleet(config, fallback_plan=fallback, **kwargs)
    if note and os.path.isdir(config.runtime_dir):  # else "does not exist" says it all
        snap.notes.append(note)
    return snap
