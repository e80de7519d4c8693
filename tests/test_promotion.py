"""Issue 9 §4 and §5: promotion only through valid tests within promotionAlpha per metric, the power figure as a
plan only, halts before rollbacks, the header phase's own alpha and fresh evidence, custom metrics named as outside
the alpha budget. Real judge and policy; fixed seeds."""

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from analyzer import policy
from analyzer.config import load_spec, parse_spec
from analyzer.judge import JudgeContext, initial_evidence, judge, promotes_at_mde
from analyzer.model import MetricVerdict, Observation, Phase, SubsetCounts, Verdict
from analyzer.stats.rate_ratio import RatioState, advance, ratio_grid

ROOT = Path(__file__).resolve().parents[1]
SPEC = load_spec(ROOT / "config/examples/reviews.yaml")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
MIN = timedelta(minutes=1)


def _spec(noise: float | None = None, **analysis: object):
    data = SPEC.model_dump(by_alias=True)
    data["analysis"].update(analysis)
    data["analysis"]["metrics"] = [m for m in data["analysis"]["metrics"] if m["type"] == "error-rate"]
    if noise is not None:
        data["analysis"]["metrics"][0]["intervalNoise"] = noise
    return parse_spec(data)


def _obs(t: int, n_c: int, e_c: int, n_b: int, e_b: int) -> Observation:
    start = T0 + t * MIN
    return Observation(start, start + MIN, SubsetCounts(n_b, e_b, ()), SubsetCounts(n_c, e_c, ()), ())


@pytest.mark.parametrize(("theta", "noise"), [(1.5, 0.0), (1.5, 0.5), (2.0, 0.5)])
def test_false_promotions_at_or_above_tolerance_stay_below_promotion_alpha(theta: float, noise: float) -> None:
    """The non-inferiority e-process, tempered like the rollback one: P(ever promote | θ ≥ θ_tol) ≤ α_prom."""
    rng = np.random.default_rng(int(10 * theta + 100 * noise))
    reps, looks, alpha_prom = 1000, 60, 0.05
    grid = ratio_grid(1.5)
    state = RatioState.zeros((reps,), grid.thetas.size)
    promoted = np.zeros(reps, dtype=bool)
    for _ in range(looks):
        total = rng.poisson(6000, reps)
        n_c = rng.binomial(total, 0.1)
        e_c = rng.binomial(n_c, 0.003 * theta)
        e_b = rng.binomial(total - n_c, 0.003)
        state = advance(grid, 1.5, noise, state, n_c, e_c, total - n_c, e_b)
        ll = state.tx[:, None] * grid.log_thetas - state.tpen
        pr = ll[:, grid.promote]
        top = pr.max(axis=1)
        log_prom = top + np.log(np.exp(pr - top[:, None]).mean(axis=1)) - ll[:, grid.tol_index]
        promoted |= log_prom >= math.log(1 / alpha_prom)
    assert promoted.mean() <= alpha_prom + 3 * math.sqrt(alpha_prom * (1 - alpha_prom) / reps)


def test_power_never_promotes_a_regressed_canary() -> None:
    """Before: a canary worse than the tolerance passed as 'enough information' once the power to catch the MDE
    was high, whatever its evidence. Now only evidence promotes; the power is a planning figure in the reason."""
    spec = _spec(noise=0)
    rng = np.random.default_rng(1)
    evidence = initial_evidence(spec)
    ctx = JudgeContext(assess_promotion=True)
    powers = []
    for t in range(40):  # 1.5x: at the tolerance, below the MDE 2
        n_c, n_b = int(rng.poisson(6000)), int(rng.poisson(54000))
        obs = _obs(t, n_c, int(rng.binomial(n_c, 0.003)), n_b, int(rng.binomial(n_b, 0.002)))
        evidence, verdicts = judge(spec, evidence, obs, ctx)
        errors = next(v for v in verdicts if v.metric == "errors")
        if errors.verdict is Verdict.FAIL:
            break
        assert errors.verdict is Verdict.CONTINUE, errors.reason
        assert "at this traffic" in errors.reason
        powers.append(errors.details["power"])
    assert max(powers) >= 0.9  # the removed rule would have promoted this canary


def test_negligible_rate_is_opt_in_and_shares_the_budget() -> None:
    assert all(getattr(m, "negligible_rate", None) is None for m in parse_spec(
        SPEC.model_dump(by_alias=True)).analysis.metrics)
    data = _spec().model_dump(by_alias=True)
    data["analysis"]["metrics"][0]["negligibleRate"] = 0.0005
    spec = parse_spec(data)
    evidence = initial_evidence(spec)
    # No canary errors in 20000 requests: log e = 20000·(−log(1 − 0.0005) + log(1 − 0.00005)) − log 3 ≈ 7.9 − 1.1.
    for t in range(4):
        evidence, verdicts = judge(spec, evidence, _obs(t, 5000, 0, 45000, 0), JudgeContext(assess_promotion=True))
    errors = next(v for v in verdicts if v.metric == "errors")
    assert errors.verdict is Verdict.PASS and "negligible" in errors.reason
    evidence = initial_evidence(spec)
    # Each rule gets α_prom/2 = 0.025 (bar 40): 8000 requests give log e ≈ 2.6 < log 40 but > log 20.
    for t in range(2):
        evidence, verdicts = judge(spec, evidence, _obs(t, 4000, 0, 36000, 0), JudgeContext(assess_promotion=True))
    errors = next(v for v in verdicts if v.metric == "errors")
    assert errors.verdict is Verdict.CONTINUE, errors.reason


def test_very_low_baseline_5x_canary_is_not_promoted_by_default() -> None:
    """Before: at 0.005% and 100 rps a 5x canary promoted about half the time through the negligible rule."""
    spec = _spec()
    rng = np.random.default_rng(4)
    promoted = 0
    for _ in range(40):
        evidence = initial_evidence(spec)
        for t in range(60):
            n_c, n_b = int(rng.poisson(600)), int(rng.poisson(5400))
            obs = _obs(t, n_c, int(rng.binomial(n_c, 0.00025)), n_b, int(rng.binomial(n_b, 0.00005)))
            evidence, verdicts = judge(spec, evidence, obs, JudgeContext(assess_promotion=True))
            if next(v for v in verdicts if v.metric == "errors").verdict is Verdict.PASS:
                promoted += 1
                break
    assert promoted == 0


def test_promote_at_mde_after_budget_is_opt_in() -> None:
    spec = _spec(noise=0, promoteAtMdeAfterBudget=True)
    evidence = initial_evidence(spec)
    rng = np.random.default_rng(2)
    for t in range(30):  # a canary at 1.45x: not shown below 1.5, but shown below 2
        n_c, n_b = 10000, 90000
        obs = _obs(t, n_c, int(rng.binomial(n_c, 0.00145)), n_b, int(rng.binomial(n_b, 0.001)))
        evidence, _ = judge(spec, evidence, obs, JudgeContext())
    ok, text = promotes_at_mde(spec, evidence)
    assert ok, text
    state = replace(policy.start(spec, "r", T0)[0], phase=Phase.PROGRESSING, step=2, step_started_at=T0,
                    evidence=evidence, weights=policy.weights_for(spec, 50))
    late = T0 + timedelta(seconds=spec.timing.budget)
    cont = [MetricVerdict("errors", Verdict.CONTINUE, "errors: continue")]
    nxt, d = policy.decide(spec, state, cont, late)
    assert nxt.phase is Phase.PROMOTING and "promoteAtMdeAfterBudget" in d.reason
    off = _spec(noise=0)
    nxt, d = policy.decide(off, replace(state, evidence=evidence), cont, late)
    assert nxt.phase is Phase.INCONCLUSIVE and "power" in d.reason


def test_halt_is_decided_before_a_rollback_in_the_same_tick() -> None:
    state = replace(policy.start(SPEC, "r", T0)[0], phase=Phase.PROGRESSING, step=1, step_started_at=T0,
                    weights=policy.weights_for(SPEC, 25))
    both = [MetricVerdict("errors", Verdict.FAIL, "errors: regression"),
            MetricVerdict("shared-outage", Verdict.HALT, "shared outage: both subsets")]
    nxt, d = policy.decide(SPEC, state, both, T0 + MIN)
    assert nxt.phase is Phase.PAUSED and d.kind == "pause" and "shared outage" in d.reason


def test_header_phase_has_its_own_alpha_and_its_evidence_is_not_carried() -> None:
    state, _ = policy.start(SPEC, "r", T0)
    state, _ = policy.decide(SPEC, state, [], T0 + MIN)
    assert state.phase is Phase.HEADER_TESTING
    share = SPEC.strategy.header_phase.alpha_share
    assert policy.judge_context(SPEC, state, T0 + MIN).alpha_share == share
    # Testers' traffic with many canary errors, short of the header phase's share of alpha.
    ctx = policy.judge_context(SPEC, state, T0 + 2 * MIN)
    evidence, verdicts = judge(SPEC, state.evidence, _obs(1, 100, 3, 1900, 2), ctx)
    errors = next(v for v in verdicts if v.metric == "errors")
    assert errors.threshold == pytest.approx(1 / (SPEC.analysis.alpha_for("errors") * share))
    assert errors.verdict is Verdict.CONTINUE and evidence.metrics["errors"].e_c == 3
    state = replace(state, evidence=evidence)
    now = T0 + MIN
    ok = [MetricVerdict("errors", Verdict.CONTINUE, "ok"), MetricVerdict("latency", Verdict.CONTINUE, "ok")]
    while state.phase is Phase.HEADER_TESTING:
        now += MIN
        state, _ = policy.decide(SPEC, state, ok, now)
    assert state.phase is Phase.PROGRESSING and state.evidence == initial_evidence(SPEC)
    assert policy.judge_context(SPEC, state, now).alpha_share == pytest.approx(1 - share)


def test_custom_metric_says_it_is_outside_the_alpha_budget() -> None:
    data = SPEC.model_dump(by_alias=True)
    data["analysis"]["metrics"].append({"type": "custom", "name": "cpu", "query": "x", "max": 1.0})
    spec = parse_spec(data)
    from analyzer.model import CustomValue

    obs = replace(_obs(0, 100, 0, 900, 0), custom={"cpu": CustomValue(canary=0.5, baseline=0.4)})
    _, verdicts = judge(spec, initial_evidence(spec), obs, JudgeContext())
    assert "outside the alpha budget" in next(v for v in verdicts if v.metric == "cpu").reason


def test_plan_says_when_promotion_needs_more_traffic() -> None:
    from analyzer.app.cli.plan import plan_lines
    from analyzer.plan import make_plan

    spec = _spec()
    low = make_plan(spec, rps=2, baseline_error_rate=0.001, latency_p99_ms=250)
    (errors,) = [p for p in low.promotions if p.metric == "errors"]
    assert not errors.fits_budget
    assert any("expect an inconclusive end" in line for line in plan_lines(low))
    high = make_plan(spec, rps=200, baseline_error_rate=0.005, latency_p99_ms=250)
    (errors,) = [p for p in high.promotions if p.metric == "errors"]
    assert errors.fits_budget and errors.minutes is not None and errors.minutes <= spec.timing.budget / 60
