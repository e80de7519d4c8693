"""Every transition of the state machine in docs/state-machine.md, on the pure policy."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from analyzer import policy
from analyzer.config import load_spec, parse_spec
from analyzer.model import MetricVerdict, Notify, Phase, Scale, SetHeaderRoute, SetWeights, Verdict

ROOT = Path(__file__).resolve().parents[1]
SPEC = load_spec(ROOT / "config/examples/reviews.yaml")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
MIN = timedelta(minutes=1)


def verdicts(*kinds: Verdict, halt: bool = False) -> list[MetricVerdict]:
    out = [MetricVerdict(name, kind, f"{name}: {kind.value}") for name, kind in zip(("errors", "latency"), kinds,
                                                                                      strict=False)]
    if halt:
        out.append(MetricVerdict("traffic-split", Verdict.HALT, "traffic split: mismatch"))
    return out


OK = verdicts(Verdict.CONTINUE, Verdict.CONTINUE)
PASS = verdicts(Verdict.PASS, Verdict.PASS)


def started(spec=SPEC):
    state, decision = policy.start(spec, "r1", T0)
    return state, decision


def weights_of(decision) -> dict[str, int] | None:
    sets = [a for a in decision.actions if isinstance(a, SetWeights)]
    return dict(sets[-1].weights) if sets else None


def at_step(step: int, spec=SPEC):
    state, _ = started(spec)
    state = replace(state, phase=Phase.PROGRESSING, step=step, step_started_at=T0,
                    weights=policy.weights_for(spec, policy.partial_steps(spec)[step]))
    return state


def test_start_initializes() -> None:
    state, decision = started()
    assert state.phase is Phase.INITIALIZING
    assert weights_of(decision) == {"v1": 100, "v2": 0}
    assert Scale("v2", 1) in decision.actions
    assert SetHeaderRoute(None) in decision.actions


def test_initializing_to_header_testing() -> None:
    state, _ = started()
    nxt, decision = policy.decide(SPEC, state, [], T0 + MIN)
    assert nxt.phase is Phase.HEADER_TESTING and nxt.header_route
    route = next(a for a in decision.actions if isinstance(a, SetHeaderRoute))
    assert route.match is not None and (route.match.header, route.match.value) == ("end-user", "jason")


def test_initializing_to_progressing_without_header_phase() -> None:
    spec = SPEC.model_copy(update={"strategy": SPEC.strategy.model_copy(update={"header_phase": None})})
    state, _ = started(spec)
    nxt, decision = policy.decide(spec, state, [], T0 + MIN)
    assert (nxt.phase, nxt.step) == (Phase.PROGRESSING, 0)
    assert weights_of(decision) == {"v1": 90, "v2": 10}


def test_header_phase_waits_for_min_duration_and_dwell_then_goes_to_step_0() -> None:
    state, _ = started()
    state, _ = policy.decide(SPEC, state, [], T0 + MIN)
    now = T0 + MIN
    for _ in range(2):  # 3 min minimum duration, 3 intervals of dwell
        now += MIN
        state, d = policy.decide(SPEC, state, OK, now)
        assert state.phase is Phase.HEADER_TESTING and d.kind == "continue"
    now += MIN
    state, d = policy.decide(SPEC, state, OK, now)
    assert (state.phase, state.step) == (Phase.PROGRESSING, 0)
    assert SetHeaderRoute(None) in d.actions and weights_of(d) == {"v1": 90, "v2": 10}


def test_ab_test_promotes_from_header_phase_on_evidence() -> None:
    data = SPEC.model_dump(by_alias=True)
    data["strategy"]["type"] = "ab-test"
    spec = parse_spec(data)
    state, _ = started(spec)
    state, _ = policy.decide(spec, state, [], T0 + MIN)
    now = T0 + MIN
    for _ in range(3):
        now += MIN
        state, _ = policy.decide(spec, state, OK, now)
    assert state.phase is Phase.HEADER_TESTING  # dwell done but no promotion evidence
    assert policy.judge_context(spec, state, now).assess_promotion
    state, d = policy.decide(spec, state, PASS, now + MIN)
    assert state.phase is Phase.PROMOTING and weights_of(d) == {"v1": 0, "v2": 100}


def test_intermediate_step_advances_after_min_dwell() -> None:
    state = at_step(0)
    for i in range(2):
        state, d = policy.decide(SPEC, state, OK, T0 + (i + 1) * MIN)
        assert d.kind == "continue" and state.step == 0
    state, d = policy.decide(SPEC, state, OK, T0 + 3 * MIN)
    assert state.step == 1 and weights_of(d) == {"v1": 75, "v2": 25}


def test_no_data_holds_and_does_not_count_as_dwell() -> None:
    state = at_step(0)
    for i in range(10):
        state, d = policy.decide(SPEC, state, verdicts(Verdict.NO_DATA, Verdict.CONTINUE), T0 + (i + 1) * MIN)
        assert d.kind == "hold" and d.actions == ()
        assert state.phase is Phase.PROGRESSING and state.step == 0 and state.step_ticks == 0


def test_last_step_promotes_only_on_evidence() -> None:
    state = at_step(2)
    now = T0
    for _ in range(5):
        now += MIN
        state, d = policy.decide(SPEC, state, verdicts(Verdict.PASS, Verdict.CONTINUE), now)
        assert state.phase is Phase.PROGRESSING
    state, d = policy.decide(SPEC, state, PASS, now + MIN)
    assert state.phase is Phase.PROMOTING and weights_of(d) == {"v1": 0, "v2": 100}
    assert state.decided_at == now + MIN


def test_promotion_needs_min_dwell_even_with_evidence() -> None:
    state = at_step(2)
    state, d = policy.decide(SPEC, state, PASS, T0 + MIN)
    assert state.phase is Phase.PROGRESSING and d.kind == "continue"


@pytest.mark.parametrize("phase_step", [("header", -1), ("progressing", 1)])
def test_failing_gate_rolls_back(phase_step: tuple[str, int]) -> None:
    if phase_step[0] == "header":
        state, _ = started()
        state, _ = policy.decide(SPEC, state, [], T0 + MIN)
    else:
        state = at_step(phase_step[1])
    state, d = policy.decide(SPEC, state, verdicts(Verdict.FAIL, Verdict.NO_DATA), T0 + 2 * MIN)
    assert state.phase is Phase.ROLLING_BACK
    assert weights_of(d) == {"v1": 100, "v2": 0} and SetHeaderRoute(None) in d.actions
    assert any(isinstance(a, Notify) and a.event == "rollback" for a in d.actions)
    state, d = policy.decide(SPEC, state, [], T0 + 3 * MIN)
    assert state.phase is Phase.ROLLED_BACK and Scale("v2", 0) in d.actions


def test_non_gate_failure_does_not_roll_back() -> None:
    state = at_step(0)
    diag = [*OK, MetricVerdict("traces", Verdict.FAIL, "traces: slower", gate=False)]
    state, _d = policy.decide(SPEC, state, diag, T0 + MIN)
    assert state.phase is Phase.PROGRESSING


def test_halt_pauses_and_resume_returns() -> None:
    state = at_step(1)
    state, d = policy.decide(SPEC, state, verdicts(Verdict.CONTINUE, Verdict.CONTINUE, halt=True), T0 + MIN)
    assert state.phase is Phase.PAUSED and state.paused_from is Phase.PROGRESSING
    assert weights_of(d) is None  # weights are held
    state, d = policy.decide(SPEC, state, [], T0 + 2 * MIN, command="resume")
    assert state.phase is Phase.PROGRESSING and weights_of(d) == {"v1": 75, "v2": 25}


def test_budget_exhausted_follows_on_inconclusive() -> None:
    late = T0 + timedelta(seconds=SPEC.timing.budget)
    for policy_name, phase in (("pause", Phase.INCONCLUSIVE), ("rollback", Phase.ROLLING_BACK),
                               ("promote", Phase.PROMOTING)):
        spec = SPEC.model_copy(update={"on_inconclusive": policy_name})
        state = at_step(2, spec)
        state, _d = policy.decide(spec, state, OK, late)
        assert state.phase is phase, policy_name
        assert "time budget" in state.reason


def test_budget_exhausted_while_holding_is_inconclusive_not_failure() -> None:
    state = at_step(0)
    late = T0 + timedelta(seconds=SPEC.timing.budget)
    state, _ = policy.decide(SPEC, state, verdicts(Verdict.NO_DATA, Verdict.NO_DATA), late)
    assert state.phase is Phase.INCONCLUSIVE


def test_max_dwell_at_last_step() -> None:
    spec = SPEC.model_copy(update={"timing": SPEC.timing.model_copy(update={"max_dwell": 4})})
    state = at_step(2, spec)
    for i in range(3):
        state, _ = policy.decide(spec, state, OK, T0 + (i + 1) * MIN)
        assert state.phase is Phase.PROGRESSING
    state, _ = policy.decide(spec, state, OK, T0 + 4 * MIN)
    assert state.phase is Phase.INCONCLUSIVE and "max dwell" in state.reason


def test_promoting_then_succeeded_keeps_baseline_deployment() -> None:
    state = replace(at_step(2), phase=Phase.PROMOTING)
    state, d = policy.decide(SPEC, state, [], T0 + MIN)
    assert state.phase is Phase.SUCCEEDED and d.actions == (Scale("v1", 0),)


def test_commands() -> None:
    state = at_step(1)
    aborted, d = policy.decide(SPEC, state, [], T0, command="abort")
    assert aborted.phase is Phase.ABORTED and weights_of(d) == {"v1": 100, "v2": 0}
    promoted, d = policy.decide(SPEC, state, [], T0, command="promote")
    assert promoted.phase is Phase.PROMOTING
    paused, _ = policy.decide(SPEC, state, [], T0, command="pause")
    assert paused.phase is Phase.PAUSED
    same, d = policy.decide(SPEC, aborted, [], T0, command="resume")
    assert same.phase is Phase.ABORTED and d.kind == "hold"
    with pytest.raises(ValueError, match="command: 'explode'"):
        policy.decide(SPEC, state, [], T0, command="explode")


def test_failed_after_action_failures() -> None:
    state = at_step(1)
    failed, _d = policy.fail(state, T0, "router unreachable")
    assert failed.phase is Phase.FAILED and failed.outcome == "failed"


def test_final_phases_do_nothing() -> None:
    for phase in (Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED, Phase.ABORTED, Phase.INCONCLUSIVE):
        state = replace(at_step(1), phase=phase)
        nxt, d = policy.decide(SPEC, state, OK, T0 + MIN)
        assert nxt.phase is phase and d.actions == ()


def test_judge_context_expected_share_and_warmup() -> None:
    state = at_step(1)
    first = policy.judge_context(SPEC, state, T0 + 5 * MIN)
    assert first.expected_share == 0.25  # a step's first window starts after the change: its split is checked
    ctx = policy.judge_context(SPEC, replace(state, step_ticks_all=1), T0 + 5 * MIN)
    assert ctx.expected_share == 0.25 and not ctx.warmup and not ctx.assess_promotion
    assert policy.judge_context(SPEC, replace(state, header_route=True), T0).expected_share is None
    spec = SPEC.model_copy(update={"timing": SPEC.timing.model_copy(update={"warmup": 120.0})})
    assert policy.judge_context(spec, state, T0 + 2 * MIN).warmup
    assert not policy.judge_context(spec, state, T0 + 4 * MIN).warmup
    assert not policy.judge_context(SPEC, at_step(2), T0).assess_promotion  # dwell not yet possible
    assert policy.judge_context(SPEC, replace(at_step(2), step_ticks=2), T0).assess_promotion


SCALED = parse_spec({**SPEC.model_dump(by_alias=True, exclude_none=True),
                     "strategy": {**SPEC.strategy.model_dump(by_alias=True, exclude_none=True),
                                  "scaling": {"totalReplicas": 4, "bakeTime": "2m"}},
                     "target": {**SPEC.target.model_dump(by_alias=True, exclude_none=True), "restoreOnAbort": True}})


def test_scaling_before_each_step_and_bake_before_scaling_the_baseline_down() -> None:
    steps = policy.partial_steps(SCALED)
    for i in range(len(steps)):
        state = at_step(i, SCALED) if i else replace(started(SCALED)[0], phase=Phase.HEADER_TESTING,
                                                         header_route=True, step_started_at=T0)
        state = replace(state, step_ticks=SCALED.timing.min_dwell - 1)
        now = T0 + 10 * MIN
        nxt, decision = policy.decide(SCALED, state, PASS if i == len(steps) - 1 else OK, now)
        target = 100 if i == len(steps) - 1 else steps[i + 1] if i else steps[0]
        scale = decision.actions[0]
        assert isinstance(scale, Scale) and scale.subset == "v2"
        assert scale.replicas == max(1, -(-4 * target // 100))  # ceil(4 x weight), before the weights move
        assert weights_of(decision) == policy.weights_for(SCALED, target)
    promoting = replace(nxt, phase=Phase.PROMOTING)
    held, decision = policy.decide(SCALED, promoting, [], now + MIN)
    assert held.phase is Phase.PROMOTING and decision.kind == "hold" and "bake" in decision.reason
    done, decision = policy.decide(SCALED, promoting, [], now + 2 * MIN)
    assert done.phase is Phase.SUCCEEDED and decision.actions == (Scale("v1", 0),)


def test_abort_restores_the_original_route_when_asked() -> None:
    from analyzer.model import Command, RestoreRoute

    _, decision = policy.decide(SCALED, at_step(1, SCALED), [], T0 + MIN, Command.ABORT)
    assert decision.actions[0] == RestoreRoute() and weights_of(decision) is None
    _, decision = policy.decide(SPEC, at_step(1), [], T0 + MIN, Command.ABORT)
    assert weights_of(decision) == {"v1": 100, "v2": 0}


def test_drift_pauses_with_what_and_who_and_resume_reapplies() -> None:
    from analyzer.model import Command, Event

    state = at_step(1)
    paused, decision = policy.pause_for_drift(state, T0 + MIN, "route changed by kubectl-edit: v2 25 became 0")
    assert paused.phase is Phase.PAUSED and paused.paused_from is Phase.PROGRESSING
    assert decision.actions == (Notify(Event.DRIFT, paused.reason),) and "kubectl-edit" in paused.reason
    resumed, decision = policy.decide(SPEC, paused, [], T0 + 2 * MIN, Command.RESUME)
    assert resumed.phase is Phase.PROGRESSING and weights_of(decision) == dict(state.weights)
