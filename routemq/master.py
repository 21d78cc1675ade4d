"""The master (`routemq master`, unit routemq-master.service): plans which instance holds
which route and keeps the plan true as instances come and go.

One tick (every TICK seconds, on the asyncio loop):
1. read the workers' health files; membership decides who joined or left (membership.py);
2. the back end restarts dead child processes (systemd restarts units itself);
3. the autoscaler, if enabled, may start or stop instances;
4. when the members changed: compute the new plan and write, first, the overlap of the old
   and the new plan (make before break), then, once every instance that gains a route has
   applied it (its health file reports the plan's generation), the new plan itself;
5. the broker sessions of instances that are out of the plan with no process are drained and
   ended (orphans.py), so a dead instance's session does not strand its share of the routes;
6. plan.json is rewritten if it went missing or changed behind the master's back;
7. master.json for `routemq status`, STATUS=, the Prometheus textfile, and WATCHDOG=1 — only
   from here, so a stuck loop gets the master restarted.

The plan is written atomically; workers notice a new plan file within a second and change
only the subscriptions that changed. A crashed worker keeps its place in the plan: systemd
(or the process back end) restarts it under the same client id, and its session holds its
messages meanwhile.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import socket
import time
from typing import Any

from routemq.app_checks import check_application
from routemq.autoscale import Autoscaler, Load, Policy
from routemq.backends import Backend, SystemdBackend
from routemq.errors import MasterError, RegistryError
from routemq.documents import MasterState, WorkerHealth, WorkerState
from routemq.membership import Membership, gains, overlap
from routemq.notify import Notifier
from routemq.orphans import Orphans, drainer_spawner
from routemq.plan import Plan, compute_plan, plan_routes, resolve_worker_count
from routemq.registry import reload_router
from routemq.rollout import Rollout, View
from routemq.router import Router
from routemq.runtime import (FileLock, RuntimePaths, ensure_dir, lock_holder, marked_sessions,
                             pid_alive, read_health_dir, read_plan, write_text_atomic)

log = logging.getLogger("routemq.master")

TICK = 0.5
# Seconds to wait for live new owners to subscribe before letting the old ones go anyway.
# Long: letting go first means a route with no subscriber, whose messages the broker drops;
# a new owner that dies meanwhile stops being waited for at once (it is no longer present).
HANDOVER_TIMEOUT = 60.0
TEXTFILE_INTERVAL = 2.0  # seconds between two writes of the Prometheus textfile


class Master:
    def __init__(self, config: Any, router: Router, backend: Backend | None = None,
                 *, workers: int | None = None) -> None:
        self.config = config
        self.routes = plan_routes(router)
        self.backend = backend
        self.paths = RuntimePaths(config.runtime_dir)
        self.notifier = Notifier()
        self.count = resolve_worker_count(workers or config.worker_count, self.routes)
        self.started_at = time.time()
        self.membership = Membership(range(1, self.count + 1), self.started_at,
                                     health_interval=config.health_interval)
        self.autoscaler = Autoscaler(Policy(
            config.min_workers, config.max_workers, config.target_rate_per_worker,
            config.scale_interval, config.scale_cooldown)) if config.autoscale else None
        self.written: Plan | None = None   # the plan file's content
        self.target: Plan | None = None    # where a hand-over is going
        self.before = Plan({})              # the plan the hand-over started from
        self.handover_deadline = 0.0
        self.health: dict[int, WorkerHealth] = {}  # this tick's health files
        self.gone: set[int] = set()  # of them: stale, and their process no longer exists
        self._cpu: dict[int, tuple[float, float, float]] = {}  # pid-time, cpu s -> cpu %
        # Drainers get the environment the workers get (under `routemq run`: the embedded
        # broker's address), which only the back end knows.
        environ = getattr(backend, "environ", None) or dict(os.environ)
        self.orphans = Orphans(drainer_spawner(environ))
        self._stop = asyncio.Event()
        self._replan = False
        self.claimed = False
        self.lock = FileLock(self.paths.master_lock)
        self._textfile_at = -TEXTFILE_INTERVAL
        self.rollout: Rollout | None = None  # a reload's rolling restart in progress
        self.last_reload: dict[str, Any] | None = None

    # --- the plan ------------------------------------------------------------------------
    def _write(self, plan: Plan) -> None:
        generation = (self.written.generation if self.written else 0) + 1
        plan = dataclasses.replace(plan, generation=generation)
        write_text_atomic(self.paths.plan, plan.to_json())
        if self.written is None or plan.warnings != self.written.warnings:
            for warning in plan.warnings:
                log.warning("plan: %s", warning)
        self.written = plan

    def present(self, now: float) -> set[int]:
        """Instances with a live worker right now, members or not (stopping ones too)."""
        return {i for i, h in self.health.items()
                if h.fresh(now, self.config.health_interval)}

    def replan(self, now: float) -> None:
        """Plan over the current members; start a make-before-break hand-over if needed."""
        resting = self.rollout.excluded() & self.membership.members if self.rollout else set()
        target = compute_plan(self.routes, sorted(self.membership.members - resting),
                              previous=self.target or self.written)
        if resting:  # named with no route, it lets go of everything once the others hold it
            target = dataclasses.replace(target, assignments={
                **target.assignments, **{i: () for i in resting}})
        if self.written is None:
            self._write(target)
            log.info("plan generation %d: instances %s", self.written.generation,
                     sorted(target.assignments))
            return
        if self.target is None:
            if target.assignments == self.written.assignments:
                return
            self.before = self.written  # what the workers hold, as far as we know
        between = overlap(self.written, target, self.present(now))
        self.target, self.handover_deadline = target, now + HANDOVER_TIMEOUT
        if between.assignments != self.written.assignments:
            self._write(between)
            log.info("plan generation %d: hand-over to instances %s started",
                     self.written.generation, sorted(target.assignments))
        self.advance(now)

    def advance(self, now: float) -> None:
        """Finish a hand-over once every member that gains a route has applied the overlap,
        i.e. the broker has acknowledged its new subscriptions."""
        if self.target is None or self.written is None:
            return
        # Every member that gains a route, started or still starting (the autoscaler's new
        # instance has no health file yet): letting the old owner go first leaves the route
        # without a subscriber, and the broker drops what is published meanwhile. A member
        # that never comes up leaves the plan (membership), which re-plans without it.
        waiting = sorted(i for i in gains(self.before, self.target)
                         if i in self.membership.members
                         and not self._applied(i, self.written.generation))
        if waiting and now < self.handover_deadline:
            return
        if waiting:
            log.warning("instances %s did not apply plan generation %d within %.0fs; "
                        "completing the hand-over anyway", waiting, self.written.generation,
                        HANDOVER_TIMEOUT)
        target, self.target = self.target, None
        if target.assignments != self.written.assignments:
            self._write(target)
        log.info("plan generation %d: instances %s", self.written.generation,
                 sorted(target.assignments))

    def _applied(self, instance: int, generation: int) -> bool:
        h = self.health.get(instance)
        return h is not None and (h.plan_version or 0) >= generation \
            and h.state == WorkerState.RUNNING

    # --- one tick ------------------------------------------------------------------------
    def read_health(self, now: float) -> None:
        # Unusable files are never fresh, so never counted alive.
        health, _ = read_health_dir(self.paths.workers)
        for i, last in self.health.items():
            if i not in health and last.state not in (WorkerState.STOPPING, WorkerState.DRAINING) \
                    and last.pid is not None and pid_alive(last.pid):
                # Its file was deleted but its process lives (and never said it was
                # stopping): not a clean stop. Moving its routes away and back lost
                # messages once; the file comes back at its next write, or the old one
                # goes stale and the instance is given up like any silent one.
                health[i] = last
        self.health = health
        self.gone = {i for i, h in health.items()
                     if not h.fresh(now, self.config.health_interval) and h.pid is not None
                     and not pid_alive(h.pid)}

    def tick(self, now: float) -> None:
        self.read_health(now)
        if self.backend is not None:
            self.backend.poll()
        joined, left = self.membership.observe(now, self.health, self.gone)
        if joined:
            log.info("instances %s joined", sorted(joined))
        if left:
            log.info("instances %s left", sorted(left))
        self._autoscale(now)
        self._roll(now)
        if joined or left or self._replan or self.written is None:
            self._replan = False
            self.replan(now)
        self.advance(now)
        self._drain_orphans(now)
        self._keep_plan_file()
        self.report(now)

    def _roll(self, now: float) -> None:
        """One step of a reload's rolling restart (rollout.py), from what this tick saw."""
        rollout = self.rollout
        n = rollout.subject() if rollout is not None else None
        if rollout is None or n is None:
            self.rollout = None
            return
        h = self.health.get(n)
        live = h.pid if h is not None and h.pid is not None and pid_alive(h.pid) and \
            h.fresh(now, self.config.health_interval) else None
        written = self.written
        settled = self.target is None and written is not None
        view = View(
            others_present=any(i != n for i in self.present(now) & self.membership.members),
            # planned empty, and it has unsubscribed (or it is not running at all)
            handed_over=settled and not written.assignments.get(n) and (
                live is None or self._applied(n, written.generation)),
            pid=live,
            old_alive=rollout.old_pid is not None and pid_alive(rollout.old_pid),
            applied=settled and bool(written.assignments.get(n))
            and self._applied(n, written.generation))
        for action in rollout.tick(now, view):
            if action[0] == "replan":
                self._replan = True
            elif self.backend is not None:
                getattr(self.backend, action[0])(action[1])

    def _drain_orphans(self, now: float) -> None:
        members, present = self.membership.members, self.present(now)
        written = self.written
        covered = written is not None and self.target is None and all(
            any(i in present for i in written.owners(r.key)) for r in self.routes)
        marked = marked_sessions(self.paths.workers)
        for i in self.orphans.tick(now, marked, members, present, covered):
            log.info("the broker session of instance %d is drained and ended", i)
            last = self.health.get(i)
            if last is not None and last.pid is not None and not pid_alive(last.pid):
                try:  # the dead process's last file: nothing will come back under it
                    os.unlink(self.paths.health(i))
                except FileNotFoundError:
                    pass

    def _keep_plan_file(self) -> None:
        """Workers read plan.json at start and on change: a deleted or damaged one would
        leave a restarted worker to compute a plan of its own (400 of 400 lost once)."""
        if self.written is None:
            return
        on_disk = read_plan(self.paths.plan)
        if on_disk is not None and on_disk.generation == self.written.generation and \
                on_disk.assignments == self.written.assignments:
            return
        log.warning("plan.json is %s; writing generation %d again",
                    "missing or unreadable" if on_disk is None else "not the master's",
                    self.written.generation)
        write_text_atomic(self.paths.plan, self.written.to_json())

    def load(self, now: float) -> Load:
        """The fleet's rate, mean CPU % and backlog from the fresh health files."""
        rate, cpu, backlog, counted = 0.0, 0.0, 0, 0
        for i, h in self.health.items():
            if not h.fresh(now, self.config.health_interval):
                continue
            rate += h.rate or 0.0
            backlog += (h.inflight or 0) + (h.queued or 0)
            cpu += self._cpu_percent(i, h)
            counted += 1
        return Load(round(rate, 2), round(cpu / counted, 1) if counted else 0.0, backlog)

    def _cpu_percent(self, instance: int, h: WorkerHealth) -> float:
        at, used = float(h.updated_at or 0.0), float(h.cpu_seconds or 0.0)
        before = self._cpu.get(instance)
        percent = before[2] if before else 0.0
        if before and at > before[0] and used >= before[1]:
            percent = 100.0 * (used - before[1]) / (at - before[0])
        if not before or at > before[0]:
            self._cpu[instance] = (at, used, percent)
        return percent

    def _autoscale(self, now: float) -> None:
        if self.autoscaler is None or self.backend is None:
            return
        members = sorted(self.membership.members)
        wanted = self.autoscaler.decide(now, len(members), self.load(now))
        if wanted is None:
            return
        log.info("autoscaler: %s", self.autoscaler.last_action)
        for i in range(len(members), wanted):  # start the lowest free numbers
            free = next(n for n in range(1, 10_000) if n not in self.membership.members)
            self.membership.add(free, now)
            self.backend.start(free)
        for i in reversed(members[wanted:]):     # stop the highest
            self.membership.discard(i)
            self.backend.stop(i)
        self._replan = True

    def snapshot(self, now: float) -> MasterState:
        """master.json: what `routemq status` shows about the master."""
        written = self.written
        return MasterState(
            pid=os.getpid(), hostname=socket.gethostname(),
            group=self.config.mqtt_group_name,
            backend=self.backend.name if self.backend else "none",
            started_at=self.started_at, updated_at=time.time(),
            plan_version=written.generation if written else 0,
            instances=tuple(sorted(written.assignments)) if written else (),
            members=tuple(sorted(self.membership.members)),
            handover=self.target is not None,
            restarts={str(i): n for i, n in
                      (self.backend.restarts() if self.backend else {}).items()},
            autoscaler=self.autoscaler.state() if self.autoscaler else None,
            load=dataclasses.asdict(self.load(now)),
            warnings=tuple(written.warnings) if written else (),
            sessions=self.orphans.snapshot(),
            reload=self.last_reload,
            rollout=self.rollout.state() if self.rollout else None,
        )

    def report(self, now: float) -> None:
        snap = self.snapshot(now)
        write_text_atomic(self.paths.master, snap.to_json())
        alive = len(self.present(now) & self.membership.members)
        rate = (snap.load or {}).get("rate", 0.0)
        self.notifier.status(f"{alive}/{len(self.membership.members)} workers alive; plan "
                             f"generation {snap.plan_version}; {rate} msg/s")
        if self.config.metrics_textfile_dir and now - self._textfile_at >= TEXTFILE_INTERVAL:
            self._textfile_at = now  # not every tick: under systemd it asks systemctl
            self._write_textfile()
        self.notifier.watchdog()

    def _write_textfile(self) -> None:
        from routemq.fleet import read_fleet
        from routemq.prometheus import render_metrics, write_textfile
        from routemq.status import build_status
        try:
            text = render_metrics(build_status(read_fleet(self.config), time.time()))
            write_textfile(self.config.metrics_textfile_dir, text)
        except OSError as exc:
            log.warning("cannot write the metrics textfile: %s", exc)

    # --- main ----------------------------------------------------------------------------
    def claim(self) -> None:
        """Refuse to run beside another master on the same runtime directory (a lock the
        kernel releases when its holder dies); adopt the plan a previous master left, so a
        restarted master moves nothing that need not move."""
        ensure_dir(self.paths.root)
        ensure_dir(self.paths.workers)
        if not self.lock.try_acquire():
            holder = lock_holder(self.paths.master_lock)
            raise MasterError(f"another master (pid {holder or '?'}) is running on "
                              f"{self.paths.root}")
        self.written = read_plan(self.paths.plan)
        self._replan = True  # the adopted plan may predate the members: plan once over them
        self.claimed = True

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        self.tick(time.time())
        self.notifier.ready(f"plan generation {self.written.generation if self.written else 0}")
        log.info("master ready: %d routes, instances %s, runtime directory %s",
                 len(self.routes), sorted(self.membership.members), self.paths.root)
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), TICK)
            except TimeoutError:
                pass
            if not self._stop.is_set():
                self.tick(time.time())
        return 0

    def reload(self) -> None:
        """SIGHUP (`systemctl reload routemq.target`): import the application again. If it
        loads and passes the checks a worker makes, plan its routes and restart the workers
        one at a time, each handing its routes over first (rollout.py). If not, nothing
        changes: the running version stays, the journal and `routemq status` say why."""
        self.notifier.reloading()
        try:
            router = reload_router(self.config.router_directory, self.config.app_root)
            errors = check_application(self.config, router)
            if errors:
                raise RegistryError("; ".join(errors))
        except RegistryError as exc:
            self.last_reload = {"ok": False, "at": time.time(), "error": str(exc)}
            log.error("reload failed, the running version stays: %s", exc)
        else:
            self.routes = plan_routes(router)
            self.last_reload = {"ok": True, "at": time.time(), "routes": len(self.routes)}
            members = sorted(self.membership.members)
            if self.rollout is not None and self.rollout.current is not None:
                # The instance being restarted gets the newest version anyway.
                self.rollout.pending = [i for i in members if i != self.rollout.current]
            else:
                self.rollout = Rollout(members)
            log.info("reload: %d routes; restarting instances %s one at a time%s",
                     len(self.routes), members, "" if self.backend is not None else
                     " is impossible without a back end (restart the workers yourself)")
            if self.backend is None:
                self.rollout = None
            self._replan = True
        self.notifier.ready()

    def stop(self) -> None:
        self.notifier.stopping("master stopping")
        self._stop.set()

    def close(self) -> None:
        """After the loop: drainers stop; master.json goes, so stopping workers stop waiting
        for a hand-over; then the lock."""
        if not self.claimed:
            return
        self.orphans.stop()
        try:
            os.unlink(self.paths.master)
        except FileNotFoundError:
            pass
        self.lock.release()


def run_master(config: Any, router: Router) -> int:
    """Entry point of `routemq master`: 0 on a clean stop, 1 when it cannot run.

    The autoscaler needs a back end: under systemd (INVOCATION_ID is set) the worker units.
    """
    backend = SystemdBackend() if os.environ.get("INVOCATION_ID") else None
    if config.autoscale and backend is None:
        log.warning("autoscale is on but the master is not running under systemd: it cannot "
                    "start or stop workers (use `routemq run` for child processes)")
    master = Master(config, router, backend)
    try:
        master.claim()
        return asyncio.run(master.run())
    except MasterError as exc:
        log.error("%s", exc)
        return 1
    finally:
        master.close()
