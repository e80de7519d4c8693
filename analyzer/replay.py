"""Replay a past window through the judge, interval by interval: the gate for CI pipelines.

Stopping at the first decisive interval is valid because the evidence is anytime-valid
(statistics.md §2): peeking after every interval does not inflate the error rates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import structlog

from analyzer.config import RolloutSpec
from analyzer.gate import GateKind, dwell_done, gate_outcome
from analyzer.judge import OUTAGE_KEY, SRM_KEY, JudgeContext, initial_evidence, judge
from analyzer.model import MAX_BRIDGE, MetricVerdict, Observation, Span, Verdict, next_window_start
from analyzer.policy import warming_up
from analyzer.ports import MetricSource, SourceUnavailable, TraceSource
from analyzer.traces import TraceReport, analyze_traces


@dataclass(frozen=True)
class MetricSummary:
    metric: str
    verdict: str
    reason: str
    gate: bool
    e_value: float | None = None
    threshold: float | None = None
    ratio: float | None = None
    ci: tuple[float, float] | None = None
    canary: Mapping[str, float] = field(default_factory=dict)
    baseline: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, v: MetricVerdict) -> MetricSummary:
        return cls(v.metric, v.verdict.value, v.reason, v.gate, v.e_value, v.threshold, v.ratio, v.ci,
                   dict(v.canary), dict(v.baseline))


class GapKind(StrEnum):
    UNAVAILABLE = "unavailable"  # the source could not be asked
    NO_DATA = "no_data"  # the source answered without the series of one subset or both
    EDGE = "edge"  # one subset lacked samples at an edge of the window: a gap for both (statistics.md §5.7)
    UNREADABLE = "unreadable"  # samples held values no counter has (NaN, ±Inf, fractions, negatives)


@dataclass(frozen=True)
class Gap:
    start: datetime
    end: datetime
    kind: GapKind
    why: str


@dataclass(frozen=True)
class DataQuality:
    intervals: int = 0
    intervals_with_data: int = 0
    gaps: tuple[Gap, ...] = ()
    stale_series: tuple[str, ...] = ()
    srm: str | None = None  # the sample-ratio-mismatch reason, when one was found
    shared_outage: str | None = None


@dataclass(frozen=True)
class TraceOutcome:
    """The window's trace findings, or why the trace source could not be asked (then metrics judge alone)."""

    report: TraceReport | None
    unavailable: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.report is None:
            return {"unavailable": self.unavailable or "no trace report"}
        return self.report.to_json()


@dataclass(frozen=True)
class ReplayReport:
    verdict: str  # pass | fail | inconclusive
    reason: str
    start: datetime
    end: datetime
    decided_at: datetime | None
    metrics: tuple[MetricSummary, ...]
    data_quality: DataQuality
    traces: TraceOutcome | None = None  # None: no trace source configured

    def to_json(self) -> dict[str, Any]:
        dq = self.data_quality
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "metrics": [
                {**m.__dict__, "ci": list(m.ci) if m.ci else None, "canary": dict(m.canary),
                 "baseline": dict(m.baseline)}
                for m in self.metrics
            ],
            "data_quality": {
                "intervals": dq.intervals,
                "intervals_with_data": dq.intervals_with_data,
                "gaps": [{"start": g.start.isoformat(), "end": g.end.isoformat(), "kind": g.kind.value,
                          "why": g.why} for g in dq.gaps],
                "stale_series": list(dq.stale_series),
                "srm": dq.srm,
                "shared_outage": dq.shared_outage,
            },
            **({"traces": self.traces.to_json()} if self.traces is not None else {}),
        }


def _gap(start: datetime, end: datetime, observation: Observation | None, unavailable: str | None) -> Gap | None:
    if unavailable is not None:
        return Gap(start, end, GapKind.UNAVAILABLE, f"source unavailable: {unavailable}")
    assert observation is not None
    if observation.gap is not None:
        kind = GapKind.UNREADABLE if observation.gap.unreadable else GapKind.EDGE
        return Gap(start, end, kind, f"gap for both subsets: {observation.gap.why}")
    if observation.baseline is None or observation.canary is None:
        return Gap(start, end, GapKind.NO_DATA, "no data for " + " and ".join(
            n for n, s in (("baseline", observation.baseline), ("canary", observation.canary)) if s is None))
    return None


def _outcome(spec: RolloutSpec, verdicts: Sequence[MetricVerdict], ticks_with_data: int) -> tuple[str, str] | None:
    """(verdict, reason) once the interval decides, by the gate the policy applies at the last step; else None."""
    gate = gate_outcome(verdicts)
    if gate.kind is GateKind.FAIL:
        return "fail", gate.reason
    if gate.kind is GateKind.HALT:
        return "inconclusive", "comparison invalid: " + gate.reason
    if gate.kind is GateKind.PASS and dwell_done(spec, ticks_with_data):
        return "pass", gate.reason
    return None


def replay(
    spec: RolloutSpec,
    source: MetricSource,
    start: datetime,
    end: datetime,
    *,
    expected_share: float | None = None,
    traces: TraceSource | None = None,
) -> ReplayReport:
    """Judge [start, end) in steps of spec.timing.interval; a trailing partial interval is left out.

    The windows follow the daemon's rules (statistics.md §5.7): each ends one interval later than
    the last, and starts at the last edge both subsets had, so after a gap it reaches back over it
    and both sides' increments cover the same span.

    `expected_share` is the canary's configured traffic share during the window; without it the
    sample-ratio check is skipped (the weights of a past window are not in the metrics).
    With `traces`, each interval's spans are fetched as the engine does per tick: trace metrics judge
    them, and the spans up to the decision give the findings. Once the trace source fails (after its
    own retries) it is not asked again: the rest is judged on the metrics alone.
    """
    log = structlog.get_logger(__name__).bind(target=spec.name)
    step = timedelta(seconds=spec.timing.interval)
    evidence = initial_evidence(spec)
    verdicts: list[MetricVerdict] = []
    gaps: list[Gap] = []
    stale: set[str] = set()
    srm = outage = None
    ticks = with_data = 0
    sampled = _Sampled(traces)
    t = start
    edge = start  # the last edge both subsets had: the next window starts there
    while t + step <= end:
        observation: Observation | None = None
        unavailable = None
        if t + step - edge > MAX_BRIDGE:
            edge = t  # too long a gap to bridge: its increments are given up for both sides
        try:
            observation = source.observe(spec, edge, t + step)
            stale.update(observation.stale_series)
        except SourceUnavailable as exc:
            unavailable = str(exc)
        if observation is not None and traces is not None:
            observation = replace(observation, spans=sampled.fetch(spec, t, t + step))
        # The window starts with the canary already taking traffic (the engine's canary starts at Initializing).
        context = JudgeContext(expected_share=expected_share, warmup=warming_up(spec, start, t + step),
                               assess_promotion=True, unavailable=unavailable, seed=ticks)
        evidence, verdicts = judge(spec, evidence, observation, context)
        ticks += 1
        gap = _gap(edge, t + step, observation, unavailable)
        if gap:
            gaps.append(gap)
        elif not context.warmup:
            with_data += 1
        srm = srm or next((v.reason for v in verdicts if v.metric == SRM_KEY and v.verdict is Verdict.HALT), None)
        outage = outage or next((v.reason for v in verdicts if v.metric == OUTAGE_KEY), None)
        edge = next_window_start(edge, t + step, observation)
        t += step
        decided = _outcome(spec, verdicts, with_data)
        if decided:
            log.info("replay_decided", verdict=decided[0], at=t.isoformat(), intervals=ticks)
            return _report(decided, start, end, t, verdicts, ticks, with_data, gaps, stale, srm, outage,
                           sampled.outcome(spec))
    reason = f"no decision after {ticks} intervals ({with_data} with data)"
    if verdicts:
        reason += ": " + "; ".join(v.reason for v in verdicts if v.gate)
    return _report(("inconclusive", reason), start, end, None, verdicts, ticks, with_data, gaps, stale, srm, outage,
                   sampled.outcome(spec))


class _Sampled:
    """The window's spans, interval by interval, until the trace source fails."""

    def __init__(self, source: TraceSource | None) -> None:
        self.source = source
        self.spans: list[Span] = []
        self.unavailable: str | None = None

    def fetch(self, spec: RolloutSpec, start: datetime, end: datetime) -> tuple[Span, ...] | None:
        if self.source is None or self.unavailable is not None:
            return None
        try:
            spans = tuple(self.source.spans(spec, start, end))
        except SourceUnavailable as exc:
            self.unavailable = str(exc)
            structlog.get_logger(__name__).warning("trace_source_unavailable", error=self.unavailable,
                                                   note="judging on the metrics alone")
            return None
        self.spans.extend(spans)
        return spans

    def outcome(self, spec: RolloutSpec) -> TraceOutcome | None:
        if self.source is None:
            return None
        if self.unavailable is not None:
            return TraceOutcome(None, self.unavailable)
        t = spec.target
        return TraceOutcome(analyze_traces(self.spans, t.baseline.subset, t.canary.subset))


def _report(
    decided: tuple[str, str], start: datetime, end: datetime, decided_at: datetime | None,
    verdicts: Sequence[MetricVerdict], ticks: int, with_data: int, gaps: Sequence[Gap], stale: set[str],
    srm: str | None, outage: str | None, traces: TraceOutcome | None,
) -> ReplayReport:
    quality = DataQuality(ticks, with_data, tuple(gaps), tuple(sorted(stale)), srm, outage)
    return ReplayReport(decided[0], decided[1], start, end, decided_at,
                        tuple(MetricSummary.of(v) for v in verdicts), quality, traces)
