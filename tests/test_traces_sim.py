"""End to end with the simulator: trace scenarios -> SimulatedTraceSource -> analyze_traces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from analyzer.config import RolloutSpec, parse_spec
from analyzer.model import Span
from analyzer.sim.scenario import load_scenario
from analyzer.sim.traces import TRACE_SCENARIOS, SimulatedTraceSource, generate_spans, trace_scenario
from analyzer.sources.jaeger.parse import SubsetSelector
from analyzer.traces import analyze_traces, trace_exceedance_counts

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
SPEC: RolloutSpec = parse_spec({
    "metadata": {"name": "reviews-rollout"},
    "target": {"namespace": "bookinfo", "virtualService": "reviews", "host": "reviews",
               "baseline": {"subset": "v1"}, "canary": {"subset": "v2"}},
    "strategy": {"steps": [10, 50]},
})


def _run(name: str, seed: int, minutes: int = 20, requests: dict[str, int] | None = None) -> list[Span]:
    """The mesh's side: record each interval; the engine's side: read it back through the port."""
    source = SimulatedTraceSource(trace_scenario(name), seed=seed, canary_subset="v2", t0=T0)
    spans: list[Span] = []
    for k in range(minutes):
        start, end = T0 + k * MINUTE, T0 + (k + 1) * MINUTE
        source.record(start, end, requests or {"v1": 9000, "v2": 1000})
        spans += source.spans(SPEC, start, end)
    return spans


def test_built_in_scenarios_are_valid() -> None:
    assert set(TRACE_SCENARIOS) == {"trace-healthy", "trace-slow-operation", "trace-error-spans", "trace-new-call",
                                    "trace-n-plus-one"}
    assert trace_scenario("trace-healthy").sampling_rate == 0.01
    custom = trace_scenario({"preset": "trace-slow-operation", "regressions": [
        {"kind": "slow", "service": "reviews", "factor": 2.0, "onsetMinute": 5}]})
    assert custom.regressions[0].onset_minute == 5 and custom.regressions[0].service == "reviews"
    with pytest.raises(KeyError, match="trace-slow"):
        trace_scenario("trace-nope")


@pytest.mark.parametrize(
    ("name", "kind", "label", "reason_start"),
    [
        ("trace-slow-operation", "slower", "GET reviews:9080/* -> ratings", "GET reviews:9080/* -> ratings: canary +"),
        ("trace-error-spans", "errors", "GET productpage:9080/productpage -> reviews",
         "GET productpage:9080/productpage -> reviews: errors "),
        ("trace-new-call", "new_call", "GET reviews:9080/* -> mysql", "new downstream call in canary: mysql ("),
        ("trace-n-plus-one", "n_plus_one", "GET reviews:9080/* -> ratings",
         "repeated calls in canary (N+1): GET reviews:9080/* -> ratings: 4.0 vs 1.0 per trace"),
    ],
)
def test_each_scenario_yields_its_finding(name: str, kind: str, label: str, reason_start: str) -> None:
    report = analyze_traces(_run(name, seed=11), "v1", "v2")
    assert report.traces_canary > 100 and report.traces_baseline > 1000
    mine = [f for f in report.findings if f.kind == kind and f.label == label]
    assert len(mine) == 1, report.summary()
    assert mine[0].reason.startswith(reason_start), mine[0].reason
    # Only consequences of the injected change: no error finding unless errors were injected, etc.
    others = {f.kind for f in report.findings} - {kind, "slower"}
    assert others == set(), report.summary()


def test_slow_operation_effect_size_and_critical_path() -> None:
    report = analyze_traces(_run("trace-slow-operation", seed=12), "v1", "v2")
    (ratings,) = [f for f in report.findings if f.label == "GET reviews:9080/* -> ratings"]
    assert ratings.ci is not None and ratings.ci[0] < 1.6 < ratings.ci[1]  # the injected factor
    op = next(o for o in report.operations if o.label == "GET reviews:9080/* -> ratings")
    assert op.critical_path_canary > op.critical_path_baseline + 0.05
    assert "critical-path share" in ratings.reason


def test_error_scenario_ratio_and_no_latency_finding() -> None:
    report = analyze_traces(_run("trace-error-spans", seed=13), "v1", "v2")
    assert [f.kind for f in report.findings] == ["errors"]
    (finding,) = report.findings
    assert finding.ci is not None and finding.ci[0] > 5  # 5% injected on a 0.2% base: ratio ~25


def test_onset_minute_limits_the_regression_to_later_traces() -> None:
    scenario = trace_scenario({"preset": "trace-new-call", "regressions": [
        {"kind": "new-call", "callee": "mysql", "rate": 0.5, "onsetMinute": 10}]})
    rng = np.random.default_rng(5)
    before = generate_spans(rng, scenario, T0, T0 + 10 * MINUTE, {"v1": 45000, "v2": 5000}, canary_subset="v2", t0=T0)
    after = generate_spans(rng, scenario, T0 + 10 * MINUTE, T0 + 20 * MINUTE, {"v1": 45000, "v2": 5000},
                           canary_subset="v2", t0=T0)
    assert not any(s.service == "mysql.bookinfo" for s in before)
    assert {f.kind for f in analyze_traces(before, "v1", "v2").findings} == set()
    assert "new_call" in {f.kind for f in analyze_traces(after, "v1", "v2").findings}


def test_healthy_scenario_has_no_false_findings_across_50_seeds() -> None:
    false_runs, uncorrected_runs = 0, 0
    for seed in range(50):
        rng = np.random.default_rng(seed)
        spans = generate_spans(rng, trace_scenario("trace-healthy"), T0, T0 + 10 * MINUTE,
                               {"v1": 45000, "v2": 5000}, canary_subset="v2")
        report = analyze_traces(spans, "v1", "v2")
        false_runs += bool(report.findings)
        ps = [o.shift.p_value for o in report.operations if o.shift] + [c.p_value for c in report.calls]
        uncorrected_runs += min(ps) < 0.05
    # BH at 5% bounds the chance of any finding per healthy run by 5% (2.5 expected in 50); the effect
    # floors push it lower. An uncorrected scan of the same family flags several runs.
    assert false_runs <= 2
    assert uncorrected_runs >= 3


def test_simulated_spans_carry_istio_tags_the_selector_agrees_with() -> None:
    spans = _run("trace-healthy", seed=3, minutes=2)
    selector = SubsetSelector(app="reviews", host="reviews.bookinfo.svc.cluster.local",
                              by_label={"v1": "v1", "v2": "v2"})
    assert [s.subset for s in selector.assign(spans)] == [s.subset for s in spans]
    server = next(s for s in spans if s.kind == "server" and s.service == "reviews.bookinfo" and s.subset == "v2")
    attrs = server.attributes
    assert attrs["istio.canonical_service"] == "reviews" and attrs["istio.canonical_revision"] == "v2"
    assert attrs["istio.namespace"] == "bookinfo" and attrs["component"] == "proxy" and attrs["span.kind"] == "server"
    assert attrs["upstream_cluster"] == "inbound|9080||" and attrs["http.status_code"] in {"200", "503"}
    assert attrs["node_id"].startswith("sidecar~10.244.0.") and "~reviews-v2-" in attrs["node_id"]
    caller = next(s for s in spans if s.span_id == server.parent_id)
    assert caller.kind == "client" and caller.service == "productpage.bookinfo"
    assert caller.attributes["upstream_cluster"] == "outbound|9080|v2|reviews.bookinfo.svc.cluster.local"
    assert caller.start_us < server.start_us and server.start_us + server.duration_us < caller.start_us + \
        caller.duration_us


def test_sampling_rate_and_window_of_the_source() -> None:
    source = SimulatedTraceSource(trace_scenario("trace-healthy"), seed=4, canary_subset="v2")
    source.record(T0, T0 + MINUTE, {"v1": 90_000, "v2": 10_000})
    assert source.spans(SPEC, T0 + MINUTE, T0 + 2 * MINUTE) == []  # nothing started then
    spans = source.spans(SPEC, T0, T0 + MINUTE)
    roots = [s for s in spans if s.parent_id is None]
    assert 850 <= len(roots) <= 1150  # 1% of 100,000 requests
    assert all(T0.timestamp() * 1e6 <= s.start_us < (T0 + MINUTE).timestamp() * 1e6 for s in roots)
    assert source.spans(SPEC, T0, T0 + MINUTE) == []  # handed out once

    fed = SimulatedTraceSource(generate=lambda spec, start, end: roots[:3])
    assert fed.spans(SPEC, T0, T0 + MINUTE) == roots[:3]


def test_exceedance_counts_see_the_slow_canary() -> None:
    spans = _run("trace-slow-operation", seed=6, minutes=10)
    counts = trace_exceedance_counts(spans, [8.0], "v1", "v2")  # about the baseline's p75
    n_c, slow_c, n_b, slow_b = counts[8.0]
    assert n_c > 50 and n_b > 500
    assert slow_c / n_c > slow_b / n_b + 0.1


@pytest.mark.parametrize(("name", "kind"), [("trace-slow-operation", "slower"), ("trace-new-call", "new_call"),
                                            ("trace-error-spans", "errors"), ("trace-n-plus-one", "n_plus_one")])
def test_builtin_simulation_scenarios_carry_trace_scenarios(name: str, kind: str) -> None:
    scenario = load_scenario(name)
    assert scenario.traces is not None
    traces = trace_scenario(scenario.traces)
    assert traces.sampling_rate == 0.05
    rng = np.random.default_rng(21)
    per_minute = int(scenario.traffic.rps * 60)  # 10% of it to the canary
    spans = generate_spans(rng, traces, T0, T0 + 30 * MINUTE,
                           {"v1": 27 * per_minute, "v2": 3 * per_minute}, canary_subset="v2", t0=T0)
    assert kind in {f.kind for f in analyze_traces(spans, "v1", "v2").findings}
