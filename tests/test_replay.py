"""replay(): interval-by-interval judging of a past window, with a seeded in-memory source."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from analyzer.config import RolloutSpec, parse_spec
from analyzer.model import ISTIO_DEFAULT_EDGES_MS, Observation, SubsetCounts
from analyzer.ports import SourceUnavailable
from analyzer.replay import replay

T0 = datetime(2026, 1, 1, tzinfo=UTC)
EDGES = ISTIO_DEFAULT_EDGES_MS
SLO = EDGES.index(500)


def spec() -> RolloutSpec:
    return parse_spec({
        "metadata": {"name": "reviews"},
        "target": {"namespace": "bookinfo", "virtualService": "reviews", "host": "reviews",
                   "baseline": {"subset": "v1"}, "canary": {"subset": "v2"}},
        "strategy": {"steps": [50]},
        "timing": {"interval": "1m", "minDwell": 3},
        "analysis": {"metrics": [{"type": "error-rate"},
                                 # Almost no request is slower than 500 ms: promotion needs the opt-in rule.
                                 {"type": "latency", "sloMs": 500, "negligibleRate": 0.001}]},
    })


class BinomialSource:
    """Each interval: n requests per subset, errors and slow (> 500 ms) requests drawn with fixed rates."""

    def __init__(self, canary_error: float, *, n: int = 2000, seed: int = 1,
                 down: frozenset[int] = frozenset(), no_canary: frozenset[int] = frozenset()) -> None:
        self.rates = {"baseline": 0.01, "canary": canary_error}
        self.n = n
        self.rng = np.random.default_rng(seed)
        self.down, self.no_canary = down, no_canary

    def _counts(self, error_rate: float) -> SubsetCounts:
        errors = int(self.rng.binomial(self.n, error_rate))
        slow = int(self.rng.binomial(self.n, 0.02))
        le = (*(self.n - slow if e >= 500 else 0 for e in EDGES), self.n)
        return SubsetCounts(self.n, errors, le)

    def query_lag(self, spec: RolloutSpec) -> float:
        return 0.0

    def observe(self, spec: RolloutSpec, start: datetime, end: datetime) -> Observation:
        k = int((end - T0).total_seconds() // 60) - 1  # by the window's end: after a gap it starts earlier
        if k in self.down:
            raise SourceUnavailable("connection refused")
        canary = None if k in self.no_canary else self._counts(self.rates["canary"])
        return Observation(start, end, self._counts(self.rates["baseline"]), canary, EDGES,
                           stale_series=('istio_requests_total{pod="gone"}',) if k == 0 else ())


def test_a_regression_fails_early_with_its_decision_time():
    report = replay(spec(), BinomialSource(canary_error=0.08), T0, T0 + timedelta(minutes=30))
    assert report.verdict == "fail"
    assert report.decided_at is not None and report.decided_at <= T0 + timedelta(minutes=5)
    assert report.data_quality.intervals == (report.decided_at - T0) // timedelta(minutes=1)
    assert any(m.metric == "errors" and m.verdict == "fail" for m in report.metrics)


def test_an_equal_canary_passes_after_the_minimum_dwell_and_never_fails():
    report = replay(spec(), BinomialSource(canary_error=0.01), T0, T0 + timedelta(minutes=60))
    assert report.verdict == "pass", report.reason
    assert report.decided_at is not None and report.decided_at >= T0 + timedelta(minutes=3)


def test_gaps_and_stale_series_are_reported_and_the_replay_goes_on():
    source = BinomialSource(canary_error=0.01, down=frozenset({1, 2}), no_canary=frozenset({3}))
    report = replay(spec(), source, T0, T0 + timedelta(minutes=6, seconds=30))
    dq = report.data_quality
    assert [g.why.split(":")[0] for g in dq.gaps] == ["source unavailable", "source unavailable", "no data for canary"]
    assert dq.intervals == 6  # the trailing half interval is left out
    assert dq.intervals_with_data == 3
    assert dq.stale_series == ('istio_requests_total{pod="gone"}',)
    assert report.verdict == "inconclusive" and report.decided_at is None
    assert report.reason.startswith("no decision after 6 intervals (3 with data)")


def test_report_serialises_to_json():
    report = replay(spec(), BinomialSource(canary_error=0.08), T0, T0 + timedelta(minutes=10))
    data = json.loads(json.dumps(report.to_json()))
    assert data["verdict"] == "fail"
    assert data["decided_at"] == report.decided_at.isoformat()
    assert {m["metric"] for m in data["metrics"]} >= {"errors", "latency"}
    assert data["data_quality"]["intervals"] == report.data_quality.intervals


class RecordedSource:
    """Serves the observations an engine recorded, by window start: replay sees exactly what the engine saw."""

    def __init__(self, observations: list[Observation]) -> None:
        self.by_start = {o.start: o for o in observations}

    def query_lag(self, spec: RolloutSpec) -> float:
        return 0.0

    def observe(self, spec: RolloutSpec, start: datetime, end: datetime) -> Observation:
        return self.by_start[start]


@pytest.mark.parametrize(("scenario", "outcome", "verdict"), [("error-regression", "rolled_back", "fail"),
                                                               ("latency-regression", "rolled_back", "fail"),
                                                               ("healthy", "promoted", "pass")])
def test_replay_and_the_engine_agree_on_the_same_recorded_ticks(scenario: str, outcome: str, verdict: str) -> None:
    """One step then promotion: the engine's tick-by-tick evidence and decision equal replay's on its observations."""
    from analyzer.app import wiring
    from analyzer.engine import Engine
    from analyzer.sim.scenario import load_scenario

    s = spec()
    rig = wiring.simulated(s, load_scenario(scenario), seed=4)
    engine = Engine(s, "r1", rig.adapters, seed=4)
    engine.start()
    ticks = []
    while not engine.done:
        rig.clock.advance(s.timing.interval)
        ticks.append(engine.tick())
    observed = [t for t in ticks if t.observation is not None]
    assert engine.state.outcome == outcome and observed
    first = observed[0].observation
    assert first is not None
    report = replay(s, RecordedSource([t.observation for t in observed if t.observation]), first.start,
                    rig.clock.now())
    assert report.verdict == verdict
    decided = next(t for t in ticks if t.decision.kind in ("promote", "rollback"))
    assert decided.observation is not None and report.decided_at == decided.observation.end
    for mine, theirs in zip([v for v in decided.verdicts if v.gate], [m for m in report.metrics if m.gate],
                            strict=True):
        assert (mine.metric, mine.verdict.value, mine.e_value) == (theirs.metric, theirs.verdict, theirs.e_value)
