"""The service's own Prometheus metrics (`/metrics`): weights, phases, decisions, tick time, source errors, evidence.

Per-rollout gauges are read at scrape time from the rollouts this process ticks (the leader);
followers export only their counters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from analyzer.config import RolloutSpec
from analyzer.model import Observation, Phase, RolloutState, Span
from analyzer.ports import MetricSource, SourceUnavailable, TraceSource

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class RolloutView:
    """What the gauges show of one rollout."""

    rollout: str
    name: str
    namespace: str
    canary_subset: str
    state: RolloutState
    evidence: tuple[tuple[str, float], ...]  # metric -> current e-value


class _RolloutCollector(Collector):
    def __init__(self, views: Callable[[], Iterable[RolloutView]]) -> None:
        self.views = views

    def collect(self) -> Iterator[Metric]:
        labels = ["rollout", "name", "namespace"]
        weight = GaugeMetricFamily("canary_analyzer_canary_weight", "Canary traffic weight (percent)", labels=labels)
        phase = GaugeMetricFamily("canary_analyzer_rollout_phase", "1 for the rollout's current phase",
                                  labels=[*labels, "phase"])
        evidence = GaugeMetricFamily("canary_analyzer_evidence", "Current rollback evidence (e-value) per metric",
                                     labels=[*labels, "metric"])
        for v in self.views():
            key = [v.rollout, v.name, v.namespace]
            weight.add_metric(key, float(v.state.weights.get(v.canary_subset, 0)))
            for p in Phase:
                phase.add_metric([*key, p.value], 1.0 if v.state.phase is p else 0.0)
            for metric, e in v.evidence:
                if math.isfinite(e):
                    evidence.add_metric([*key, metric], e)
        yield weight
        yield phase
        yield evidence


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.decisions = Counter("canary_analyzer_decisions", "Decisions by kind", ["kind"], registry=self.registry)
        self.tick_seconds = Histogram("canary_analyzer_tick_duration_seconds", "Wall time of one tick",
                                      buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                                      registry=self.registry)
        self.source_errors = Counter("canary_analyzer_source_errors", "Source queries that failed, by source",
                                     ["source"], registry=self.registry)
        self.tick_errors = Counter("canary_analyzer_tick_errors", "Ticks that raised (retried next interval)",
                                   registry=self.registry)
        self.ticks_lost = Counter("canary_analyzer_ticks_lost", "Scheduled ticks that did not run in time",
                                  registry=self.registry)

    def watch(self, views: Callable[[], Iterable[RolloutView]]) -> None:
        self.registry.register(_RolloutCollector(views))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class CountingMetrics:
    """A metric source that counts its failures (the engine holds the tick and carries on)."""

    def __init__(self, inner: MetricSource, counter: Any) -> None:
        self.inner = inner
        self.counter = counter
        self.in_process = getattr(inner, "in_process", False)  # see analyzer.app.compute

    def observe(self, spec: RolloutSpec, start: datetime, end: datetime) -> Observation:
        try:
            return self.inner.observe(spec, start, end)
        except SourceUnavailable:
            self.counter.inc()
            raise

    def query_lag(self, spec: RolloutSpec) -> float:
        return self.inner.query_lag(spec)


class CountingTraces:
    def __init__(self, inner: TraceSource, counter: Any) -> None:
        self.inner = inner
        self.counter = counter
        self.in_process = getattr(inner, "in_process", False)  # see analyzer.app.compute

    def spans(self, spec: RolloutSpec, start: datetime, end: datetime) -> list[Span]:
        try:
            return list(self.inner.spans(spec, start, end))
        except SourceUnavailable:
            self.counter.inc()
            raise
