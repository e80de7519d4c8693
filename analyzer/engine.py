"""One tick of a rollout: observe -> judge -> decide -> act -> record.

The decision (intent) is written before acting; actions are idempotent; results are recorded after.
After a crash, `Engine.resume` reloads the last state and re-applies its intended routes, so no step
is skipped or repeated.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import structlog

from analyzer import policy
from analyzer.config import HookType, RolloutSpec
from analyzer.errors import UserError
from analyzer.judge import judge
from analyzer.model import (
    MAX_BRIDGE,
    Action,
    ActionResult,
    Command,
    Decision,
    DecisionKind,
    Event,
    HookAnswers,
    MetricVerdict,
    Notify,
    Observation,
    Phase,
    RestoreRoute,
    RolloutState,
    RouteDrift,
    Scale,
    SetHeaderRoute,
    SetWeights,
    Span,
    next_window_start,
)
from analyzer.ports import Adapters, HookResult, SourceUnavailable
from analyzer.traces import TraceReport, analyze_traces

MAX_KEPT_SPANS = 200_000  # bounds memory on long rollouts; the report uses the most recent spans


@dataclass(frozen=True)
class TickOutcome:
    state: RolloutState
    decision: Decision
    observation: Observation | None
    verdicts: tuple[MetricVerdict, ...]
    results: tuple[ActionResult, ...]


class Engine:
    def __init__(self, spec: RolloutSpec, rollout_id: str, adapters: Adapters, *, seed: int = 0) -> None:
        self.spec = spec
        self.rollout_id = rollout_id
        self.adapters = adapters
        self.metrics = adapters.metrics
        self.router = adapters.router
        self.scaler = adapters.scaler
        self.notifier = adapters.notifier
        self.store = adapters.store
        self.clock = adapters.clock
        self.traces = adapters.traces
        self.seed = seed
        self.spans: list[Span] = []  # sampled spans of the rollout so far, for the trace report
        # A sample stamped just before `now` may be stored just after it: query that far back.
        self.lag = adapters.metrics.query_lag(spec)
        self.state = RolloutState(rollout=rollout_id)
        self._load_on = False
        self.last_verdicts: tuple[MetricVerdict, ...] = ()
        self._fatal: str | None = None  # a UserError from the last actions: retrying will not help
        self.log = structlog.get_logger("analyzer.engine").bind(rollout=rollout_id, target=spec.name)

    # ---- lifecycle ----

    def start(self) -> TickOutcome:
        state, decision = policy.start(self.spec, self.rollout_id, self.clock.now())
        return self._commit(state, decision, None, ())

    @classmethod
    def resume(cls, spec: RolloutSpec, state: RolloutState, adapters: Adapters, *, seed: int = 0) -> Engine:
        """Continue a persisted rollout: re-apply its last intended routes (idempotent)."""
        engine = cls(spec, state.rollout, adapters, seed=seed)
        engine.state = state
        if not state.phase.terminal and state.weights:
            if engine.spec.target.on_drift == "pause" and engine._drifted():
                engine.log.warning("route_changed_while_down", phase=state.phase.value)
                return engine
            engine._act(policy.intended_routes(engine.spec, state))
            engine.log.info("resumed", phase=state.phase.value, step=state.step, tick=state.tick)
        engine._drive_load()
        return engine

    @property
    def done(self) -> bool:
        return self.state.phase.terminal

    def tick(self, command: Command | None = None) -> TickOutcome:
        state = self.state
        with structlog.contextvars.bound_contextvars(rollout=self.rollout_id, target=self.spec.name,
                                                    tick=state.tick + 1, step=state.step):
            return self._tick(state, command)

    def _tick(self, state: RolloutState, command: Command | None) -> TickOutcome:
        now = self.clock.now()
        log = self.log.bind(phase=state.phase.value)  # rollout, target, tick and step are context variables
        if state.phase.terminal and command is None:
            return TickOutcome(state, Decision(DecisionKind.HOLD, f"{state.phase.value}"), None, (), ())
        synced = self._reconcile(state, log)
        if isinstance(synced, RouteDrift):  # someone else moved traffic: do not fight them (target.onDrift)
            new_state, decision = policy.pause_for_drift(state, now, synced.describe())
            outcome = self._commit(new_state, decision, None, ())
            log.warning("route_drift_paused", change=synced.describe())
            return outcome
        observation: Observation | None = None
        verdicts: list[MetricVerdict] = []
        if state.phase in policy.ACTIVE and command is None:
            assert state.evidence is not None
            start, end = self._window(state, now)
            unavailable = None
            if start < end:
                try:
                    observation = self.metrics.observe(self.spec, start, end)
                except SourceUnavailable as exc:
                    unavailable = str(exc)
                    log.warning("source_unavailable", error=unavailable)
                    self.store.record_event(self.rollout_id, state.tick + 1, Event.SOURCE_UNAVAILABLE, unavailable)
            if observation is not None and self.traces is not None:
                observation = replace(observation, spans=self._spans(start, end, state.tick + 1, log))
            if observation is not None and observation.gap is not None:
                log.info("window_gap", subset=observation.gap.subset, why=observation.gap.why[:200],
                         resume=observation.gap.resume.value)
            ctx = policy.judge_context(self.spec, state, now, seed=self.seed)
            ctx = replace(ctx, unavailable=unavailable)
            evidence, verdicts = judge(self.spec, state.evidence, observation, ctx)
            edge = next_window_start(start, end, observation) if start < end else state.last_edge
            state = replace(state, evidence=evidence, last_edge=edge)
        elif command is not None:
            # After a pause or a person's command the evidence windows start afresh, one scrape after the routes
            # the command (re-)applies: a resume after a third party moved traffic must not mix two splits.
            state = replace(state, last_edge=now + timedelta(seconds=self.lag))
        hooks = self._gate_hooks(state) if command is None else None
        new_state, decision = policy.decide(self.spec, state, verdicts, now, command, hooks)
        if command is None and not (hooks and hooks.blocked):
            confirm = self._confirm(decision, new_state)
            if confirm is not None:
                new_state, decision = policy.await_confirmation(self.spec, state, confirm)
        # The rollout's trace findings are kept with its last tick, as diagnostic verdict rows.
        findings = self._trace_rows() if new_state.phase.terminal and not state.phase.terminal else ()
        outcome = self._commit(new_state, decision, observation, tuple(verdicts), synced=synced, diagnostics=findings)
        if outcome.state.phase.terminal and not state.phase.terminal:
            phase = "Succeeded" if outcome.state.phase is Phase.SUCCEEDED else "Failed"
            self._call_hooks("post-rollout", phase, outcome.state.tick)
        log.info("tick", decision=decision.kind.value, new_phase=outcome.state.phase.value,
                 reason=decision.reason[:200])
        return outcome

    # ---- gate hooks (Flagger's contract; the policy gets their answers) ----

    def _call_hooks(self, kind: HookType, phase: str, tick: int) -> list[HookResult]:
        runner = self.adapters.hooks
        hooks = self.spec.hooks_of(kind)
        if runner is None or not hooks:
            return []
        results = [runner.call(self.spec, h, rollout=self.rollout_id, phase=phase) for h in hooks]
        for r in results:
            if not r.ok or kind == "post-rollout":
                self.store.record_event(self.rollout_id, tick, Event.HOOK, r.describe())
        return results

    def _gate_hooks(self, state: RolloutState) -> HookAnswers | None:
        """Hooks asked before the decision: confirm-rollout and pre-rollout at the start; rollback and rollout
        hooks on every analysis tick."""
        tick = state.tick + 1
        if state.phase is Phase.INITIALIZING:
            waiting = [r for r in self._call_hooks("confirm-rollout", state.phase.value, tick) if not r.ok]
            if waiting:
                return HookAnswers(blocked=waiting[0].describe())
            failed = [r for r in self._call_hooks("pre-rollout", "Progressing", tick) if not r.ok]
            return HookAnswers(stop=failed[0].describe()) if failed else None
        if state.phase not in policy.ACTIVE:
            return None
        asked = [r for r in self._call_hooks("rollback", state.phase.value, tick) if r.ok]
        failed = [r for r in self._call_hooks("rollout", "Progressing", tick) if not r.ok]
        if not asked and not failed:
            return None
        return HookAnswers(rollback=f"requested by {asked[0].describe()}" if asked else None,
                           rollout_failed=failed[0].describe() if failed else None)

    def _confirm(self, decision: Decision, new_state: RolloutState) -> str | None:
        """Before traffic increases or the canary is promoted, the confirm hooks must approve; else why not."""
        kind: HookType
        if decision.kind is DecisionKind.ADVANCE and new_state.phase is Phase.PROGRESSING:
            kind = "confirm-traffic-increase"
        elif decision.kind is DecisionKind.PROMOTE:
            kind = "confirm-promotion"
        else:
            return None
        waiting = [r for r in self._call_hooks(kind, "Progressing", new_state.tick) if not r.ok]
        return waiting[0].describe() if waiting else None

    def trace_report(self) -> TraceReport | None:
        """Trace findings over the whole rollout so far (diagnostics), or None without a trace source."""
        if self.traces is None:
            return None

        t = self.spec.target
        return analyze_traces(self.spans, t.baseline.subset, t.canary.subset)

    # ---- internals ----

    def _trace_rows(self) -> tuple[MetricVerdict, ...]:
        report = self.trace_report()
        return () if report is None else tuple(report.verdicts())

    def _window(self, state: RolloutState, now: datetime) -> tuple[datetime, datetime]:
        """The evidence window [start, end) for this tick (statistics.md §5.7; docs/state-machine.md).

        It ends one scrape interval back (`lag`) and starts at the last edge both subsets had, so after
        a gap it reaches back over the gap. It never starts before the current weights' first scrape:
        the step's change time plus `lag`, so the first window of a step is shorter than an interval
        and no window mixes two weights. `start >= end` means no post-change window exists yet.
        """
        lag = timedelta(seconds=self.lag)
        interval = timedelta(seconds=self.spec.timing.interval)
        end = now - lag
        start = state.last_edge or end - interval
        if end - start > MAX_BRIDGE:
            self.log.warning("gap_too_long_to_bridge", last_edge=start.isoformat())
            start = end - interval
        if state.step_started_at is not None:
            start = max(start, state.step_started_at + lag)
        return start, end

    def _spans(self, start: datetime, end: datetime, tick: int,
               log: structlog.typing.FilteringBoundLogger) -> tuple[Span, ...] | None:
        assert self.traces is not None
        try:
            spans = tuple(self.traces.spans(self.spec, start, end))
        except SourceUnavailable as exc:
            log.warning("trace_source_unavailable", error=str(exc))
            self.store.record_event(self.rollout_id, tick, Event.TRACE_SOURCE_UNAVAILABLE, str(exc))
            return None
        self.spans.extend(spans)
        del self.spans[:-MAX_KEPT_SPANS]
        return spans

    def _commit(self, state: RolloutState, decision: Decision, observation: Observation | None,
                verdicts: tuple[MetricVerdict, ...], *, synced: ActionResult | None = None,
                diagnostics: tuple[MetricVerdict, ...] = ()) -> TickOutcome:
        before = self.state
        tick_id = self.store.record_intent(self.rollout_id, state, observation, (*verdicts, *diagnostics), decision)
        self._fatal = None
        results = self._act(decision.actions, tick=state.tick)
        if results:
            self.store.record_results(tick_id, results)
        failed = [r for r in (*results, *((synced,) if synced else ())) if not r.ok]
        if failed:
            state = replace(state, failures=state.failures + 1)
            # A configuration mistake (a missing subset, no ready pod) does not heal by retrying: fail fast.
            if (state.failures >= policy.MAX_ACTION_FAILURES or self._fatal) and not state.phase.terminal:
                reason = self._fatal or f"actions failed on {state.failures} ticks in a row: {failed[0].error}"
                state, decision = policy.fail(state, self.clock.now(), reason)
                self.store.record_intent(self.rollout_id, state, None, (), decision)
                self._act(decision.actions)
        elif state.failures:
            state = replace(state, failures=0)
        self.state = state
        if verdicts:
            self.last_verdicts = verdicts
        self._drive_load()
        self._announce(before, state, decision)
        return TickOutcome(state, decision, observation, verdicts, results)

    def _drive_load(self) -> None:
        """Synthetic load runs while the rollout is analysed, and stops on pause and at the end."""
        load = self.adapters.load
        if load is None:
            return
        on = self.state.phase in policy.ACTIVE
        load.set_active(on)
        if self._load_on and not on:
            s = load.stats()
            self.store.record_event(self.rollout_id, self.state.tick, Event.LOAD,
                                    f"load stopped: {s.completed} requests at {s.achieved_rps:.1f} rps "
                                    f"(target {s.target_rps:g}), client errors {100 * s.client_error_rate:.2f}%")
        self._load_on = on

    def _announce(self, before: RolloutState, state: RolloutState, decision: Decision) -> None:
        """Phase and step changes go to the notifier; the status goes where operators look (VS annotations)."""
        moved = (before.phase, before.step) != (state.phase, state.step)
        if moved and not any(isinstance(a, Notify) for a in decision.actions):
            step = f" step {state.step + 1}" if state.step >= 0 else ""
            self.notifier.notify(self.spec, Event.PHASE, f"{state.phase.value}{step}: {state.reason}",
                                 rollout=self.rollout_id, tick=state.tick)
        verdict = ", ".join(f"{v.metric}: {v.verdict.value}" for v in self.last_verdicts if v.gate)
        status = {"rollout": self.rollout_id, "phase": state.phase.value, "step": str(state.step + 1),
                  "decision": decision.kind.value, "verdict": verdict or "none yet"}
        try:
            self.router.annotate(self.spec, status)
        except Exception as exc:  # the status is informative; a failure must not fail the tick
            self.log.warning("route_not_annotated", error=str(exc))

    def _act(self, actions: tuple[Action, ...], tick: int | None = None) -> tuple[ActionResult, ...]:
        results = []
        for action in actions:
            try:
                self._apply(action, self.state.tick if tick is None else tick)
                results.append(ActionResult(action, True))
            except Exception as exc:  # an adapter failure must not kill the loop; it is recorded and retried
                self.log.error("action_failed", action=type(action).__name__, error=str(exc))
                if isinstance(exc, UserError):
                    self._fatal = str(exc)
                results.append(ActionResult(action, False, f"{type(exc).__name__}: {exc}"))
        return tuple(results)

    def _apply(self, action: Action, tick: int) -> None:
        if isinstance(action, SetWeights):
            self.router.set_weights(self.spec, dict(action.weights))
        elif isinstance(action, SetHeaderRoute):
            self.router.set_header_route(self.spec, action.match)
        elif isinstance(action, RestoreRoute):
            self.router.restore(self.spec)
        elif isinstance(action, Scale):
            self.scaler.scale(self.spec, action.subset, action.replicas)
        elif isinstance(action, Notify):
            self.notifier.notify(self.spec, action.event, action.message, rollout=self.rollout_id, tick=tick)
            self.store.record_event(self.rollout_id, tick, action.event, action.message)

    def _drifted(self) -> bool:
        try:
            return self.router.drift(self.spec) is not None
        except Exception as exc:  # unreadable now: re-apply as before, the next tick looks again
            self.log.warning("routes_unreadable", error=str(exc))
            return False

    def _reconcile(self, state: RolloutState,
                   log: structlog.typing.FilteringBoundLogger) -> ActionResult | RouteDrift | None:
        """Re-apply the intended weights when our own write failed, or when someone edited the route and the
        spec says `onDrift: correct`. A third party's edit under `onDrift: pause` is returned as a RouteDrift.

        Returns the result of the re-apply (or of reading the routes), None when the routes were in sync.
        """
        if state.phase.terminal or not state.weights:
            return None
        intended = SetWeights(dict(state.weights))
        try:
            current = self.router.get_weights(self.spec)
        except Exception as exc:
            log.warning("routes_unreadable", error=str(exc))
            return ActionResult(intended, False, f"{type(exc).__name__}: {exc}")
        if current == dict(state.weights):
            return None
        if self.spec.target.on_drift == "pause":
            try:
                drift = self.router.drift(self.spec)
            except Exception as exc:
                log.warning("routes_unreadable", error=str(exc))
                return ActionResult(intended, False, f"{type(exc).__name__}: {exc}")
            if drift is not None:
                return drift
        log.warning("route_drift_corrected", found=current, intended=dict(state.weights))
        self.store.record_event(self.rollout_id, state.tick, Event.DRIFT, f"weights {current} reset to "
                                f"{dict(state.weights)}")
        return self._act((intended,))[0]


def decision_minute(state: RolloutState) -> float | None:
    if state.decided_at is None or state.started_at is None:
        return None
    return (state.decided_at - state.started_at).total_seconds() / 60.0

