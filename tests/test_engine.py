"""The loop end to end on the simulated mesh: calibration, detection, holds, restarts and failures."""

import math
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer import policy
from analyzer.app.simulation import run_rollout
from analyzer.config import load_spec
from analyzer.engine import Engine
from analyzer.judge import JudgeContext, initial_evidence, judge
from analyzer.model import Phase, Verdict
from analyzer.notify.log import LogNotifier
from analyzer.ports import Adapters
from analyzer.sim.clock import EPOCH, VirtualClock
from analyzer.sim.mesh import SimulatedMesh
from analyzer.sim.scenario import Scenario, load_scenario
from analyzer.store.null import NullStore
from analyzer.traffic.memory import MemoryRouter
from analyzer.workloads.memory import MemoryScaler

ROOT = Path(__file__).resolve().parents[1]
SPEC = load_spec(ROOT / "config/examples/reviews.yaml")


def test_aa_calibration_over_60_looks() -> None:
    """300 healthy canaries, 60 one-minute looks each on a 10/25/50 ramp: false rollbacks <= alpha + 3 SE."""
    runs, looks = 300, 60
    scenario = load_scenario("healthy")
    false_rollbacks = 0
    for seed in range(runs):
        router = MemoryRouter()
        mesh = SimulatedMesh(scenario, router, seed=seed, start=EPOCH)
        evidence = initial_evidence(SPEC)
        for k in range(looks):
            weight = (10, 25, 50)[min(2, k // 20)]
            router.set_weights(SPEC, policy.weights_for(SPEC, weight))
            start = EPOCH + timedelta(minutes=k)
            obs = mesh.observe(SPEC, start, start + timedelta(minutes=1))
            evidence, verdicts = judge(SPEC, evidence, obs, JudgeContext(expected_share=weight / 100))
            if any(v.gate and v.verdict is Verdict.FAIL for v in verdicts):
                false_rollbacks += 1
                break
    alpha = SPEC.analysis.alpha
    assert false_rollbacks / runs <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)


@pytest.mark.parametrize("scenario", ["error-regression", "latency-regression"])
def test_regressions_roll_back_to_baseline(scenario: str) -> None:
    sc = load_scenario(scenario)
    if scenario == "error-regression":
        sc = sc.model_copy(update={"regression": sc.regression.model_copy(update={"error_ratio": 3.0})})
    for seed in range(10):
        result = run_rollout(SPEC, sc, seed=seed)
        assert result.outcome == "rolled_back", (seed, result.reason)
        assert result.final_weights == {"v1": 100, "v2": 0}
        assert any(v.verdict is Verdict.FAIL for v in result.metrics)


def test_healthy_canaries_are_promoted() -> None:
    outcomes = [run_rollout(SPEC, load_scenario("healthy"), seed=s) for s in range(20)]
    promoted = [r for r in outcomes if r.outcome == "promoted"]
    assert len(promoted) >= 18
    for r in promoted:
        assert r.final_weights == {"v1": 0, "v2": 100}
        assert r.steps_reached[:3] == [10, 25, 50]
        # header phase (1 + 3 min) and three steps of 3 intervals each come first
        assert r.decision_minute is not None and r.decision_minute >= 13


def test_low_traffic_is_inconclusive_not_failed() -> None:
    for seed in range(3):
        r = run_rollout(SPEC, load_scenario("low-traffic"), seed=seed)
        assert r.outcome in ("inconclusive", "promoted")
        assert r.outcome != "rolled_back"


def test_shared_outage_pauses() -> None:
    r = run_rollout(SPEC, load_scenario("shared-outage"), seed=1)
    assert r.outcome == "paused" and "shared outage" in r.reason


def test_sample_ratio_mismatch_halts_without_rollback() -> None:
    r = run_rollout(SPEC, load_scenario("traffic-split-mismatch"), seed=1)
    assert r.outcome == "paused" and "sample-ratio mismatch" in r.reason
    assert r.final_weights["v2"] > 0  # halted, not rolled back


class Recorder(NullStore):
    def __init__(self) -> None:
        super().__init__()
        self.decisions: list[tuple[int, str, dict[str, int]]] = []

    def record_intent(self, rollout_id, state, observation, verdicts, decision):  # type: ignore[override]
        self.decisions.append((state.tick, decision.kind, dict(state.weights)))
        return super().record_intent(rollout_id, state, observation, verdicts, decision)


def test_missing_data_holds_and_never_decides() -> None:
    """Telemetry gaps (empty series, then an unavailable source) hold: no promotion, no rollback, no dwell."""
    sc = Scenario(gaps=[{"start": "0m", "end": "30m", "kind": "no-data"},  # type: ignore[list-item]
                        {"start": "30m", "end": "60m", "kind": "unavailable"}])
    bad = sc.model_copy(update={"regression": sc.regression.model_copy(update={"error_ratio": 20.0})})
    for scenario in (sc, bad):
        store = Recorder()
        r = run_rollout(SPEC, scenario, seed=3, store=store)
        assert r.outcome == "inconclusive"
        kinds = {k for _, k, _ in store.decisions}
        assert kinds <= {"start", "advance", "hold", "inconclusive"}
        # the header phase never completed its dwell, so no weighted step was reached
        assert all(w["v2"] == 0 for _, _, w in store.decisions)


def _engine(spec, scenario, router, store, clock, seed=1):
    mesh = SimulatedMesh(scenario, router, seed=seed, start=EPOCH)
    adapters = Adapters(metrics=mesh, router=router, scaler=MemoryScaler(), notifier=LogNotifier(), store=store,
                        clock=clock)
    return Engine(spec, "r1", adapters, seed=seed), mesh


def test_restart_resumes_without_skipping_or_repeating_a_step() -> None:
    clock, router, store = VirtualClock(), MemoryRouter(), NullStore()
    engine, _ = _engine(SPEC, load_scenario("healthy"), router, store, clock)
    engine.start()
    for _ in range(8):
        clock.advance(60)
        engine.tick()
    before = engine.state
    assert before.phase is Phase.PROGRESSING
    # crash: the router loses its routes (e.g. the VS was re-applied from git); a new process resumes
    router.set_weights(SPEC, {"v1": 100, "v2": 0})
    state = store.load_state("r1")
    assert state == before
    resumed = Engine.resume(SPEC, state, engine.adapters)
    assert router.get_weights(SPEC) == dict(before.weights)
    clock.advance(60)
    out = resumed.tick()
    assert out.state.tick == before.tick + 1
    assert out.state.step >= before.step


def test_route_drift_is_corrected() -> None:
    clock, router, store = VirtualClock(), MemoryRouter(), NullStore()
    engine, _ = _engine(SPEC, load_scenario("healthy"), router, store, clock)
    engine.start()
    for _ in range(6):
        clock.advance(60)
        engine.tick()
    intended = dict(engine.state.weights)
    router.set_weights(SPEC, {"v1": 50, "v2": 50})  # someone edits the VirtualService by hand
    clock.advance(60)
    engine.tick()
    assert router.get_weights(SPEC) == dict(engine.state.weights)
    assert engine.state.weights == intended or engine.state.step > 0


class BrokenRouter(MemoryRouter):
    def set_weights(self, spec, weights):  # type: ignore[override]
        raise ConnectionError("API server unreachable")


def test_persistent_action_failures_end_in_failed() -> None:
    clock, store = VirtualClock(), NullStore()
    engine, _ = _engine(SPEC, load_scenario("healthy"), BrokenRouter(), store, clock)
    engine.start()
    for _ in range(policy.MAX_ACTION_FAILURES + 10):
        if engine.done:
            break
        clock.advance(60)
        engine.tick()
    assert engine.state.phase is Phase.FAILED
    assert "API server unreachable" in engine.state.reason


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), scenario=st.sampled_from(["healthy", "error-regression", "tail-regression",
                                                               "telemetry-gap", "late-error-regression"]))
def test_weights_are_always_integers_summing_to_100(seed: int, scenario: str) -> None:
    router = MemoryRouter()
    seen: list[dict[str, int]] = []
    original = router.set_weights

    def spy(spec, weights):  # type: ignore[no-untyped-def]
        seen.append(dict(weights))
        original(spec, weights)

    router.set_weights = spy  # type: ignore[method-assign]
    clock = VirtualClock()
    engine, _ = _engine(SPEC, load_scenario(scenario), router, NullStore(), clock, seed=seed)
    engine.start()
    while not engine.done:
        clock.advance(60)
        out = engine.tick()
        seen.append(dict(out.state.weights))
    assert seen
    for w in seen:
        assert all(isinstance(v, int) and 0 <= v <= 100 for v in w.values()) and sum(w.values()) == 100


def test_weights_property_on_policy_for_any_step_list() -> None:
    @given(steps=st.lists(st.integers(1, 99), min_size=1, max_size=8, unique=True))
    @settings(max_examples=60, deadline=None)
    def check(steps: list[int]) -> None:
        spec = SPEC.model_copy(update={"strategy": SPEC.strategy.model_copy(update={"steps": sorted(steps)})})
        for w in [*spec.strategy.weights, 0]:
            weights = policy.weights_for(spec, w)
            assert sum(weights.values()) == 100 and min(weights.values()) >= 0

    check()


def test_resume_state_equals_persisted_state() -> None:
    state = replace(policy.start(SPEC, "x", EPOCH)[0], tick=3)
    assert state.outcome is None


def test_kayenta_judge_as_the_gate() -> None:
    spec = SPEC.model_copy(update={"analysis": SPEC.analysis.model_copy(update={"judge": "kayenta"})})
    healthy = run_rollout(spec, load_scenario("healthy"), seed=2)
    assert healthy.outcome == "promoted" and "kayenta: score" in healthy.reason
    slow = run_rollout(spec, load_scenario("latency-regression"), seed=2)
    assert slow.outcome == "rolled_back" and "kayenta" in slow.reason
