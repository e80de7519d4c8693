"""`judge: kayenta` with an `analysis.kayenta` block, through analyzer.judge (the path the engine takes)."""

from datetime import timedelta
from pathlib import Path

import pytest

from analyzer.app.simulation import run_rollout
from analyzer.config import SpecError, load_spec, parse_spec
from analyzer.judge import JudgeContext, initial_evidence, judge
from analyzer.kayenta_gate import DEFAULT_CONFIG, KEY, WARMUP_INTERVALS, kayenta_config
from analyzer.model import CustomValue, Observation, SubsetCounts, Verdict
from analyzer.sim.clock import EPOCH
from analyzer.sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
BASE = load_spec(ROOT / "config/examples/reviews.yaml")
LATENCY_Q = 'avg(latency{subset="{{ subset }}"})'


def spec_with(block: dict) -> object:
    data = BASE.model_dump(by_alias=True, exclude_none=True)
    data["analysis"].update({"judge": "kayenta", "kayenta": block})
    return parse_spec(data)


BLOCK = {
    "metrics": [
        {"name": "latency", "query": LATENCY_Q, "groups": ["latency"], "direction": "increase",
         "effectSize": {"allowedIncrease": 1.1}},
        {"name": "errors", "query": "e", "groups": ["errors"], "direction": "increase", "nanStrategy": "replace"},
    ],
    "groupWeights": {"latency": 60, "errors": 40},
    "scoreThresholds": {"pass": 90, "marginal": 60},
}


def observation(k: int, custom: dict[str, tuple[float | None, float | None]]) -> Observation:
    counts = SubsetCounts(1000, 1, (500, 900, 1000))
    start = EPOCH + timedelta(minutes=k)
    return Observation(start, start + timedelta(minutes=1), counts, counts, edges=(100.0, 250.0),
                       custom={f"kayenta/{n}": CustomValue(*v) for n, v in custom.items()})


def run(spec, values, promote_at: int | None = None):  # type: ignore[no-untyped-def]
    """Feed one observation per interval; return the Kayenta verdict of each tick."""
    evidence = initial_evidence(spec)
    out = []
    for k, custom in enumerate(values):
        ctx = JudgeContext(assess_promotion=promote_at is not None and k >= promote_at, seed=k)
        evidence, verdicts = judge(spec, evidence, observation(k, custom), ctx)
        out.append(next(v for v in verdicts if v.metric == KEY))
    return out


def test_block_becomes_the_judges_config() -> None:
    cfg = kayenta_config(spec_with(BLOCK).analysis.kayenta)  # type: ignore[attr-defined]
    lat, err = cfg.metrics
    assert (lat.name, lat.groups, lat.direction, lat.gate(lat.allowed_increase)) == ("latency", ("latency",),
                                                                                      "increase", 1.1)
    assert (err.nan_strategy, err.gate(err.allowed_increase)) == ("replace", 1.0)
    assert (dict(cfg.group_weights), cfg.pass_threshold, cfg.marginal_threshold) == (
        {"latency": 60.0, "errors": 40.0}, 90.0, 60.0)
    assert kayenta_config(None) is DEFAULT_CONFIG
    kayenta = initial_evidence(spec_with(BLOCK)).kayenta
    assert kayenta is not None and set(kayenta) == {"latency", "errors"}
    assert initial_evidence(BASE).kayenta is None


def test_a_latency_regression_in_a_kayenta_metric_rolls_back() -> None:
    spec = spec_with(BLOCK)
    # Baseline ~100 ms, canary ~150 ms: High on latency (60% of the score) -> 40 ≤ marginal 60.
    values = [{"latency": (100.0 + k % 3, 150.0 + k % 4), "errors": (0.0, 0.0)} for k in range(6)]
    verdicts = run(spec, values)
    assert [v.verdict for v in verdicts[:WARMUP_INTERVALS - 1]] == [Verdict.CONTINUE] * (WARMUP_INTERVALS - 1)
    assert verdicts[-1].verdict is Verdict.FAIL
    assert "latency High" in verdicts[-1].reason and "score 40" in verdicts[-1].reason


def test_a_healthy_canary_passes_only_when_promotion_is_assessed() -> None:
    spec = spec_with(BLOCK)
    values = [{"latency": (100.0 + k % 3, 100.0 + (k + 1) % 3), "errors": (0.0, 0.0)} for k in range(6)]
    verdicts = run(spec, values, promote_at=5)
    assert [v.verdict for v in verdicts[WARMUP_INTERVALS - 1:5]] == [Verdict.CONTINUE] * (6 - WARMUP_INTERVALS)
    assert verdicts[5].verdict is Verdict.PASS and "score 100" in verdicts[5].reason


def test_absent_metric_holds_instead_of_failing_or_promoting() -> None:
    spec = spec_with(BLOCK)
    # latency never arrives (the simulated mesh has no such series): Nodata; errors (replace) passes.
    values = [{"errors": (0.0, 0.0)} for _ in range(6)]
    verdicts = run(spec, values, promote_at=3)
    # Kayenta would score 0 (half the metrics Nodata) and fail; we hold.
    assert all(v.verdict is Verdict.NO_DATA for v in verdicts[WARMUP_INTERVALS - 1:])
    assert "no data for latency" in verdicts[-1].reason
    # With three metrics, one Nodata is below Kayenta's 50% rule: the score passes, but promotion holds.
    block = {**BLOCK, "metrics": [*BLOCK["metrics"], {"name": "cpu", "query": "c", "groups": ["errors"]}]}
    values = [{"errors": (0.0, 0.0), "cpu": (1.0 + k % 2, 1.0 + (k + 1) % 2)} for k in range(6)]
    verdicts = run(spec_with(block), values, promote_at=3)
    assert verdicts[-1].verdict is Verdict.NO_DATA and "instead of promoting" in verdicts[-1].reason


def test_simulated_rollout_with_absent_kayenta_metrics_never_rolls_back() -> None:
    # Without the block this scenario rolls back (test_engine); with it, the gate judges only the block's
    # metric, which the simulated mesh never reports: every judgement holds until the budget runs out.
    spec = spec_with({"metrics": [{"name": "latency", "query": LATENCY_Q}]})
    result = run_rollout(spec, load_scenario("latency-regression"), seed=2)
    assert result.outcome == "inconclusive"


@pytest.mark.parametrize(("block", "message"), [
    ({"metrics": []}, "analysis.kayenta.metrics"),
    ({"metrics": [{"name": "a", "query": "q"}, {"name": "a", "query": "q"}]}, "metrics[1].name: 'a' is used twice"),
    ({"metrics": [{"name": "a", "query": "q"}], "groupWeights": {"x": 70, "y": 40}}, "add up to 110, above 100"),
    ({"metrics": [{"name": "a", "query": "q"}], "scoreThresholds": {"pass": 50, "marginal": 60}},
     "marginal: 60 is above pass 50"),
    ({"metrics": [{"name": "a", "query": "q", "direction": "up"}]}, "direction"),
])
def test_bad_kayenta_blocks_name_the_field(block: dict, message: str) -> None:
    with pytest.raises(SpecError) as exc:
        spec_with(block)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_kayenta_block_needs_the_kayenta_judge() -> None:
    data = BASE.model_dump(by_alias=True, exclude_none=True)
    data["analysis"]["kayenta"] = {"metrics": [{"name": "a", "query": "q"}]}
    with pytest.raises(SpecError, match="needs judge: kayenta"):
        parse_spec(data)
