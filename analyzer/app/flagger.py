"""Gates for other controllers: Flagger's webhook (evidence per release checksum) and the one-shot judge.

Flagger (peers.md F.3) calls a webhook with `name, namespace, phase, checksum, metadata` and counts
any status above 202 as a failed check. Each call judges the interval since the previous call of the
same release, so the evidence accumulates per `checksum`: a new revision starts fresh. In `serve --sim`
each call observes one simulated interval of `metadata.scenario` (seed `metadata.seed`).

The evidence lives in the store (table `hook_releases`, `analyzer.store.hook_releases`), not in the
process: every replica serves the webhook, a pipeline's successive calls land on any of them, and a
restarted replica continues where the release was. A call reads the release, judges, and writes it back
only if no other call wrote it meanwhile (compare-and-set), else reads again: an interval is judged once.
A release keeps the spec text it began with (a later edit of the specs directory applies to new checksums).
A simulated release keeps its mesh's random generator state in the row, because an interval's draws
depend on every earlier interval's; the mesh is rebuilt from it on whichever replica the call lands.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field

from analyzer.app import names, wiring
from analyzer.app.cli.judge import connect_error, parse_time, report_json
from analyzer.app.settings import ServeSettings
from analyzer.config import PrometheusSource, RolloutSpec, SpecError, parse_duration, parse_spec
from analyzer.judge import JudgeContext, initial_evidence, judge
from analyzer.model import Observation, Verdict
from analyzer.ports import MetricSource, SourceUnavailable
from analyzer.replay import GapKind, replay
from analyzer.sim.clock import EPOCH
from analyzer.sim.mesh import SimulatedMesh
from analyzer.sim.scenario import builtin_names, load_scenario
from analyzer.store import hook_releases
from analyzer.store.hook_releases import HookRelease
from analyzer.store.sql import SqlStore
from analyzer.traffic.memory import MemoryRouter

ATTEMPTS = 50  # compare-and-set tries per call; a lost try means another call on the release just wrote it
_CACHED = 256  # parsed specs, metric sources and scenarios kept per process (pure functions of their key)
T = TypeVar("T")


class Unreachable(Exception):
    """The metric source cannot be read at all (HTTP 424: the request was fine, the dependency is not)."""


class Busy(Exception):
    """Other calls on the same release kept writing it first (HTTP 503: call again)."""


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


def _finite(x: float | None) -> float | None:
    return None if x is None or x != x or x in (float("inf"), float("-inf")) else x


class FlaggerHooks:
    """The webhook's releases, read from and written to the store on every call. The process keeps only
    caches of pure functions (a spec text's parse, its metric source, a built-in scenario)."""

    def __init__(self, settings: ServeSettings, store: SqlStore,
                 load_spec: Callable[[str], tuple[RolloutSpec, str]]) -> None:
        self.settings = settings
        self.store = store
        self.load_spec = load_spec
        self._cache: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def call(self, payload: FlaggerPayload) -> HookOut:
        if not payload.checksum.isprintable():  # a hash in practice; PostgreSQL cannot store NUL in text
            raise SpecError(f"checksum: {payload.checksum!r} has control characters")
        key = (payload.namespace, payload.name, payload.checksum)
        for attempt in range(ATTEMPTS):
            release = hook_releases.get(self.store, *key) or self._new(payload)
            now = datetime.now(UTC)
            if release.failed is not None:  # a proven regression stays proven for this release
                hook_releases.touch(self.store, *key, now)
                return HookOut.model_validate(release.failed)
            out = self._judge(payload, release)
            if hook_releases.put(self.store, release, now):
                return out
            time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 10)))  # another call won: read again
        raise Busy(f"release {payload.namespace}/{payload.name} checksum {payload.checksum!r}: "
                   f"{ATTEMPTS} concurrent calls wrote it first; call again")

    def _cached(self, kind: str, key: str, make: Callable[[], T]) -> T:
        with self._lock:
            found = self._cache.get((kind, key))
        if found is None:
            found = make()
            with self._lock:
                if len(self._cache) >= _CACHED:
                    self._cache.clear()
                self._cache[(kind, key)] = found
        return found

    def _spec(self, r: HookRelease) -> RolloutSpec:
        def parse() -> RolloutSpec:
            spec = names.check_spec(parse_spec(yaml.safe_load(r.spec_text), f"spec {r.spec_name}"))
            if r.scenario is None:
                spec = wiring.with_overrides(spec, wiring.Settings(prometheus_url=self.settings.prometheus_url))
            return spec

        return self._cached("live" if r.scenario is None else "sim", r.spec_text, parse)

    def _new(self, payload: FlaggerPayload) -> HookRelease:
        name = payload.metadata.get("spec")
        if not name:
            raise SpecError("metadata.spec: required (the name of the spec in the specs directory to judge with)")
        spec, text = self.load_spec(name)
        release = HookRelease(payload.namespace, payload.name, payload.checksum, name, text, initial_evidence(spec))
        if not self.settings.sim:
            self._source(self._spec(release), text)  # a spec that cannot read Prometheus is refused before it is stored
            return release
        scenario = payload.metadata.get("scenario", "healthy")
        if scenario not in builtin_names():
            raise SpecError(f"metadata.scenario: {scenario!r} is not a built-in scenario")
        seed_text = payload.metadata.get("seed", "0")
        weight_text = payload.metadata.get("canaryWeight", "50")
        digits = seed_text.isascii() and seed_text.isdigit() and weight_text.isascii() and weight_text.isdigit()
        if not digits or not 1 <= int(weight_text) <= 99:
            raise SpecError(f"metadata.seed {seed_text!r} / metadata.canaryWeight {weight_text!r}: "
                            "a seed >= 0 and a weight 1-99")
        if int(seed_text) >= 2**63:
            raise SpecError(f"metadata.seed {seed_text!r}: a seed below 2^63")
        release.scenario, release.seed, release.canary_weight = scenario, int(seed_text), int(weight_text)
        release.last_end = EPOCH
        return release

    def _source(self, spec: RolloutSpec, spec_text: str) -> MetricSource:
        return self._cached("source", spec_text, lambda: wiring.metric_source(spec))

    def _mesh(self, spec: RolloutSpec, r: HookRelease) -> SimulatedMesh:
        """The release's simulated mesh as it was after its last interval."""
        assert r.scenario is not None and r.seed is not None and r.canary_weight is not None
        scenario = self._cached("scenario", r.scenario, lambda: load_scenario(r.scenario or ""))
        router = MemoryRouter()
        router.set_weights(spec, {spec.target.baseline.subset: 100 - r.canary_weight,
                                  spec.target.canary.subset: r.canary_weight})
        mesh = SimulatedMesh(scenario, router, seed=r.seed, start=EPOCH, edges=spec.analysis.bucket_edges)
        if r.sim_state is not None:
            mesh.rng.bit_generator.state = _rng_in(r.sim_state)
        return mesh

    def _judge(self, payload: FlaggerPayload, r: HookRelease) -> HookOut:
        """Judge the interval since the release's last one (if a whole interval passed) into `r`; the answer."""
        spec = self._spec(r)
        interval = timedelta(seconds=spec.timing.interval)
        mesh = None
        if r.scenario is not None:  # a simulated release moves one interval per call
            mesh = self._mesh(spec, r)
            source: MetricSource = mesh
            end = (r.last_end or EPOCH) + interval
        else:
            source = self._source(spec, r.spec_text)
            end = datetime.now(UTC) - timedelta(seconds=source.query_lag(spec))
        start = r.last_end if r.last_end is not None else end - interval
        if end - start >= interval:  # called more often than once an interval: answer from what is known
            observation: Observation | None = None
            unavailable = None
            try:
                observation = source.observe(spec, start, end)
            except SourceUnavailable as exc:
                unavailable = str(exc)
            context = JudgeContext(assess_promotion=True, unavailable=unavailable, seed=r.intervals)
            r.evidence, r.verdicts = judge(spec, r.evidence, observation, context)
            r.last_end = end
            r.intervals += 1
            if mesh is not None:
                r.sim_state = _rng_out(mesh)
        out = self._answer(payload, r)
        if out.verdict == "fail":
            r.failed = out.model_dump(mode="json")
        return out

    @staticmethod
    def _answer(payload: FlaggerPayload, r: HookRelease) -> HookOut:
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


def _rng_out(mesh: SimulatedMesh) -> dict[str, Any]:
    """The mesh generator's state as JSON; its 128-bit integers as decimal strings, exact in any JSON reader."""
    state = mesh.rng.bit_generator.state
    return {"bit_generator": state["bit_generator"], "state": {k: str(v) for k, v in state["state"].items()},
            "has_uint32": int(state["has_uint32"]), "uinteger": str(state["uinteger"])}


def _rng_in(data: dict[str, Any]) -> dict[str, Any]:
    return {"bit_generator": data["bit_generator"], "state": {k: int(v) for k, v in data["state"].items()},
            "has_uint32": int(data["has_uint32"]), "uinteger": int(data["uinteger"])}


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
