"""Backtest: re-run the judge and the policy on a rollout's recorded ticks under another config. Pure.

The recorded observations are the per-tick increments the engine judged, so with the rollout's own
config the replay reproduces every verdict and decision; with another config it shows what that config
would have decided on the same traffic. The replay takes the traffic split of each tick from the
recording (the observations were routed by the recorded weights, not the new config's), and it stops
where the recording stops: a new config that wants more ticks than were recorded ends undecided.
Reading the store is the adapter's job (`analyzer.store.backtest`).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from analyzer import policy
from analyzer.config import PrometheusSource, RolloutSpec, TraceMetric
from analyzer.judge import judge
from analyzer.model import (
    MAX_BRIDGE,
    Command,
    Decision,
    DecisionKind,
    HookAnswers,
    MetricVerdict,
    Observation,
    Phase,
    RolloutState,
    next_window_start,
)

# The decisions that settle a rollout, and the outcome each stands for.
OUTCOME_BY_DECISION = {
    DecisionKind.PROMOTE: "promoted",
    DecisionKind.ROLLBACK: "rolled_back",
    DecisionKind.ABORT: "aborted",
    DecisionKind.PAUSE: "paused",
    DecisionKind.INCONCLUSIVE: "inconclusive",
    DecisionKind.FAIL: "failed",
}
UNDECIDED = "undecided"
_UNAVAILABLE = re.compile(r"source unavailable \((.*)\); holding")


class NotReplayable(ValueError):
    """The recording lacks what this config's judge needs (e.g. spans for a trace metric)."""


@dataclass(frozen=True)
class RecordedTick:
    """One stored tick: when the engine took it, what it saw, what it decided and the state after."""

    tick: int
    now: datetime  # the engine's clock at the tick
    state: RolloutState  # after the decision
    decision: DecisionKind
    reason: str
    observation: Observation | None
    verdicts: tuple[MetricVerdict, ...]


@dataclass(frozen=True)
class ReplayedTick:
    tick: int
    now: datetime
    state: RolloutState
    decision: DecisionKind
    reason: str
    verdicts: tuple[MetricVerdict, ...]


@dataclass(frozen=True)
class Difference:
    """The first tick where the new config decides otherwise than the recording."""

    tick: int
    minute: float
    recorded: str
    recorded_reason: str
    new: str
    new_reason: str


@dataclass(frozen=True)
class RolloutBacktest:
    rollout_id: str
    recorded_outcome: str  # an OUTCOME_BY_DECISION value, or "undecided"
    recorded_minute: float | None
    new_outcome: str
    new_minute: float | None
    difference: Difference | None
    ticks: tuple[ReplayedTick, ...]

    @property
    def changed(self) -> bool:
        return self.recorded_outcome != self.new_outcome

    def to_json(self) -> dict[str, Any]:
        d = self.difference
        return {
            "rollout_id": self.rollout_id,
            "recorded": {"outcome": self.recorded_outcome, "minute": self.recorded_minute},
            "new": {"outcome": self.new_outcome, "minute": self.new_minute},
            "first_difference": None if d is None else {
                "tick": d.tick, "minute": d.minute, "recorded": d.recorded, "recorded_reason": d.recorded_reason,
                "new": d.new, "new_reason": d.new_reason},
        }


@dataclass(frozen=True)
class FleetTotals:
    rollouts: int
    changed: int
    promoted_to_rolled_back: int
    rolled_back_to_promoted: int
    recorded_median_minute: float | None  # over the rollouts both configs decided, so the two compare
    new_median_minute: float | None
    false_rollback_rate: float | None  # new rollbacks among the recorded promotions
    recorded_promotions: int
    undecided: int  # the new config had not decided when the recording ended

    @property
    def median_change(self) -> float | None:
        if self.recorded_median_minute is None or self.new_median_minute is None:
            return None
        return self.new_median_minute - self.recorded_median_minute

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "median_change_minutes": self.median_change}


def with_analysis(spec: RolloutSpec, **changes: float) -> RolloutSpec:
    """The spec with analysis settings changed: `alpha`, `promotion_alpha`, `srm_alpha` on the analysis,
    `mde`, `tolerance` on every metric that has them (e.g. `with_analysis(spec, alpha=0.005)`)."""
    analysis = spec.analysis
    top = {k: v for k, v in changes.items() if k in type(analysis).model_fields and k != "metrics"}
    per_metric = {k: v for k, v in changes.items() if k not in top}
    unknown = [k for k in per_metric if k not in ("mde", "tolerance")]
    if unknown:
        raise ValueError(f"with_analysis: {unknown[0]!r} is not an analysis or per-metric setting")
    metrics = [m.model_copy(update={k: v for k, v in per_metric.items() if k in type(m).model_fields})
               for m in analysis.metrics]
    data = spec.model_dump(mode="json", by_alias=False)
    data["analysis"] = {**analysis.model_copy(update={**top, "metrics": metrics}).model_dump(mode="json",
                                                                                           by_alias=False)}
    return type(spec).model_validate(data)  # validated again: a change must still make a valid spec


def query_lag(spec: RolloutSpec) -> float:
    """The lag the live source applied (observation end = tick time - lag): one scrape for Prometheus."""
    metrics = spec.sources.metrics
    return float(metrics.scrape_interval) if isinstance(metrics, PrometheusSource) else 0.0


def _command(tick: RecordedTick) -> Command | None:
    """Operator commands are replayed as they came; the decision and its reason tell them apart."""
    if tick.decision is DecisionKind.RESUME:
        return Command.RESUME
    if tick.decision is DecisionKind.ABORT:
        return Command.ABORT
    if tick.decision is DecisionKind.PAUSE and tick.reason == "paused by request":
        return Command.PAUSE
    if tick.decision is DecisionKind.PROMOTE and tick.reason == "promoted by request":
        return Command.PROMOTE
    return None


def _unavailable(tick: RecordedTick) -> str | None:
    for v in tick.verdicts:
        found = _UNAVAILABLE.search(v.reason)
        if found:
            return found.group(1)
    return None


def outcome_of(decisions: Sequence[tuple[DecisionKind, datetime]], start: datetime) -> tuple[str, float | None]:
    """The last settling decision and its minute from the start; undecided when none."""
    for kind, now in reversed(decisions):
        if kind in OUTCOME_BY_DECISION:
            return OUTCOME_BY_DECISION[kind], (now - start).total_seconds() / 60.0
    return UNDECIDED, None


def backtest_rollout(
    rollout_id: str,
    recorded_spec: RolloutSpec,
    new_spec: RolloutSpec,
    ticks: Sequence[RecordedTick],
    *,
    seed: int = 0,
) -> RolloutBacktest:
    """Replay the recorded ticks (in the order they were written) through `new_spec`'s judge and policy."""
    # A diagnostic trace metric replays as "no trace source" and cannot change a decision; a gating one can.
    if any(isinstance(m, TraceMetric) and m.gate for m in new_spec.analysis.metrics):
        raise NotReplayable("a gating trace metric needs the sampled spans, which the store does not keep")
    if not ticks or ticks[0].decision is not DecisionKind.START:
        raise NotReplayable("the recording does not begin with the rollout's start")
    start = ticks[0].now
    lag = query_lag(recorded_spec)
    state, decision = policy.start(new_spec, rollout_id, start)
    replayed = [ReplayedTick(ticks[0].tick, start, state, decision.kind, decision.reason, ())]
    difference: Difference | None = None
    previous = ticks[0]
    for rec in ticks[1:]:
        if state.phase.terminal and _command(rec) is None:
            break  # the engine ticks no further: the new config has decided
        state, decision, verdicts = _step(recorded_spec, new_spec, state, previous, rec, seed, lag)
        replayed.append(ReplayedTick(rec.tick, rec.now, state, decision.kind, decision.reason, verdicts))
        if difference is None and (decision.kind != rec.decision or state.phase != rec.state.phase):
            difference = Difference(rec.tick, (rec.now - start).total_seconds() / 60.0, rec.decision.value,
                                    rec.reason, decision.kind.value, decision.reason)
        previous = rec
    recorded_outcome, recorded_minute = outcome_of([(t.decision, t.now) for t in ticks], start)
    new_outcome, new_minute = outcome_of([(t.decision, t.now) for t in replayed], start)
    if difference is None and len(replayed) < len(ticks):
        extra = ticks[len(replayed)]
        difference = Difference(extra.tick, (extra.now - start).total_seconds() / 60.0, extra.decision.value,
                                extra.reason, "none", f"already {state.phase.value}")
    if difference is None and new_outcome != recorded_outcome:
        last = replayed[-1]
        difference = Difference(last.tick, (last.now - start).total_seconds() / 60.0, "none",
                                "the recording ends here", last.decision.value, last.reason)
    return RolloutBacktest(rollout_id, recorded_outcome, recorded_minute, new_outcome, new_minute, difference,
                           tuple(replayed))


_WAITING, _STOPPED, _REQUESTED = "waiting: ", "stopped before any traffic moved: ", "rollback: requested by "
_DRIFT = "; resume to re-apply the rollout's weights, or abort"
_HOOK_LIMIT = re.compile(r"rollout hooks failed \d+ times \(limit \d+\); last: (.*)$", re.S)


def _hook_answers(previous: RecordedTick, rec: RecordedTick) -> tuple[HookAnswers, str | None]:
    """What the gate hooks answered at this tick, read back from the recording (they are the environment,
    like operator commands), and the confirm hook's refusal if one held the tick."""
    blocked = rec.reason.removeprefix(_WAITING) if (
        rec.decision is DecisionKind.HOLD and rec.reason.startswith(_WAITING)) else None
    stop = rec.reason.removeprefix(_STOPPED) if (
        rec.decision is DecisionKind.FAIL and rec.reason.startswith(_STOPPED)) else None
    rollback = rec.reason.removeprefix("rollback: ") if rec.reason.startswith(_REQUESTED) else None
    failed = None
    if rec.state.hook_failures > previous.state.hook_failures:
        last = _HOOK_LIMIT.search(rec.reason)
        failed = last.group(1) if last else "a rollout hook failed (as recorded)"
    return HookAnswers(stop=stop, rollback=rollback, rollout_failed=failed), blocked


def window(spec: RolloutSpec, state: RolloutState, now: datetime, lag: float) -> tuple[datetime, datetime]:
    """The evidence window the engine asks for at `now` (`Engine._window`, statistics.md §5.7): it ends one
    lag back and starts at the last common edge, bridging at most MAX_BRIDGE, never before the step's first
    scrape. Needed where the recording has no observation (the source was unavailable)."""
    end = now - timedelta(seconds=lag)
    start = state.last_edge or end - timedelta(seconds=spec.timing.interval)
    if end - start > MAX_BRIDGE:
        start = end - timedelta(seconds=spec.timing.interval)
    if state.step_started_at is not None:
        start = max(start, state.step_started_at + timedelta(seconds=lag))
    return start, end


def _step(
    recorded_spec: RolloutSpec, new_spec: RolloutSpec, state: RolloutState, previous: RecordedTick,
    rec: RecordedTick, seed: int, lag: float,
) -> tuple[RolloutState, Decision, tuple[MetricVerdict, ...]]:
    """One engine tick: judge the recorded increment when the phase observes, then the policy decides."""
    if rec.decision is DecisionKind.FAIL and rec.tick == previous.tick and not state.phase.terminal:
        # A follow-up under the same tick: the engine could not act (an environment fault), so it fails here too.
        failed, decision = policy.fail(state, rec.now, rec.reason)
        return failed, decision, ()
    command = _command(rec)
    if command is None and rec.decision is DecisionKind.PAUSE and rec.reason.endswith(_DRIFT):
        # Someone else moved the traffic (target.onDrift: pause): the engine paused before judging.
        paused, decision = policy.pause_for_drift(state, rec.now, rec.reason.removeprefix("paused: ")[:-len(_DRIFT)])
        return paused, decision, ()
    verdicts: list[MetricVerdict] = []
    if state.phase in policy.ACTIVE and command is None:
        assert state.evidence is not None
        context = policy.judge_context(new_spec, state, rec.now, seed=seed)
        # The split the traffic really had is the recorded one: check the observed counts against it.
        recorded = policy.judge_context(recorded_spec, previous.state, rec.now, seed=seed)
        unavailable = _unavailable(rec) if rec.observation is None else None
        if rec.observation is None and unavailable is None and previous.state.phase not in policy.ACTIVE:
            unavailable = "no recorded observation: the recorded rollout was not observing at this tick"
        context = replace(context, expected_share=recorded.expected_share, unavailable=unavailable)
        evidence, verdicts = judge(new_spec, state.evidence, rec.observation, context)
        obs = rec.observation
        start, end = (obs.start, obs.end) if obs is not None else window(new_spec, state, rec.now, lag)
        edge = next_window_start(start, end, obs) if start < end else state.last_edge
        state = replace(state, evidence=evidence, last_edge=edge)
    elif command is not None:
        # After a pause or a person's command the windows start afresh, one scrape after the routes it re-applies.
        state = replace(state, last_edge=rec.now + timedelta(seconds=lag))
    hooks, blocked = _hook_answers(previous, rec) if command is None else (None, None)
    new_state, decision = policy.decide(new_spec, state, verdicts, rec.now, command, hooks)
    # A confirm hook that refused held the tick; it is asked (and so refuses) only before the same kind of move.
    confirm = state.phase is Phase.INITIALIZING or decision.kind is DecisionKind.PROMOTE or (
        decision.kind is DecisionKind.ADVANCE and new_state.phase is Phase.PROGRESSING)
    if blocked is not None and confirm:
        new_state, decision = policy.await_confirmation(new_spec, state, blocked)
    return new_state, decision, tuple(verdicts)


def fleet_totals(results: Sequence[RolloutBacktest]) -> FleetTotals:
    promoted = [r for r in results if r.recorded_outcome == "promoted"]
    both = [r for r in results if r.recorded_minute is not None and r.new_minute is not None]

    def median(values: Sequence[float | None]) -> float | None:
        kept = [v for v in values if v is not None]
        return statistics.median(kept) if kept else None

    return FleetTotals(
        rollouts=len(results),
        changed=sum(r.changed for r in results),
        promoted_to_rolled_back=sum(r.new_outcome == "rolled_back" for r in promoted),
        rolled_back_to_promoted=sum(r.recorded_outcome == "rolled_back" and r.new_outcome == "promoted"
                                    for r in results),
        recorded_median_minute=median([r.recorded_minute for r in both]),
        new_median_minute=median([r.new_minute for r in both]),
        false_rollback_rate=(sum(r.new_outcome == "rolled_back" for r in promoted) / len(promoted)
                             if promoted else None),
        recorded_promotions=len(promoted),
        undecided=sum(r.new_outcome == UNDECIDED for r in results),
    )
