"""replay(): interval-by-interval judging of a past window, with a seeded in-memory source."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np

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
        "analysis": {"metrics": [{"type": "error-rate"}, {"type": "latency", "sloMs": 500}]},
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

    def observe(self, spec: RolloutSpec, start: datetime, end: datetime) -> Observation:
        k = int((start - T0).total_seconds() // 60)
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
