"""Gates for other controllers: Flagger's webhook (evidence per release checksum) and the one-shot judge.

Flagger (peers.md F.3) calls a webhook with `name, namespace, phase, checksum, metadata` and counts
any status above 202 as a failed check. Each call judges the interval since the previous call of the
same release, so the evidence accumulates per `checksum`: a new revision starts fresh. In `serve --sim`
each call observes one simulated interval of `metadata.scenario` (seed `metadata.seed`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from analyzer.app import wiring
from analyzer.app.cli.judge import connect_error, parse_time, report_json
from analyzer.app.settings import ServeSettings
from analyzer.config import PrometheusSource, RolloutSpec, SpecError, parse_duration
from analyzer.evidence import Evidence
from analyzer.judge import JudgeContext, initial_evidence, judge
from analyzer.model import MetricVerdict, Observation, Verdict
from analyzer.ports import MetricSource, SourceUnavailable
from analyzer.replay import GapKind, replay
from analyzer.sim.clock import EPOCH, VirtualClock
from analyzer.sim.mesh import SimulatedMesh
from analyzer.sim.scenario import builtin_names, load_scenario
from analyzer.traffic.memory import MemoryRouter

MAX_RELEASES = 10_000  # releases remembered per process (least recently called forgotten first)


class Unreachable(Exception):
    """The metric source cannot be read at all (HTTP 424: the request was fine, the dependency is not)."""


class FlaggerPayload(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=253)
    namespace: str = Field(min_length=1, max_length=63)
    phase: str = Field(default="", max_length=64)
    checksum: str = Field(default="", max_length=256)
    metadata: dict[str, str] = Field(default_factory=dict, description="`spec` names the spec to judge with")


class HookMetric(BaseModel):
    name: str
    verdict: str
    gate: bool
    evidence: float | None
    threshold: float | None
    reason: str


class HookOut(BaseModel):
    verdict: str  # continue | pass | fail | no_data
    reason: str
    name: str
    namespace: str
    checksum: str
    intervals: int  # intervals judged for this release so far
    metrics: list[HookMetric]


@dataclass
class _Release:
    spec: RolloutSpec
    source: MetricSource
    evidence: Evidence
    last_end: datetime | None = None
    clock: VirtualClock | None = None  # simulated releases move one interval per call
    intervals: int = 0
    failed: HookOut | None = None
    verdicts: list[MetricVerdict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _finite(x: float | None) -> float | None:
    return None if x is None or x != x or x in (float("inf"), float("-inf")) else x


class FlaggerHooks:
    def __init__(self, settings: ServeSettings, load_spec: Callable[[str], tuple[RolloutSpec, str]]) -> None:
        self.settings = settings
        self.load_spec = load_spec
        self.releases: OrderedDict[tuple[str, str, str], _Release] = OrderedDict()
        self._lock = threading.Lock()

    def call(self, payload: FlaggerPayload) -> HookOut:
        key = (payload.namespace, payload.name, payload.checksum)
        with self._lock:
            release = self.releases.get(key)
            if release is not None:
                self.releases.move_to_end(key)
        if release is None:
            release = self._release(payload)
            with self._lock:
                release = self.releases.setdefault(key, release)
                while len(self.releases) > MAX_RELEASES:
                    self.releases.popitem(last=False)
        with release.lock:
            return self._judge(payload, release)

    def _release(self, payload: FlaggerPayload) -> _Release:
        name = payload.metadata.get("spec")
        if not name:
            raise SpecError("metadata.spec: required (the name of the spec in the specs directory to judge with)")
        spec, _ = self.load_spec(name)
        if not self.settings.sim:
            spec = wiring.with_overrides(spec, wiring.Settings(prometheus_url=self.settings.prometheus_url))
            return _Release(spec, wiring.metric_source(spec), initial_evidence(spec))
        scenario = payload.metadata.get("scenario", "healthy")
        if scenario not in builtin_names():
            raise SpecError(f"metadata.scenario: {scenario!r} is not a built-in scenario")
        seed_text = payload.metadata.get("seed", "0")
        weight_text = payload.metadata.get("canaryWeight", "50")
        if not seed_text.isdigit() or not weight_text.isdigit() or not 1 <= int(weight_text) <= 99:
            raise SpecError(f"metadata.seed {seed_text!r} / metadata.canaryWeight {weight_text!r}: "
                            "a seed >= 0 and a weight 1-99")
        router = MemoryRouter()
        weight = int(weight_text)
        router.set_weights(spec, {spec.target.baseline.subset: 100 - weight, spec.target.canary.subset: weight})
        clock = VirtualClock(EPOCH)
        mesh = SimulatedMesh(load_scenario(scenario), router, seed=int(seed_text), start=EPOCH,
                             edges=spec.analysis.bucket_edges)
        return _Release(spec, mesh, initial_evidence(spec), last_end=EPOCH, clock=clock)

    def _judge(self, payload: FlaggerPayload, r: _Release) -> HookOut:
        if r.failed is not None:  # a proven regression stays proven for this release
            return r.failed
        interval = timedelta(seconds=r.spec.timing.interval)
        if r.clock is not None:
            end = r.clock.advance(r.spec.timing.interval)
        else:
            end = datetime.now(UTC) - timedelta(seconds=r.source.query_lag(r.spec))
        start = r.last_end if r.last_end is not None else end - interval
        if end - start >= interval:  # called more often than once an interval: answer from what is known
            observation: Observation | None = None
            unavailable = None
            try:
                observation = r.source.observe(r.spec, start, end)
            except SourceUnavailable as exc:
                unavailable = str(exc)
            context = JudgeContext(assess_promotion=True, unavailable=unavailable, seed=r.intervals)
            r.evidence, r.verdicts = judge(r.spec, r.evidence, observation, context)
            r.last_end = end
            r.intervals += 1
        out = self._answer(payload, r)
        if out.verdict == "fail":
            r.failed = out
        return out

    @staticmethod
    def _answer(payload: FlaggerPayload, r: _Release) -> HookOut:
        gates = [v for v in r.verdicts if v.gate]
        if any(v.verdict is Verdict.FAIL for v in gates):
            verdict = "fail"
        elif gates and all(v.verdict is Verdict.PASS for v in gates):
            verdict = "pass"
        elif gates and all(v.verdict is Verdict.NO_DATA for v in gates):
            verdict = "no_data"
        else:
            verdict = "continue"
        failing = [v.reason for v in gates if v.verdict is Verdict.FAIL]
        reason = "; ".join(failing) if failing else (
            "; ".join(v.reason for v in gates) or "no interval judged yet")
        return HookOut(
            verdict=verdict, reason=reason, name=payload.name, namespace=payload.namespace,
            checksum=payload.checksum, intervals=r.intervals,
            metrics=[HookMetric(name=v.metric, verdict=v.verdict.value, gate=v.gate, evidence=_finite(v.e_value),
                                threshold=_finite(v.threshold), reason=v.reason) for v in r.verdicts],
        )


# ---- POST /v1/judge: `canary-analyzer judge --json` over HTTP ----


def _when(text: str, field: str, now: datetime) -> datetime:
    """RFC 3339, unix seconds, `now`, or `now-DURATION` (e.g. now-30m), for callers that cannot compute times
    (an Argo Rollouts AnalysisTemplate)."""
    value = text.strip()
    if value == "now":
        return now
    if value.startswith("now-"):
        try:
            return now - timedelta(seconds=parse_duration(value[4:]))
        except ValueError as exc:
            raise SpecError(f"{field}: {text!r}: {exc}") from None
    return parse_time(text, field)


def judge_json(spec: RolloutSpec, start: str, end: str, *, settings: ServeSettings,
               canary_weight: int | None) -> dict[str, Any]:
    if settings.prometheus_url is not None:
        spec = wiring.with_overrides(spec, wiring.Settings(prometheus_url=settings.prometheus_url))
    config = spec.sources.metrics
    if not isinstance(config, PrometheusSource):
        raise SpecError(f"sources.metrics.type: {config.type!r} cannot be judged; judge reads Prometheus")
    now = datetime.now(UTC)
    t0, t1 = _when(start, "start", now), _when(end, "end", now)
    if t1 <= t0:
        raise SpecError(f"end: {end!r} is not after start {start!r}")
    if (t1 - t0).total_seconds() < spec.timing.interval:
        raise SpecError(f"end: the window is shorter than one interval (timing.interval {spec.timing.interval:g}s)")
    refused = connect_error(config)
    if refused is not None:
        raise Unreachable(refused)
    share = None if canary_weight is None else canary_weight / 100.0
    report = replay(spec, wiring.metric_source(spec), t0, t1, expected_share=share)
    dq = report.data_quality
    unavailable = [g for g in dq.gaps if g.kind is GapKind.UNAVAILABLE]
    if dq.intervals and len(unavailable) == dq.intervals:
        raise Unreachable(f"no interval of the window could be read from Prometheus ({unavailable[0].why})")
    return report_json(report, spec, srm_checked=share is not None)
