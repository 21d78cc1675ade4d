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

import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from routemq.documents import MasterState, WorkerHealth
from routemq.plan import Plan
from routemq.runtime import RuntimePaths, load_plan, pid_alive, read_health_dir, read_master

# The worker units' names, spelled here only (systemd/routemq-worker@.service is the template).
UNIT_PREFIX = "routemq-worker@"
UNIT_PATTERN = f"{UNIT_PREFIX}*.service"
_UNIT_RE = re.compile(rf"^{re.escape(UNIT_PREFIX)}(\d+)\.service$")
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
    plan_source: str | None = None  # "plan.json", "standalone" (from the health files)
    master: MasterState | None = None
    workers: dict[int, WorkerHealth] = field(default_factory=dict)  # instance -> health
    pids: dict[int, bool] = field(default_factory=dict)  # pid -> the process exists
    units: dict[int, UnitState] | None = None  # None: not under systemd (or not queried)
    notes: list[str] = field(default_factory=list)
    dead_letter_spool: str | None = None  # the spool directory read (None: not read)
    dead_letters: dict[str, int] = field(default_factory=dict)  # route -> letters spooled


# --- systemd ----------------------------------------------------------------------------------

def unit_name(instance: int) -> str:
    """The unit that runs worker `instance`.

        >>> unit_name(3), unit_instance("routemq-worker@12.service"), unit_instance("x.service")
        ('routemq-worker@3.service', 12, None)
    """
    return f"{UNIT_PREFIX}{instance}.service"


def unit_instance(name: str) -> int | None:
    """The instance number of a worker unit's name, or None for any other unit."""
    match = _UNIT_RE.match(name)
    return int(match.group(1)) if match else None


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
        instance = unit_instance(props.get("Id", ""))
        if instance is None:
            continue
        since = _int(props.get("ActiveEnterTimestampMonotonic", "0"))  # microseconds
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
    found = {unit_instance(line.split()[0]) for line in out.splitlines() if line.split()}
    return sorted(i for i in found if i is not None), None


def query_units(instances: Iterable[int], systemctl: str = "systemctl"
                ) -> tuple[dict[int, UnitState] | None, str | None]:
    """`systemctl show` for routemq-worker@N of each instance, named explicitly (a pattern
    would only match loaded units, and a stopped instance is often unloaded)."""
    names = [unit_name(i) for i in sorted(set(instances))]
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
    snap.plan, note = load_plan(paths.plan)
    snap.notes.extend([note] if note else [])
    if snap.plan is not None:
        snap.plan_source = "plan.json"
    elif fallback_plan is not None:
        snap.plan, snap.plan_source = fallback_plan, "standalone"
    snap.master, notes = read_master(paths.master, snap.taken_at)
    snap.notes.extend(notes)
    snap.workers, notes = read_health_dir(paths.workers, snap.taken_at)
    snap.notes.extend(notes)
    pids = {h.pid for h in snap.workers.values() if h.pid is not None}
    if snap.master is not None and snap.master.pid is not None:
        pids.add(snap.master.pid)
    snap.pids = {pid: pid_alive(pid) for pid in sorted(pids)}
    _read_units(snap, units, systemctl)
    return snap


def _read_units(snap: Snapshot, want: bool | None, systemctl: str) -> None:
    master = snap.master
    if want is None:
        want = (master is not None and master.backend == "systemd") or \
            (master is None and _has_units(systemctl))
    if not want:
        return
    instances = set(snap.workers) | (set(master.instances or ()) if master else set())
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
    """read_fleet for `routemq status` / `metrics`, which never import the application (its
    code may be anyone's, and status runs as root). With no plan.json (standalone workers),
    the planned instances are 1..worker_count when it is a number, else those with health
    files, and each holds the routes its health file reports (routes_held); a note says so."""
    snap = read_fleet(config, **kwargs)
    read_dead_letters(snap, config)
    if snap.plan is not None or os.path.exists(RuntimePaths(config.runtime_dir).plan) \
            or not os.path.isdir(config.runtime_dir):  # else "does not exist" says it all
        return snap
    held = {i: () for i in snap.units or {}}
    held.update((i, h.routes_held or ()) for i, h in snap.workers.items())
    snap.plan = reported_plan(config.worker_count, held)
    snap.plan_source = "standalone"
    count = ("1..worker_count" if _count(config.worker_count) else
             "those with health files" + (" or units" if snap.units else ""))
    snap.notes.append(f"no plan.json: the planned instances are {count}, their routes those "
                      f"their health files report")
    return snap


def read_dead_letters(snap: Snapshot, config: Any) -> None:
    """Dead letters per route from the spool's file names (routemq.deadletters): a
    directory listing, no file read in the usual case."""
    from routemq.deadletters import spool_for

    spool = spool_for(config)
    snap.dead_letter_spool = str(spool.directory)
    try:
        snap.dead_letters = spool.counts()
    except OSError as exc:
        snap.notes.append(f"cannot read the dead-letter spool {spool.directory}: "
                          f"{exc.strerror or exc}")


def _count(worker_count: Any) -> int | None:
    """worker_count as a number, or None ("auto" needs the application's routes)."""
    if isinstance(worker_count, int) and not isinstance(worker_count, bool):
        return worker_count if worker_count > 0 else None
    text = str(worker_count).strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def reported_plan(worker_count: Any, held: Mapping[int, Sequence[str]]) -> Plan:
    """What standalone workers hold, as far as their health files tell (`held`: instance ->
    routes_held; pure): instances 1..worker_count, or (worker_count "auto") those in `held`.

        >>> reported_plan(2, {1: ("a",), 3: ()}).assignments
        {1: ('a',), 2: ()}
    """
    count = _count(worker_count)
    instances = range(1, count + 1) if count else sorted(held)
    return Plan({i: tuple(held.get(i, ())) for i in instances})
