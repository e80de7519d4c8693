"""The rollout state machine: state + verdicts + time -> next state + actions. Pure, no I/O.

Transitions: the one table is docs/state-machine.md; each row is a branch below.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from analyzer.config import RolloutSpec
from analyzer.gate import GateKind, dwell_done, gate_outcome
from analyzer.judge import JudgeContext, inconclusive_note, initial_evidence, promotes_at_mde
from analyzer.model import (
    Action,
    Command,
    Decision,
    DecisionKind,
    Event,
    HookAnswers,
    MetricVerdict,
    Notify,
    Phase,
    RestoreRoute,
    RolloutState,
    Scale,
    SetHeaderRoute,
    SetWeights,
)

MAX_ACTION_FAILURES = 5
ACTIVE = frozenset({Phase.HEADER_TESTING, Phase.PROGRESSING})


def weights_for(spec: RolloutSpec, canary_weight: int) -> dict[str, int]:
    t = spec.target
    return {t.baseline.subset: 100 - canary_weight, t.canary.subset: canary_weight}


def canary_replicas(spec: RolloutSpec, canary_weight: int) -> int:
    """With `strategy.scaling`: enough canary replicas for its share of the service, and at least 1."""
    scaling = spec.strategy.scaling
    assert scaling is not None
    total = scaling.total_replicas or spec.target.baseline.replicas
    return max(1, spec.target.canary.replicas, math.ceil(total * canary_weight / 100))


def _scaled(spec: RolloutSpec, canary_weight: int, actions: tuple[Action, ...]) -> tuple[Action, ...]:
    """Scale the canary up before the weights move to it (a no-op without `strategy.scaling`)."""
    if spec.strategy.scaling is None:
        return actions
    return (Scale(spec.target.canary.subset, canary_replicas(spec, canary_weight)), *actions)


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
    return state, Decision(DecisionKind.START, state.reason, actions)


def judge_context(spec: RolloutSpec, state: RolloutState, now: datetime, *, seed: int = 0) -> JudgeContext:
    """What the judge must know of the phase: the expected split, warm-up, and whether promotion is in view."""
    # The canary first takes traffic one interval after start (Initializing).
    warmup = state.started_at is not None and warming_up(
        spec, state.started_at + timedelta(seconds=spec.timing.interval), now)
    share: float | None = None
    # Every window holds one split (issue 9 §2): a step's first window starts one scrape after the change, and
    # after a command one scrape after its re-applied routes (Engine._window), so the first window is checked too.
    if state.phase is Phase.PROGRESSING and not state.header_route:
        share = state.weights.get(spec.target.canary.subset, 0) / 100.0
    # Promotion evidence is only worth computing once this tick can complete the dwell.
    promote = _at_last_partial(spec, state) and dwell_done(spec, state.step_ticks + 1)
    return JudgeContext(expected_share=share, warmup=warmup, assess_promotion=promote, seed=seed + state.tick,
                        alpha_share=alpha_share(spec, state))


def alpha_share(spec: RolloutSpec, state: RolloutState) -> float:
    """The phase's share of the rollback budget (statistics.md §5.7, header phase).

    In a canary strategy the header phase's testers are not a random sample of users: that phase is judged with
    its own share of alpha (for gross failures) and the weighted steps, whose evidence starts fresh, with the rest.
    """
    hp = spec.strategy.header_phase
    if hp is None or spec.strategy.type != "canary":
        return 1.0
    return hp.alpha_share if state.phase is Phase.HEADER_TESTING else 1.0 - hp.alpha_share


def warming_up(spec: RolloutSpec, canary_since: datetime, now: datetime) -> bool:
    """The interval ending at `now` falls in the canary's warm-up: its data is excluded from evidence."""
    return spec.timing.warmup > 0 and (now - canary_since).total_seconds() <= spec.timing.warmup + 1e-6


def _at_last_partial(spec: RolloutSpec, state: RolloutState) -> bool:
    if state.phase is Phase.HEADER_TESTING:
        return spec.strategy.type != "canary"
    return state.phase is Phase.PROGRESSING and state.step == len(partial_steps(spec)) - 1


def decide(
    spec: RolloutSpec,
    state: RolloutState,
    verdicts: Sequence[MetricVerdict],
    now: datetime,
    command: Command | None = None,
    hooks: HookAnswers | None = None,
) -> tuple[RolloutState, Decision]:
    """One tick of the state machine. `state.evidence` must already hold this tick's evidence."""
    hooks = hooks or HookAnswers()
    if command is None and hooks.blocked and state.phase in (Phase.INITIALIZING, *ACTIVE):
        return await_confirmation(spec, state, hooks.blocked)
    state = replace(state, tick=state.tick + 1)
    if command is not None:
        return _command(spec, state, command, now)
    if state.phase is Phase.INITIALIZING:
        if hooks.stop:
            return fail(state, now, f"stopped before any traffic moved: {hooks.stop}")
        return _begin_testing(spec, state, now)
    if state.phase is Phase.PROMOTING:
        bake = spec.strategy.scaling.bake_time if spec.strategy.scaling else 0.0
        if bake and state.decided_at is not None and now < state.decided_at + timedelta(seconds=bake):
            left = (state.decided_at + timedelta(seconds=bake) - now).total_seconds()
            return state, Decision(DecisionKind.HOLD, f"promoted; baseline kept for the bake time ({left:g}s left)")
        nxt = replace(state, phase=Phase.SUCCEEDED, reason=state.reason)
        scale = Scale(spec.target.baseline.subset, spec.strategy.baseline_replicas_after_promotion)
        return nxt, Decision(DecisionKind.FINISH, "promoted: baseline scaled down and kept", (scale,))
    if state.phase is Phase.ROLLING_BACK:
        nxt = replace(state, phase=Phase.ROLLED_BACK)
        return nxt, Decision(DecisionKind.FINISH, "rolled back: canary scaled to 0",
                             (Scale(spec.target.canary.subset, 0),))
    if state.phase not in ACTIVE:
        return state, Decision(DecisionKind.HOLD, f"{state.phase.value}: nothing to do")
    if hooks.rollback:
        return _rollback(spec, state, now, f"rollback: {hooks.rollback}")
    if hooks.rollout_failed:
        state = replace(state, hook_failures=state.hook_failures + 1)
        limit = min((h.failure_limit for h in spec.hooks_of("rollout")), default=1)
        if state.hook_failures >= limit:
            return _rollback(spec, state, now, f"rollback: rollout hooks failed {state.hook_failures} times "
                                               f"(limit {limit}); last: {hooks.rollout_failed}")
    return _judge_step(spec, state, verdicts, now)


def await_confirmation(spec: RolloutSpec, state: RolloutState, why: str) -> tuple[RolloutState, Decision]:
    """A confirm hook has not approved the next move: hold this interval; it does not use the budget.

    `state` is the state before this tick's decision (with this tick's evidence), so the same move is asked
    again next tick.
    """
    reason = f"waiting: {why}"
    nxt = replace(state, tick=state.tick + 1, reason=reason,
                  confirm_wait_s=state.confirm_wait_s + spec.timing.interval)
    return nxt, Decision(DecisionKind.HOLD, reason)


def _begin_testing(spec: RolloutSpec, state: RolloutState, now: datetime) -> tuple[RolloutState, Decision]:
    if spec.strategy.header_phase is not None:
        h = spec.strategy.header_phase
        reason = f"header phase: requests with {h.header} {h.match} {h.value!r} go to {spec.target.canary.subset}"
        nxt = _enter(state, Phase.HEADER_TESTING, -1, now, reason, header_route=True)
        return nxt, Decision(DecisionKind.ADVANCE, reason, (header_on(spec), Notify(Event.ADVANCED, reason)))
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
    actions: tuple[Action, ...] = (_set_weights(spec, weight), Notify(Event.ADVANCED, reason))
    if state.phase is Phase.HEADER_TESTING:  # the testers' evidence is not carried into the weighted steps
        nxt = replace(nxt, evidence=initial_evidence(spec))
    if state.header_route:
        actions = (HEADER_OFF, *actions)
    return nxt, Decision(DecisionKind.ADVANCE, reason, _scaled(spec, weight, actions))


def _promote(spec: RolloutSpec, state: RolloutState, now: datetime, reason: str) -> tuple[RolloutState, Decision]:
    nxt = replace(state, phase=Phase.PROMOTING, weights=weights_for(spec, 100), header_route=False, reason=reason,
                  decided_at=now)
    actions = _scaled(spec, 100, (_set_weights(spec, 100), HEADER_OFF, Notify(Event.PROMOTED, reason)))
    return nxt, Decision(DecisionKind.PROMOTE, reason, actions)


def _rollback(spec: RolloutSpec, state: RolloutState, now: datetime, reason: str,
              *, abort: bool = False) -> tuple[RolloutState, Decision]:
    phase = Phase.ABORTED if abort else Phase.ROLLING_BACK
    kind, event = (DecisionKind.ABORT, Event.ABORT) if abort else (DecisionKind.ROLLBACK, Event.ROLLBACK)
    nxt = replace(state, phase=phase, weights=weights_for(spec, 0), header_route=False, reason=reason, decided_at=now)
    if abort and spec.target.restore_on_abort:
        return nxt, Decision(kind, reason, (RestoreRoute(), Notify(event, reason)))
    return nxt, Decision(kind, reason, (_set_weights(spec, 0), HEADER_OFF, Notify(event, reason)))


def _pause(state: RolloutState, now: datetime, reason: str, *, inconclusive: bool = False
           ) -> tuple[RolloutState, Decision]:
    phase, kind, event = ((Phase.INCONCLUSIVE, DecisionKind.INCONCLUSIVE, Event.INCONCLUSIVE) if inconclusive
                          else (Phase.PAUSED, DecisionKind.PAUSE, Event.PAUSE))
    nxt = replace(state, phase=phase, paused_from=state.phase, reason=reason, decided_at=now)
    return nxt, Decision(kind, reason, (Notify(event, reason),))


def _judge_step(
    spec: RolloutSpec, state: RolloutState, verdicts: Sequence[MetricVerdict], now: datetime
) -> tuple[RolloutState, Decision]:
    gate = gate_outcome(verdicts)  # halts come before failures (analyzer.gate)
    if gate.kind is GateKind.HALT:
        return _pause(state, now, "paused: " + gate.reason)
    if gate.kind is GateKind.FAIL:
        return _rollback(spec, state, now, "rollback: " + gate.reason)
    state = replace(state, step_ticks_all=state.step_ticks_all + 1)
    exhausted = _exhausted(spec, state, now)
    if gate.kind is GateKind.HOLD:
        if exhausted:
            return _inconclusive(spec, state, now, exhausted)
        reason = "hold: " + gate.reason
        return replace(state, reason=reason), Decision(DecisionKind.HOLD, reason)
    state = replace(state, step_ticks=state.step_ticks + 1)
    done = dwell_done(spec, state.step_ticks)
    if state.phase is Phase.HEADER_TESTING:
        header = spec.strategy.header_phase
        assert header is not None and state.step_started_at is not None
        done = done and (now - state.step_started_at).total_seconds() >= header.min_duration - 1e-6
        if spec.strategy.type == "canary":
            if done:
                return _enter_step(spec, state, 0, now)
            return _continue(spec, state, gate.reason, exhausted, now, "header phase")
    elif not _at_last_partial(spec, state):
        if done:
            return _enter_step(spec, state, state.step + 1, now)
        return _continue(spec, state, gate.reason, exhausted, now, f"step {state.step + 1}")
    if done and gate.kind is GateKind.PASS:
        return _promote(spec, state, now, "promote: " + gate.reason)
    return _continue(spec, state, gate.reason, exhausted, now, "last step, waiting for promotion evidence")


def _continue(
    spec: RolloutSpec, state: RolloutState, why: str, exhausted: str | None, now: datetime, where: str,
) -> tuple[RolloutState, Decision]:
    if exhausted:
        return _inconclusive(spec, state, now, exhausted)
    reason = f"continue ({where}, dwell {state.step_ticks}/{spec.timing.min_dwell}): {why}"
    return replace(state, reason=reason), Decision(DecisionKind.CONTINUE, reason)


def _exhausted(spec: RolloutSpec, state: RolloutState, now: datetime) -> str | None:
    assert state.started_at is not None
    elapsed = (now - state.started_at).total_seconds() - state.confirm_wait_s
    if elapsed >= spec.timing.budget - 1e-6:
        return f"time budget {spec.timing.budget / 60:g} min used up"
    max_dwell = spec.timing.max_dwell
    if max_dwell is not None and _at_last_partial(spec, state) and state.step_ticks_all >= max_dwell:
        return f"max dwell {max_dwell} intervals reached at the last step"
    return None


def _inconclusive(spec: RolloutSpec, state: RolloutState, now: datetime, why: str) -> tuple[RolloutState, Decision]:
    policy = spec.on_inconclusive
    if spec.analysis.promote_at_mde_after_budget and _at_last_partial(spec, state):
        ok, text = promotes_at_mde(spec, state.evidence)
        if ok:
            return _promote(spec, state, now, f"promote after the budget ({why}): {text} (promoteAtMdeAfterBudget)")
    reason = f"inconclusive: {why} without promotion evidence; onInconclusive={policy}"
    note = inconclusive_note(spec, state.evidence, seed=state.tick)
    if note:
        reason += f"; {note}"
    if policy == "rollback":
        return _rollback(spec, state, now, reason)
    if policy == "promote":
        return _promote(spec, state, now, reason)
    return _pause(state, now, reason, inconclusive=True)


def _command(spec: RolloutSpec, state: RolloutState, command: Command, now: datetime
             ) -> tuple[RolloutState, Decision]:
    if command not in set(Command):
        raise ValueError(f"command: {command!r} is not one of {', '.join(Command)}")
    command = Command(command)
    final = state.phase in (Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED, Phase.ABORTED)
    if final:
        return state, Decision(DecisionKind.HOLD, f"{command} ignored: rollout already {state.phase.value}")
    if command is Command.ABORT:
        return _rollback(spec, state, now, "aborted by request", abort=True)
    if command is Command.PROMOTE:
        return _promote(spec, state, now, "promoted by request")
    if command is Command.PAUSE:
        if state.phase in (Phase.PAUSED, Phase.INCONCLUSIVE):
            return state, Decision(DecisionKind.HOLD, "already paused")
        return _pause(state, now, "paused by request")
    if state.phase not in (Phase.PAUSED, Phase.INCONCLUSIVE) or state.paused_from is None:
        return state, Decision(DecisionKind.HOLD, f"resume ignored: rollout is {state.phase.value}")
    back = state.paused_from
    nxt = replace(state, phase=back, paused_from=None, decided_at=None, step_ticks_all=0,
                  reason=f"resumed to {back.value}")
    if state.started_at is not None and _exhausted(spec, nxt, now):
        # A resumed rollout gets a fresh budget from now on.
        nxt = replace(nxt, started_at=now)
    return nxt, Decision(DecisionKind.RESUME, nxt.reason, intended_routes(spec, nxt))


def pause_for_drift(state: RolloutState, now: datetime, change: str) -> tuple[RolloutState, Decision]:
    """A third party changed our route: stop moving traffic and say what changed and who (resume re-applies)."""
    reason = f"paused: {change}; resume to re-apply the rollout's weights, or abort"
    nxt = replace(state, tick=state.tick + 1, phase=Phase.PAUSED, paused_from=state.phase, reason=reason,
                  decided_at=now)
    return nxt, Decision(DecisionKind.PAUSE, reason, (Notify(Event.DRIFT, reason),))


def fail(state: RolloutState, now: datetime, reason: str) -> tuple[RolloutState, Decision]:
    """The engine could not act for too long: stop with Failed and say why."""
    nxt = replace(state, phase=Phase.FAILED, reason=reason, decided_at=now)
    return nxt, Decision(DecisionKind.FAIL, reason, (Notify(Event.FAILED, reason),))
