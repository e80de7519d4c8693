"""The rollout state machine: state + verdicts + time -> next state + actions. Pure, no I/O.

Transitions: the one table is docs/state-machine.md; each row is a branch below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from analyzer.config import RolloutSpec
from analyzer.judge import JudgeContext, initial_evidence
from analyzer.model import (
    Action,
    Decision,
    MetricVerdict,
    Notify,
    Phase,
    RolloutState,
    Scale,
    SetHeaderRoute,
    SetWeights,
    Verdict,
)

MAX_ACTION_FAILURES = 5
ACTIVE = frozenset({Phase.HEADER_TESTING, Phase.PROGRESSING})
COMMANDS = ("abort", "pause", "resume", "promote")


def weights_for(spec: RolloutSpec, canary_weight: int) -> dict[str, int]:
    t = spec.target
    return {t.baseline.subset: 100 - canary_weight, t.canary.subset: canary_weight}


def partial_steps(spec: RolloutSpec) -> list[int]:
    """The weight steps below 100; promotion is the step to 100."""
    return spec.strategy.weights[:-1]


def _set_weights(spec: RolloutSpec, canary_weight: int) -> SetWeights:
    return SetWeights(weights_for(spec, canary_weight))


def header_on(spec: RolloutSpec) -> SetHeaderRoute:
    assert spec.strategy.header_phase is not None
    return SetHeaderRoute(spec.strategy.header_phase.as_match(), spec.target.canary.subset)


HEADER_OFF = SetHeaderRoute(None)


def intended_routes(spec: RolloutSpec, state: RolloutState) -> tuple[Action, ...]:
    """The routes a state stands for: re-applied on resume and after a restart (idempotent)."""
    return (SetWeights(dict(state.weights)), header_on(spec) if state.header_route else HEADER_OFF)


def start(spec: RolloutSpec, rollout_id: str, now: datetime) -> tuple[RolloutState, Decision]:
    state = RolloutState(
        rollout=rollout_id,
        phase=Phase.INITIALIZING,
        started_at=now,
        step_started_at=now,
        weights=weights_for(spec, 0),
        evidence=initial_evidence(spec),
        reason="initializing: canary scaled up, all traffic on the baseline",
    )
    actions: tuple[Action, ...] = (
        Scale(spec.target.canary.subset, spec.target.canary.replicas),
        _set_weights(spec, 0),
        HEADER_OFF,
    )
    return state, Decision("start", state.reason, actions)


def judge_context(spec: RolloutSpec, state: RolloutState, now: datetime, *, seed: int = 0) -> JudgeContext:
    """What the judge must know of the phase: the expected split, warm-up, and whether promotion is in view."""
    interval = spec.timing.interval
    warmup = False
    if state.started_at is not None and spec.timing.warmup > 0:
        # The canary first takes traffic one interval after start (Initializing).
        warmup = (now - state.started_at).total_seconds() <= interval + spec.timing.warmup + 1e-6
    share: float | None = None
    # The first interval of a step still holds traffic routed by the old weights (scrape and query lag),
    # so the split is only checked from the second interval on.
    if state.phase is Phase.PROGRESSING and not state.header_route and state.step_ticks_all > 0:
        share = state.weights.get(spec.target.canary.subset, 0) / 100.0
    # Promotion evidence is only worth computing once this tick can complete the dwell.
    promote = _at_last_partial(spec, state) and state.step_ticks + 1 >= spec.timing.min_dwell
    return JudgeContext(expected_share=share, warmup=warmup, assess_promotion=promote, seed=seed + state.tick)


def _at_last_partial(spec: RolloutSpec, state: RolloutState) -> bool:
    if state.phase is Phase.HEADER_TESTING:
        return spec.strategy.type != "canary"
    return state.phase is Phase.PROGRESSING and state.step == len(partial_steps(spec)) - 1


def decide(
    spec: RolloutSpec,
    state: RolloutState,
    verdicts: Sequence[MetricVerdict],
    now: datetime,
    command: str | None = None,
) -> tuple[RolloutState, Decision]:
    """One tick of the state machine. `state.evidence` must already hold this tick's evidence."""
    state = replace(state, tick=state.tick + 1)
    if command is not None:
        return _command(spec, state, command, now)
    if state.phase is Phase.INITIALIZING:
        return _begin_testing(spec, state, now)
    if state.phase is Phase.PROMOTING:
        nxt = replace(state, phase=Phase.SUCCEEDED, reason=state.reason)
        scale = Scale(spec.target.baseline.subset, spec.strategy.baseline_replicas_after_promotion)
        return nxt, Decision("finish", "promoted: baseline scaled down and kept", (scale,))
    if state.phase is Phase.ROLLING_BACK:
        nxt = replace(state, phase=Phase.ROLLED_BACK)
        return nxt, Decision("finish", "rolled back: canary scaled to 0", (Scale(spec.target.canary.subset, 0),))
    if state.phase not in ACTIVE:
        return state, Decision("hold", f"{state.phase.value}: nothing to do")
    return _judge_step(spec, state, verdicts, now)


def _begin_testing(spec: RolloutSpec, state: RolloutState, now: datetime) -> tuple[RolloutState, Decision]:
    if spec.strategy.header_phase is not None:
        h = spec.strategy.header_phase
        reason = f"header phase: requests with {h.header} {h.match} {h.value!r} go to {spec.target.canary.subset}"
        nxt = _enter(state, Phase.HEADER_TESTING, -1, now, reason, header_route=True)
        return nxt, Decision("advance", reason, (header_on(spec),))
    return _enter_step(spec, state, 0, now)


def _enter(
    state: RolloutState, phase: Phase, step: int, now: datetime, reason: str, *, header_route: bool,
    weights: dict[str, int] | None = None,
) -> RolloutState:
    return replace(
        state, phase=phase, step=step, step_started_at=now, step_ticks=0, step_ticks_all=0, reason=reason,
        header_route=header_route, weights=weights if weights is not None else state.weights,
    )


def _enter_step(spec: RolloutSpec, state: RolloutState, step: int, now: datetime) -> tuple[RolloutState, Decision]:
    weight = partial_steps(spec)[step]
    reason = f"step {step + 1}/{len(partial_steps(spec))}: canary weight {weight}%"
    nxt = _enter(state, Phase.PROGRESSING, step, now, reason, header_route=False, weights=weights_for(spec, weight))
    actions: tuple[Action, ...] = (_set_weights(spec, weight),)
    if state.header_route:
        actions = (HEADER_OFF, *actions)
    return nxt, Decision("advance", reason, actions)


def _promote(spec: RolloutSpec, state: RolloutState, now: datetime, reason: str) -> tuple[RolloutState, Decision]:
    nxt = replace(state, phase=Phase.PROMOTING, weights=weights_for(spec, 100), header_route=False, reason=reason,
                  decided_at=now)
    return nxt, Decision("promote", reason, (_set_weights(spec, 100), HEADER_OFF, Notify("promoted", reason)))


def _rollback(spec: RolloutSpec, state: RolloutState, now: datetime, reason: str,
              kind: str = "rollback") -> tuple[RolloutState, Decision]:
    phase = Phase.ABORTED if kind == "abort" else Phase.ROLLING_BACK
    nxt = replace(state, phase=phase, weights=weights_for(spec, 0), header_route=False, reason=reason, decided_at=now)
    return nxt, Decision(kind, reason, (_set_weights(spec, 0), HEADER_OFF, Notify(kind, reason)))


def _pause(state: RolloutState, now: datetime, reason: str, phase: Phase = Phase.PAUSED,
           kind: str = "pause") -> tuple[RolloutState, Decision]:
    nxt = replace(state, phase=phase, paused_from=state.phase, reason=reason, decided_at=now)
    return nxt, Decision(kind, reason, (Notify(kind, reason),))


def _judge_step(
    spec: RolloutSpec, state: RolloutState, verdicts: Sequence[MetricVerdict], now: datetime
) -> tuple[RolloutState, Decision]:
    gates = [v for v in verdicts if v.gate]
    failed = [v for v in gates if v.verdict is Verdict.FAIL]
    if failed:
        return _rollback(spec, state, now, "rollback: " + "; ".join(v.reason for v in failed))
    halted = [v for v in gates if v.verdict is Verdict.HALT]
    if halted:
        return _pause(state, now, "paused: " + "; ".join(v.reason for v in halted))
    state = replace(state, step_ticks_all=state.step_ticks_all + 1)
    missing = [v for v in gates if v.verdict is Verdict.NO_DATA]
    exhausted = _exhausted(spec, state, now)
    if missing:
        if exhausted:
            return _inconclusive(spec, state, now, exhausted)
        reason = "hold: " + "; ".join(v.reason for v in missing)
        return replace(state, reason=reason), Decision("hold", reason)
    state = replace(state, step_ticks=state.step_ticks + 1)
    dwell_done = state.step_ticks >= spec.timing.min_dwell
    if state.phase is Phase.HEADER_TESTING:
        header = spec.strategy.header_phase
        assert header is not None and state.step_started_at is not None
        dwell_done = dwell_done and (now - state.step_started_at).total_seconds() >= header.min_duration - 1e-6
        if spec.strategy.type == "canary":
            if dwell_done:
                return _enter_step(spec, state, 0, now)
            return _continue(spec, state, gates, exhausted, now, "header phase")
    elif not _at_last_partial(spec, state):
        if dwell_done:
            return _enter_step(spec, state, state.step + 1, now)
        return _continue(spec, state, gates, exhausted, now, f"step {state.step + 1}")
    if dwell_done and all(v.verdict is Verdict.PASS for v in gates):
        return _promote(spec, state, now, "promote: " + "; ".join(v.reason for v in gates))
    return _continue(spec, state, gates, exhausted, now, "last step, waiting for promotion evidence")


def _continue(
    spec: RolloutSpec, state: RolloutState, gates: list[MetricVerdict], exhausted: str | None, now: datetime,
    where: str,
) -> tuple[RolloutState, Decision]:
    if exhausted:
        return _inconclusive(spec, state, now, exhausted)
    reason = f"continue ({where}, dwell {state.step_ticks}/{spec.timing.min_dwell}): " + "; ".join(
        v.reason for v in gates)
    return replace(state, reason=reason), Decision("continue", reason)


def _exhausted(spec: RolloutSpec, state: RolloutState, now: datetime) -> str | None:
    assert state.started_at is not None
    elapsed = (now - state.started_at).total_seconds()
    if elapsed >= spec.timing.budget - 1e-6:
        return f"time budget {spec.timing.budget / 60:g} min used up"
    max_dwell = spec.timing.max_dwell
    if max_dwell is not None and _at_last_partial(spec, state) and state.step_ticks_all >= max_dwell:
        return f"max dwell {max_dwell} intervals reached at the last step"
    return None


def _inconclusive(spec: RolloutSpec, state: RolloutState, now: datetime, why: str) -> tuple[RolloutState, Decision]:
    policy = spec.on_inconclusive
    reason = f"inconclusive: {why} without promotion evidence; onInconclusive={policy}"
    if policy == "rollback":
        return _rollback(spec, state, now, reason)
    if policy == "promote":
        return _promote(spec, state, now, reason)
    return _pause(state, now, reason, phase=Phase.INCONCLUSIVE, kind="inconclusive")


def _command(spec: RolloutSpec, state: RolloutState, command: str, now: datetime) -> tuple[RolloutState, Decision]:
    if command not in COMMANDS:
        raise ValueError(f"command: {command!r} is not one of {', '.join(COMMANDS)}")
    final = state.phase in (Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED, Phase.ABORTED)
    if final:
        return state, Decision("hold", f"{command} ignored: rollout already {state.phase.value}")
    if command == "abort":
        return _rollback(spec, state, now, "aborted by request", kind="abort")
    if command == "promote":
        return _promote(spec, state, now, "promoted by request")
    if command == "pause":
        if state.phase in (Phase.PAUSED, Phase.INCONCLUSIVE):
            return state, Decision("hold", "already paused")
        return _pause(state, now, "paused by request")
    if state.phase not in (Phase.PAUSED, Phase.INCONCLUSIVE) or state.paused_from is None:
        return state, Decision("hold", f"resume ignored: rollout is {state.phase.value}")
    back = state.paused_from
    nxt = replace(state, phase=back, paused_from=None, decided_at=None, step_ticks_all=0,
                  reason=f"resumed to {back.value}")
    if state.started_at is not None and _exhausted(spec, nxt, now):
        # A resumed rollout gets a fresh budget from now on.
        nxt = replace(nxt, started_at=now)
    return nxt, Decision("resume", nxt.reason, intended_routes(spec, nxt))


def fail(state: RolloutState, now: datetime, reason: str) -> tuple[RolloutState, Decision]:
    """The engine could not act for too long: stop with Failed and say why."""
    nxt = replace(state, phase=Phase.FAILED, reason=reason, decided_at=now)
    return nxt, Decision("fail", reason, (Notify("failed", reason),))
