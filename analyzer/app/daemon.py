"""The daemon behind `canary-analyzer serve`: APScheduler ticks every active rollout at its interval.

The store is the truth. Any replica writes new rollouts and operator commands; only the leader
ticks. A tick keeps the engine's order (intent recorded, act idempotently, results recorded), so a
process killed at any point resumes from the store: the rollout's last state is loaded and its last
intended routes re-applied. A tick that raises is recorded as an errored event and retried at the
next interval; it never stops the other rollouts.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from analyzer.app import wiring
from analyzer.app.compute import ComputeLock, released
from analyzer.app.settings import ServeSettings
from analyzer.app.telemetry import CountingMetrics, CountingTraces, RolloutView, Telemetry
from analyzer.config import RolloutSpec, parse_spec
from analyzer.engine import Engine, TickOutcome
from analyzer.model import MAX_BRIDGE, Phase
from analyzer.ports import Adapters
from analyzer.sim.clock import VirtualClock
from analyzer.sim.scenario import load_scenario
from analyzer.store import control
from analyzer.store.sql import SqlStore

log = structlog.get_logger("analyzer.daemon")

OWNER = "daemon"  # rollouts.meta.owner of the rollouts a daemon ticks (not those of `demo` or `run`)
TICK_ERROR = "tick-error"  # event kind of a tick that raised
_SYNC_JOB, _LEASE_JOB = "~sync", "~lease"


class LeaderElector(Protocol):
    """Who may tick. The store lease (`analyzer.store.control.StoreLease`) or a Kubernetes Lease (`KubeLease`).

    The daemon calls `try_acquire` every `renew_every` seconds and ticks only while `held(margin)`.
    """

    identity: str
    renew_every: float
    margin: float

    def try_acquire(self) -> bool: ...

    def held(self, margin: float = 0.0) -> bool: ...

    def release(self) -> None: ...

    def holder(self) -> str | None: ...


class AlwaysLeader:
    """Leader election off: this process is the only one that ticks."""

    renew_every = 1.0
    margin = 0.0

    def __init__(self, identity: str) -> None:
        self.identity = identity

    def try_acquire(self) -> bool:
        return True

    def held(self, margin: float = 0.0) -> bool:
        return True

    def release(self) -> None:
        pass

    def holder(self) -> str | None:
        return self.identity


class KubeLease:
    """A `coordination.k8s.io` Lease (`analyzer.kube.lease.LeaseElector`) driven by the daemon's lease job."""

    def __init__(self, lease: Any) -> None:
        self.lease = lease
        self.identity = lease.identity
        self.renew_every = lease.retry_period
        # Leadership ends renew_deadline after a renewal began; keep what a round may take in hand.
        self.margin = max(0.0, lease.renew_deadline - 2 * lease.retry_period)

    def try_acquire(self) -> bool:
        return bool(self.lease.round())

    def held(self, margin: float = 0.0) -> bool:
        until = self.lease.leading_until()
        return until is not None and time.monotonic() + margin < until

    def release(self) -> None:
        self.lease.stop(release=True)

    def holder(self) -> str | None:
        return self.identity if self.lease.is_leader() else None


class ScaledClock(VirtualClock):
    """Simulated time for `serve --sim`: from `origin`, `speed` simulated seconds pass per real second.

    Anchored at the rollout's creation (stored), so a restarted process reads the same time line.
    """

    def __init__(self, origin: datetime, speed: float) -> None:
        super().__init__(origin)
        self.origin = origin
        self.speed = speed

    def now(self) -> datetime:
        return self.origin + (datetime.now(UTC) - self.origin) * self.speed

    def advance(self, seconds: float) -> datetime:
        raise TypeError("a scaled clock follows the wall clock")


class SharedParts:
    """Rollouts of one template share their strategy, timing, analysis and sources (frozen models, equal by value).

    A parsed spec holds ~15 KB, most of it these parts; a fleet started from a few templates keeps one copy each.
    At most `size` distinct parts are remembered (least recently used go first), so the daemon's memory stays
    bounded whatever specs come and go.
    """

    PARTS = ("strategy", "timing", "analysis", "sources")

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._parts: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = threading.Lock()

    def share(self, spec: RolloutSpec) -> RolloutSpec:
        update = {}
        with self._lock:
            for name in self.PARTS:
                part = getattr(spec, name)
                key = (name, part.model_dump_json())
                update[name] = self._parts.setdefault(key, part)
                self._parts.move_to_end(key)
            while len(self._parts) > self.size:
                self._parts.popitem(last=False)
        return spec.model_copy(update=update)


@dataclass
class Runner:
    """One rollout this process ticks."""

    rollout_id: str
    engine: Engine
    adapters: Adapters
    wall_interval: float  # real seconds between ticks
    seed: int


class Daemon:
    def __init__(self, settings: ServeSettings, store: SqlStore, *, elector: LeaderElector | None = None,
                 telemetry: Telemetry | None = None) -> None:
        self.settings = settings
        self.store = store
        self._wiring = wiring.Settings(db=settings.db, prometheus_url=settings.prometheus_url,
                                       jaeger_url=settings.jaeger_url, kubeconfig=settings.kubeconfig,
                                       kube_context=settings.kube_context, in_cluster=settings.in_cluster)
        if elector is None:
            elector = self._elector(settings)
        self.elector = elector
        self.telemetry = telemetry or Telemetry()
        self.telemetry.watch(self._views)
        self.runners: dict[str, Runner] = {}
        self.parts = SharedParts()
        self.compute = ComputeLock()  # one tick computes at a time; a tick waiting on a source lets another
        self.leading = False
        self.ticks = 0  # ticks run by this process (tests and the benchmark read it)
        self._lock = threading.RLock()
        # Jobs in flight. APScheduler's shutdown(wait=True) holds its job-store lock while it waits, so a job
        # that then touches the scheduler (a rollout finishing unschedules itself) would deadlock: stop()
        # pauses the scheduler, waits for this count to reach 0 itself, then shuts down without waiting.
        self._inflight = 0
        self._idle = threading.Condition()
        self._stopping = False
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(settings.max_concurrent_ticks)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
        )
        self.scheduler.add_listener(self._on_lost, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        # Lost ticks are counted and logged by _on_lost; a busy poll job skipping a beat is no news.
        logging.getLogger("apscheduler").setLevel(logging.ERROR)

    def _elector(self, settings: ServeSettings) -> LeaderElector:
        if not settings.leader_election:
            return AlwaysLeader(settings.identity)
        if settings.lease == "kubernetes":
            ttl = max(3, round(settings.lease_ttl))
            return KubeLease(wiring.leader_elector(self._wiring, namespace=settings.lease_namespace,
                                                   identity=settings.identity, lease_duration=ttl,
                                                   renew_deadline=ttl * 2 / 3, retry_period=ttl / 6))
        return control.StoreLease(self.store, settings.identity, ttl=settings.lease_ttl)

    # ---- lifecycle ----

    def start(self) -> None:
        now = datetime.now(UTC)
        renew = max(0.2, self.elector.renew_every)
        self.scheduler.add_job(self._job, IntervalTrigger(seconds=renew), args=[self._lease_round], id=_LEASE_JOB,
                               next_run_time=now, misfire_grace_time=None)
        self.scheduler.add_job(self._job, IntervalTrigger(seconds=self.settings.poll), args=[self._sync_round],
                               id=_SYNC_JOB,
                               next_run_time=now + timedelta(seconds=0.05), misfire_grace_time=None)
        self.scheduler.start()
        log.info("daemon_started", identity=self.settings.identity, sim=self.settings.sim,
                 leader_election=self.settings.leader_election)

    def stop(self, timeout: float = 60.0) -> None:
        """Start no new ticks, let running ones finish (they record themselves), give the lease up."""
        if self.scheduler.running:
            self.scheduler.pause()
            with self._idle:
                self._stopping = True
                self._idle.wait_for(lambda: self._inflight == 0, timeout=timeout)
            self.scheduler.shutdown(wait=False)
        if self.leading:
            try:
                self.elector.release()
            except Exception as exc:  # the store may be gone; the lease then expires on its own
                log.warning("lease_release_failed", error=str(exc))
        self.leading = False
        log.info("daemon_stopped", ticks=self.ticks)

    @property
    def role(self) -> str:
        return "leader" if self.leading and self.elector.held() else "follower"

    def nudge(self) -> None:
        """Look for new rollouts and commands now rather than at the next poll."""
        if self._stopping:
            return
        with contextlib.suppress(JobLookupError, RuntimeError):
            self.scheduler.modify_job(_SYNC_JOB, next_run_time=datetime.now(UTC))

    def _job(self, fn: Callable[..., None], *args: Any) -> None:
        """Every scheduled call runs through here, so stop() knows when none is running."""
        with self._idle:
            if self._stopping:
                return
            self._inflight += 1
        try:
            fn(*args)
        finally:
            with self._idle:
                self._inflight -= 1
                self._idle.notify_all()

    # ---- leadership ----

    def _lease_round(self) -> None:
        try:
            held = self.elector.try_acquire()
        except Exception as exc:
            log.warning("lease_unavailable", error=str(exc))
            held = False
        if held and not self.leading:
            log.info("leader_elected", identity=self.settings.identity)
            self.leading = True
            self.nudge()
        elif not held and self.leading:
            log.warning("leadership_lost", identity=self.settings.identity)
            self.leading = False
            self._drop_all()

    def _drop_all(self) -> None:
        with self._lock:
            for rollout_id in list(self.runners):
                self._unschedule(rollout_id)

    # ---- finding work ----

    def _sync_round(self) -> None:
        if not self.leading or not self.elector.held(self._margin()):
            return
        try:
            self._sync()
        except Exception as exc:  # the store may be briefly unreachable: try again next poll
            log.warning("sync_failed", error=f"{type(exc).__name__}: {exc}")

    def _sync(self) -> None:
        rows = {r.id: r for r in control.unfinished_rollouts(self.store, owner=OWNER)}
        active = {i for i, r in rows.items() if not Phase(r.phase).terminal}
        with self._lock:
            for rollout_id in active - self.runners.keys():
                self._schedule(rollout_id)
            for rollout_id in self.runners.keys() - active:
                self._unschedule(rollout_id)
        by_rollout: dict[str, list[control.PendingCommand]] = {}
        for cmd in control.pending_commands(self.store):
            by_rollout.setdefault(cmd.rollout_id, []).append(cmd)
        for rollout_id, cmds in by_rollout.items():
            with self._lock:
                scheduled = rollout_id in self.runners
            if scheduled:
                # The rollout's own job takes its commands, now; finished meanwhile: the next round does.
                with contextlib.suppress(JobLookupError):
                    self.scheduler.modify_job(rollout_id, next_run_time=datetime.now(UTC))
            elif rollout_id in rows:
                self._command_parked(rollout_id, cmds)
            else:  # finished, or not a daemon's rollout: nothing will apply them
                for cmd in cmds:
                    control.claim_command(self.store, cmd.id, control.IGNORED)
                    log.info("command_ignored", rollout=rollout_id, command=cmd.command.value)

    def _margin(self) -> float:
        return self.elector.margin

    def _runner(self, row: control.RolloutRow) -> Runner:
        spec = self.parts.share(parse_spec(row.spec, f"rollout {row.id}"))
        state = self.store.load_state(row.id)
        assert state is not None
        seed = int(row.meta.get("seed", 0))
        if self.settings.sim:
            scenario = load_scenario(str(row.meta.get("scenario", "healthy")))
            clock = ScaledClock(row.created_at, self.settings.sim_speed)
            # A restarted process must not replay the random draws it made before: the mesh's stream
            # is seeded by the tick it resumes at too (identical repeated samples would fake evidence).
            rig = wiring.simulated(spec, scenario, seed=seed * 1_000_003 + state.tick, store=self.store, clock=clock)
            rig.mesh.t0 = row.created_at  # the scenario's time line starts at creation, across restarts
            # No window reaches back further than a bridged gap: older simulated intervals are let go.
            rig.mesh.retain = MAX_BRIDGE + 2 * timedelta(seconds=spec.timing.interval)
            adapters = rig.adapters
            wall_interval = spec.timing.interval / self.settings.sim_speed
        else:
            spec = wiring.with_overrides(spec, self._wiring)
            adapters = wiring.live(spec, store=self.store, settings=self._wiring)
            wall_interval = spec.timing.interval
        errors = self.telemetry.source_errors
        adapters = replace(adapters, metrics=CountingMetrics(adapters.metrics, errors.labels("metrics")),
                           traces=None if adapters.traces is None else CountingTraces(adapters.traces,
                                                                                      errors.labels("traces")))
        adapters = released(adapters, self.compute)
        engine = Engine.resume(spec, state, adapters, seed=seed)  # re-applies the last intended routes
        return Runner(row.id, engine, adapters, wall_interval, seed)

    def _schedule(self, rollout_id: str) -> None:
        try:
            row = control.rollout_row(self.store, rollout_id)
            runner = self._runner(row)
        except Exception as exc:
            log.error("rollout_unloadable", rollout=rollout_id, error=f"{type(exc).__name__}: {exc}")
            return
        self.runners[row.id] = runner
        now = datetime.now(UTC)
        first = now
        if row.last_tick_at is not None and runner.engine.state.phase is not Phase.PENDING:
            # Keep the cadence across a restart: the next tick is one interval after the last recorded one.
            first = max(now, row.last_tick_at + timedelta(seconds=runner.wall_interval))
        self.scheduler.add_job(self._job, IntervalTrigger(seconds=runner.wall_interval, start_date=first),
                               args=[self._run, row.id], id=row.id, next_run_time=first, replace_existing=True,
                               misfire_grace_time=max(1, int(runner.wall_interval)))
        log.info("rollout_scheduled", rollout=row.id, phase=runner.engine.state.phase.value,
                 tick=runner.engine.state.tick, every_s=runner.wall_interval)

    def _unschedule(self, rollout_id: str) -> None:
        self.runners.pop(rollout_id, None)
        with contextlib.suppress(JobLookupError):
            self.scheduler.remove_job(rollout_id)

    # ---- ticking ----

    def _run(self, rollout_id: str) -> None:
        """One scheduled tick of one rollout (or the operator commands waiting for it)."""
        with self._lock:
            runner = self.runners.get(rollout_id)
        if runner is None:
            return
        with self.compute.held():
            if not self.leading or not self.elector.held(self._margin()):
                return  # checked with the lock: the lease may go while a tick waits for its turn
            started = time.perf_counter()
            try:
                self._tick(runner)
            finally:
                self.telemetry.tick_seconds.observe(time.perf_counter() - started)
        if runner.engine.done:
            with self._lock:
                if self.runners.get(rollout_id) is runner:
                    self._unschedule(rollout_id)
            log.info("rollout_finished", rollout=rollout_id, phase=runner.engine.state.phase.value)

    def _tick(self, runner: Runner) -> None:
        try:
            self._fence(runner)
            for outcome in self._advance(runner):
                self.telemetry.decisions.labels(outcome.decision.kind.value).inc()
        except Exception as exc:
            self.telemetry.tick_errors.inc()
            message = f"{type(exc).__name__}: {exc}"
            log.error("tick_failed", rollout=runner.rollout_id, error=message)
            self._record_error(runner, message)
            self._reload(runner)

    def _advance(self, runner: Runner) -> Iterator[TickOutcome]:
        engine = runner.engine
        if engine.state.phase is Phase.PENDING:
            yield engine.start()
            self.ticks += 1
            return
        cmds = control.pending_commands(self.store, runner.rollout_id, after_tick=engine.state.tick)
        if not cmds:
            yield engine.tick()
            self.ticks += 1
            return
        for cmd in cmds:
            # Claimed for the next tick number before ticking: after a crash in between, the store shows
            # a claim beyond the last recorded tick, and the command is applied again, exactly once.
            control.claim_command(self.store, cmd.id, engine.state.tick + 1)
            yield engine.tick(cmd.command)
            self.ticks += 1
            log.info("command_applied", rollout=runner.rollout_id, command=cmd.command.value,
                     phase=engine.state.phase.value)

    def _fence(self, runner: Runner) -> None:
        """Pick the store's state up when it moved past ours (a former leader's last tick, a retried write)."""
        last = control.last_tick(self.store, runner.rollout_id)
        if last is not None and (runner.engine.state.phase is Phase.PENDING or last != runner.engine.state.tick):
            log.warning("state_moved", rollout=runner.rollout_id, ours=runner.engine.state.tick, store=last)
            self._reload(runner)

    def _reload(self, runner: Runner) -> None:
        try:
            state = self.store.load_state(runner.rollout_id)
            if state is not None:
                runner.engine = Engine.resume(runner.engine.spec, state, runner.adapters, seed=runner.seed)
        except Exception as exc:
            log.error("reload_failed", rollout=runner.rollout_id, error=str(exc))

    def _record_error(self, runner: Runner, message: str) -> None:
        try:
            self.store.record_event(runner.rollout_id, runner.engine.state.tick, TICK_ERROR, message[:2000])
        except Exception as exc:
            log.error("tick_error_unrecorded", rollout=runner.rollout_id, error=str(exc))

    def _command_parked(self, rollout_id: str, cmds: list[control.PendingCommand]) -> None:
        """Commands for a rollout that is not ticking (Paused, Inconclusive): applied here, at once."""
        try:
            runner = self._runner(control.rollout_row(self.store, rollout_id))
            for outcome in self._advance(runner):
                self.telemetry.decisions.labels(outcome.decision.kind.value).inc()
        except Exception as exc:
            self.telemetry.tick_errors.inc()
            log.error("command_failed", rollout=rollout_id, error=f"{type(exc).__name__}: {exc}")
            return
        if not runner.engine.done:
            self.nudge()  # resumed: the next round schedules it

    def _on_lost(self, event: JobExecutionEvent) -> None:
        if event.job_id not in (_SYNC_JOB, _LEASE_JOB):
            self.telemetry.ticks_lost.inc()
            log.warning("tick_lost", rollout=event.job_id, code=event.code)

    # ---- views ----

    def _views(self) -> list[RolloutView]:
        with self._lock:
            runners = list(self.runners.values())
        views = []
        for r in runners:
            e = r.engine
            evidence = tuple((v.metric, float(v.e_value)) for v in e.last_verdicts if v.e_value is not None)
            views.append(RolloutView(r.rollout_id, e.spec.name, e.spec.target.namespace, e.spec.target.canary.subset,
                                     e.state, evidence))
        return views

    def snapshot(self) -> dict[str, Any]:
        return {"identity": self.settings.identity, "role": self.role, "rollouts": len(self.runners),
                "ticks": self.ticks}
