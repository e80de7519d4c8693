"""The rollout spec: pydantic models, YAML loading, and validation messages that name the field and value."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from analyzer import user_yaml
from analyzer.errors import UserError
from analyzer.model import ISTIO_DEFAULT_EDGES_MS, Event, HeaderMatch

_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
MAX_DURATION_S = 366 * 86400.0  # longer is a typo, and overflows date arithmetic long before 1e300 s
# Names the judge gives its own verdicts and evidence (judge.SRM_KEY, judge.OUTAGE_KEY, kayenta_gate.KEY);
# trace findings are named "traces/<kind>:<label>". A user metric must not take them.
RESERVED_METRIC_NAMES = frozenset({"traffic-split", "shared-outage", "kayenta"})
RESERVED_METRIC_PREFIX = "traces/"
MAX_RATIO = 1000.0  # tolerance and mde: a canary 1000x worse is caught by any setting; above it the maths overflows
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9._:/-]*$")
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class SpecError(UserError):
    """A user's mistake in a spec: printed as is, exit status 2."""


def parse_duration(value: Any) -> float:
    """'90s', '5m', '1h', '1d', 500ms or a bare number of seconds -> seconds (finite, at most a year)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration (use e.g. 30s, 5m, 1h)")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a finite duration")
    if seconds < 0:
        raise ValueError(f"{value!r} is negative")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"{value!r} is longer than a year")
    return seconds


# A duration in seconds, written as 500ms, 30s, 5m, 1h or a bare number of seconds.
Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]


class Model(BaseModel):
    # allow_inf_nan=False: .inf or .nan in any number field is a mistake, named like any other.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True,
                              allow_inf_nan=False)


class SubsetRef(Model):
    subset: str = Field(min_length=1)
    # The label value that tells this subset apart in telemetry (destination_canonical_revision);
    # defaults to the subset name, which in Bookinfo equals the `version` label.
    version: str | None = None
    replicas: StrictInt = Field(default=1, ge=0)
    deployment: str | None = None  # the Deployment behind the subset (scaling); default <host>-<subset>

    @property
    def label_value(self) -> str:
        return self.version or self.subset

    @field_validator("subset", "version")
    @classmethod
    def _label_safe(cls, v: str | None) -> str | None:
        if v is not None and not _LABEL_VALUE.match(v):
            raise ValueError(f"{v!r} has characters not allowed in a label value")
        return v

    @field_validator("deployment")
    @classmethod
    def _deployment(cls, v: str | None) -> str | None:
        if v is not None and not _DNS_NAME.match(v):
            raise ValueError(f"{v!r} is not a valid Kubernetes name")
        return v


class Target(Model):
    namespace: str = Field(min_length=1)
    virtual_service: str = Field(min_length=1)
    route: str | None = None  # name of the http route in the VirtualService; None = the first route
    host: str = Field(min_length=1)
    destination_rule: str | None = None  # defaults to the VirtualService name
    gateways: list[str] = Field(default_factory=list)
    baseline: SubsetRef
    canary: SubsetRef
    # A third party changed our route's weights or destinations: pause the rollout, or restore our weights.
    on_drift: Literal["pause", "correct"] = "pause"
    restore_on_abort: bool = False  # on abort, put the managed route back as it was before the rollout

    @field_validator("namespace", "virtual_service", "destination_rule")
    @classmethod
    def _dns(cls, v: str | None) -> str | None:
        if v is not None and not _DNS_NAME.match(v):
            raise ValueError(f"{v!r} is not a valid Kubernetes name")
        return v

    @model_validator(mode="after")
    def _distinct(self) -> Target:
        if self.baseline.subset == self.canary.subset:
            raise ValueError(f"baseline and canary use the same subset {self.baseline.subset!r}")
        return self

    @property
    def destination_rule_name(self) -> str:
        return self.destination_rule or self.virtual_service

    def deployment_of(self, subset: str) -> str:
        ref = self.baseline if subset == self.baseline.subset else self.canary
        return ref.deployment or f"{self.host.split('.', 1)[0]}-{subset}"


class HeaderPhase(Model):
    """Testers first: requests matching the header go to the canary for at least `min_duration`."""

    header: str = "end-user"
    match: Literal["exact", "prefix", "regex"] = "exact"
    value: str = Field(min_length=1)
    min_duration: Duration = 300.0
    # Share of all requests that carry the header (used by the simulator only).
    expected_share: float = Field(default=0.05, gt=0, le=1)
    # Testers are not a random sample of users: in a canary strategy this phase is judged (for gross failures)
    # with this share of alpha, the weighted steps with the rest, and its evidence is not carried into them.
    alpha_share: float = Field(default=0.2, gt=0, lt=1)

    def as_match(self) -> HeaderMatch:
        return HeaderMatch(header=self.header, value=self.value, kind=self.match)


class Scaling(Model):
    """Deployment replicas follow the weights (`kubectl scale` in the manual flow); nothing is deleted."""

    total_replicas: int | None = Field(default=None, ge=1)  # the service's replicas; default baseline.replicas
    bake_time: Duration = 0.0  # after promotion, wait this long before the baseline goes to 0


class Strategy(Model):
    type: Literal["canary", "blue-green", "ab-test"] = "canary"
    steps: list[StrictInt] | None = None  # strict: "10" is a string, not a weight
    step_weight: StrictInt | None = Field(default=None, gt=0, le=100)
    max_weight: StrictInt | None = Field(default=None, gt=0, le=100)
    header_phase: HeaderPhase | None = None
    scaling: Scaling | None = None
    # After promotion: scale the baseline to this many replicas (0 keeps the Deployment, as by hand).
    baseline_replicas_after_promotion: StrictInt = Field(default=0, ge=0)

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: list[int] | None) -> list[int] | None:
        if steps is None:
            return None
        if not steps:
            raise ValueError("[] needs at least one weight")
        for i, w in enumerate(steps):
            if w <= 0:
                raise ValueError(f"[{i}]: {w} is not above 0")
            if w > 100:
                raise ValueError(f"[{i}]: {w} is above 100")
            if i and w <= steps[i - 1]:
                raise ValueError(f"[{i}]: {w} does not increase on {steps[i - 1]}")
        return steps

    @model_validator(mode="after")
    def _shape(self) -> Strategy:
        if self.steps is not None and self.step_weight is not None:
            raise ValueError("give either steps or stepWeight/maxWeight, not both")
        if self.type in ("ab-test", "blue-green") and self.header_phase is None:
            raise ValueError(f"type {self.type!r} needs a headerPhase (the test traffic)")
        if self.type == "canary" and self.steps is None and self.step_weight is None:
            raise ValueError("type 'canary' needs steps or stepWeight")
        if self.type == "canary" and self.weights == [100]:
            raise ValueError("type 'canary' needs at least one weight below 100 (use blue-green for a cut-over)")
        return self

    @property
    def weights(self) -> list[int]:
        """The weight steps, always ending at 100 (promotion)."""
        if self.type != "canary":
            return [100]
        if self.steps is not None:
            steps = list(self.steps)
        else:
            assert self.step_weight is not None
            top = self.max_weight or 100
            steps = list(range(self.step_weight, top + 1, self.step_weight))
            if not steps or steps[-1] != top:
                steps.append(top)
        if steps[-1] != 100:
            steps.append(100)
        return steps


class Timing(Model):
    interval: Duration = 60.0
    min_dwell: StrictInt = Field(default=3, ge=1)  # intervals with data per step
    max_dwell: StrictInt | None = Field(default=None, ge=1)  # intervals at the last partial step before giving up
    budget: Duration = 3600.0  # overall time budget
    warmup: Duration = 0.0  # first seconds of the canary excluded from evidence

    @model_validator(mode="after")
    def _ranges(self) -> Timing:
        if self.interval < 1:
            raise ValueError(f"interval: {self.interval}s is below 1s")
        if self.budget < self.interval:
            raise ValueError(f"budget: {self.budget}s is shorter than the interval {self.interval}s")
        if self.max_dwell is not None and self.max_dwell < self.min_dwell:
            raise ValueError(f"maxDwell: {self.max_dwell} is below minDwell {self.min_dwell}")
        return self


class ErrorRateMetric(Model):
    name: str = "errors"
    type: Literal["error-rate"] = "error-rate"
    gate: bool = True
    tolerance: float = Field(default=1.5, gt=1, le=MAX_RATIO)  # promote when theta is shown below this
    mde: float = Field(default=2.0, gt=1, le=MAX_RATIO)  # the regression the plan sizes traffic for
    weight: float = Field(default=1.0, gt=0, le=1e6)  # share of alpha
    # Opt-in: a canary whose own error rate is shown below this level may promote (from the same promotionAlpha).
    negligible_rate: float | None = Field(default=None, gt=0, lt=1)
    # Prior upper bound on the noise between intervals (sd of the log rate ratio, e.g. pods varying minute to
    # minute); the data then tighten it. 0 trusts the binomial model (the test before issue 9).
    interval_noise: float = Field(default=0.5, ge=0, le=2)
    # What counts as an error (formats.md §1.5): 5xx by default; Kiali also counts "0" and gRPC.
    include_no_response: bool = False
    include_grpc: bool = False
    include_4xx: bool = False


class LatencyMetric(Model):
    name: str = "latency"
    type: Literal["latency"] = "latency"
    gate: bool = True
    slo_ms: float | None = Field(default=None, gt=0)  # must be a bucket edge
    edges: list[float] | None = None  # pre-registered edges (ms); default: the SLO edge, or 250 and 500
    tolerance: float = Field(default=1.5, gt=1, le=MAX_RATIO)
    mde: float = Field(default=2.0, gt=1, le=MAX_RATIO)
    weight: float = Field(default=1.0, gt=0, le=1e6)
    # Opt-in: an edge whose canary slow share is shown below this level may promote (same promotionAlpha).
    negligible_rate: float | None = Field(default=None, gt=0, lt=1)
    # Prior bound on the noise between intervals of the exceedance ratio at an edge with tail slope ≥ 7 (0.25 covers
    # ~3.5% per-minute median jitter of one canary pod there); gentler edges get less (dispersion.edge_prior).
    # 0 trusts the binomial model.
    interval_noise: float = Field(default=0.25, ge=0, le=2)
    bucket_edges: list[float] = Field(default_factory=lambda: list(ISTIO_DEFAULT_EDGES_MS))

    @model_validator(mode="after")
    def _edges(self) -> LatencyMetric:
        known = set(self.bucket_edges)
        for i, e in enumerate(self.edges or []):
            if e not in known:
                raise ValueError(f"edges[{i}]: {e:g} is not a histogram bucket edge")
        if self.slo_ms is not None and self.slo_ms not in known:
            raise ValueError(f"sloMs: {self.slo_ms:g} is not a histogram bucket edge")
        if sorted(self.bucket_edges) != self.bucket_edges:
            raise ValueError("bucketEdges must increase")
        return self

    @property
    def gate_edges(self) -> list[float]:
        if self.edges:
            return sorted(set(self.edges))
        if self.slo_ms is not None:
            return [self.slo_ms]
        return [250.0, 500.0]


class TraceMetric(Model):
    """Span durations of sampled traces at pre-registered edges (statistics.md §5.3); explains by default."""

    name: str = "traces"
    type: Literal["traces"] = "traces"
    gate: bool = False
    edges: list[float] = Field(default_factory=lambda: [100.0, 250.0], min_length=1)
    tolerance: float = Field(default=1.5, gt=1, le=MAX_RATIO)
    mde: float = Field(default=2.0, gt=1, le=MAX_RATIO)
    weight: float = Field(default=1.0, gt=0, le=1e6)
    negligible_rate: float | None = Field(default=None, gt=0, lt=1)
    interval_noise: float = Field(default=0.25, ge=0, le=2)

    @property
    def gate_edges(self) -> list[float]:
        return sorted(set(self.edges))


class CustomMetric(Model):
    """A templated PromQL query giving one value per subset, compared like Flagger's thresholdRange."""

    name: str = Field(min_length=1)
    type: Literal["custom"] = "custom"
    gate: bool = True
    query: str = Field(min_length=1)  # {{ namespace }}, {{ service }}, {{ subset_label }}, {{ subset }}, {{ interval }}
    max: float | None = None  # absolute upper bound on the canary value
    min: float | None = None
    max_ratio: float | None = Field(default=None, gt=0)  # canary / baseline upper bound
    failure_limit: StrictInt = Field(default=3, ge=1)  # consecutive failed intervals before rollback

    @model_validator(mode="after")
    def _bounds(self) -> CustomMetric:
        if self.max is None and self.min is None and self.max_ratio is None:
            raise ValueError("needs at least one of max, min, maxRatio")
        return self


MetricSpec = Annotated[ErrorRateMetric | LatencyMetric | TraceMetric | CustomMetric, Field(discriminator="type")]


class Guardrails(Model):
    # Both subsets above these absolute levels = shared outage: pause instead of promoting.
    shared_error_rate: float = Field(default=0.05, gt=0, le=1)
    shared_slow_share: float = Field(default=0.05, gt=0, le=1)  # share above the SLO edge
    srm_alpha: float = Field(default=0.001, gt=0, lt=1)
    srm_check: bool = True


class KayentaEffectSize(Model):
    """Kayenta's effect-size gates; unset means the measure's default (1.0 for meanRatio, 0.5 for cles)."""

    measure: Literal["meanRatio", "cles"] = "meanRatio"
    allowed_increase: float | None = Field(default=None, ge=0)
    allowed_decrease: float | None = Field(default=None, ge=0)
    critical_increase: float | None = Field(default=None, ge=0)
    critical_decrease: float | None = Field(default=None, ge=0)


class KayentaOutliers(Model):
    strategy: Literal["keep", "remove"] = "keep"
    outlier_factor: float = Field(default=3.0, gt=0)


class KayentaMetric(Model):
    """One Kayenta canary-config metric: a PromQL template giving one value per subset per interval."""

    name: str = Field(min_length=1)
    query: str = Field(min_length=1)  # {{ namespace }}, {{ service }}, {{ subset_label }}, {{ subset }}, {{ interval }}
    groups: list[str] = Field(default_factory=list)
    direction: Literal["increase", "decrease", "either"] = "either"
    nan_strategy: Literal["remove", "replace"] = "remove"
    critical: bool = False
    must_have_data: bool = False
    effect_size: KayentaEffectSize = Field(default_factory=KayentaEffectSize)
    outliers: KayentaOutliers = Field(default_factory=KayentaOutliers)

    @property
    def observation_key(self) -> str:
        """Where the source puts this metric's per-subset value in Observation.custom."""
        return f"kayenta/{self.name}"


class KayentaScoreThresholds(Model):
    pass_: float = Field(default=75.0, alias="pass", ge=0, le=100)
    marginal: float = Field(default=50.0, ge=0, le=100)

    @model_validator(mode="after")
    def _order(self) -> KayentaScoreThresholds:
        if self.marginal > self.pass_:
            raise ValueError(f"marginal: {self.marginal:g} is above pass {self.pass_:g}")
        return self


class KayentaAnalysis(Model):
    """`analysis.kayenta`: a Kayenta canary config's metrics, group weights and score thresholds."""

    metrics: list[KayentaMetric] = Field(min_length=1)
    group_weights: dict[str, float] = Field(default_factory=dict)  # percent; groups without one share the rest
    score_thresholds: KayentaScoreThresholds = Field(default_factory=KayentaScoreThresholds)

    @model_validator(mode="after")
    def _check(self) -> KayentaAnalysis:
        seen: set[str] = set()
        for i, m in enumerate(self.metrics):
            if m.name in seen:
                raise ValueError(f"metrics[{i}].name: {m.name!r} is used twice")
            seen.add(m.name)
        for group, weight in self.group_weights.items():
            if weight < 0:
                raise ValueError(f"groupWeights.{group}: {weight:g} is negative")
        total = sum(self.group_weights.values())
        if total > 100:
            raise ValueError(f"groupWeights: the weights add up to {total:g}, above 100")
        return self


class Analysis(Model):
    judge: Literal["sequential", "kayenta"] = "sequential"
    alpha: float = Field(default=0.01, gt=0, lt=0.5)  # total false-rollback budget
    promotion_alpha: float = Field(default=0.05, gt=0, lt=0.5)  # per metric: P(promote | ratio >= tolerance)
    power: float = Field(default=0.9, gt=0.5, lt=1)  # planning figure: the power the plan sizes traffic for
    # Opt-in: at the end of the budget, promote on non-inferiority at each metric's mde (a weaker promise).
    promote_at_mde_after_budget: bool = False
    metrics: list[MetricSpec] = Field(
        default_factory=lambda: [ErrorRateMetric(), LatencyMetric()]  # type: ignore[list-item]
    )
    guardrails: Guardrails = Field(default_factory=Guardrails)
    # Only with judge: kayenta; without it the Kayenta gate judges error ratio, p99 and mean latency.
    kayenta: KayentaAnalysis | None = None

    @model_validator(mode="after")
    def _names(self) -> Analysis:
        if self.kayenta is not None and self.judge != "kayenta":
            raise ValueError(f"kayenta: needs judge: kayenta (judge is {self.judge!r})")
        seen: set[str] = set()
        for i, m in enumerate(self.metrics):
            if m.name in RESERVED_METRIC_NAMES or m.name.startswith(RESERVED_METRIC_PREFIX):
                raise ValueError(f"metrics[{i}].name: {m.name!r} is a name the judge uses for its own checks "
                                 f"({', '.join(sorted(RESERVED_METRIC_NAMES))}, {RESERVED_METRIC_PREFIX}...)")
            if m.name in seen:
                raise ValueError(f"metrics[{i}].name: {m.name!r} is used twice")
            seen.add(m.name)
        if not any(m.gate for m in self.metrics):
            raise ValueError("metrics: at least one metric must gate")
        return self

    @property
    def bucket_edges(self) -> tuple[float, ...]:
        """The latency histogram's `le` edges: the latency metric's, else Istio's defaults."""
        lat = next((m for m in self.metrics if isinstance(m, LatencyMetric)), None)
        return tuple(lat.bucket_edges if lat else ISTIO_DEFAULT_EDGES_MS)

    def alpha_for(self, metric_name: str) -> float:
        """Bonferroni split of alpha across the sequential gate metrics, by weight.

        A diagnostic (non-gate) metric is shown against the whole alpha; it never rolls back.
        """
        gates = [m for m in self.metrics if m.gate and not isinstance(m, CustomMetric)]
        total = sum(m.weight for m in gates)
        for m in gates:
            if m.name == metric_name:
                return self.alpha * m.weight / total
        if any(m.name == metric_name for m in self.metrics):
            return self.alpha
        raise KeyError(metric_name)


class PrometheusSource(Model):
    type: Literal["prometheus"] = "prometheus"
    url: str = "http://prometheus.istio-system:9090"
    path_prefix: str = ""
    reporter: str = "destination"
    namespace_label: str = "destination_workload_namespace"
    service_label: str = "destination_canonical_service"
    service: str | None = None  # label value; defaults to the host's first DNS label
    subset_label: str = "destination_canonical_revision"
    scrape_interval: Duration = 15.0
    timeout: Duration = 10.0
    retries: StrictInt = Field(default=3, ge=0, le=20)
    bearer_token_file: str | None = None
    basic_auth_user: str | None = None
    basic_auth_password_file: str | None = None
    ca_file: str | None = None
    insecure_skip_verify: bool = False


class SimulatedSource(Model):
    type: Literal["simulated"] = "simulated"


class JaegerSource(Model):
    type: Literal["jaeger"] = "jaeger"
    url: str = "http://tracing.istio-system:16686"
    api: Literal["auto", "v3", "v1"] = "auto"
    service: str | None = None  # Jaeger service, "<app>.<namespace>" by default
    limit: StrictInt = Field(default=200, ge=1, le=100_000)
    timeout: Duration = 10.0
    retries: StrictInt = Field(default=2, ge=0, le=20)
    bearer_token_file: str | None = None
    ca_file: str | None = None


class NoTraces(Model):
    type: Literal["none"] = "none"


class Sources(Model):
    metrics: Annotated[SimulatedSource | PrometheusSource, Field(discriminator="type")] = Field(
        default_factory=SimulatedSource
    )
    traces: Annotated[NoTraces | SimulatedSource | JaegerSource, Field(discriminator="type")] = Field(
        default_factory=NoTraces
    )


HookType = Literal["confirm-rollout", "pre-rollout", "rollout", "confirm-traffic-increase", "confirm-promotion",
                   "post-rollout", "rollback", "event"]


class Hook(Model):
    """A gate or event webhook with Flagger's contract (peers.md F.3): POST {name, namespace, phase, checksum,
    metadata}; a status of 202 or below is success."""

    name: str = Field(min_length=1, max_length=63)
    type: HookType
    url: str = Field(pattern=r"^https?://[^\s/]+\S*$")
    timeout: Duration = 10.0
    metadata: dict[str, str] = Field(default_factory=dict)
    failure_limit: int = Field(default=3, ge=1)  # `rollout` hooks: failures over the rollout before a rollback

    @model_validator(mode="after")
    def _timeout(self) -> Hook:
        if not 0 < self.timeout <= 300:
            raise ValueError(f"timeout: {self.timeout:g}s is not within (0, 300] seconds")
        return self


class Load(Model):
    """Synthetic requests sent through the mesh while the rollout is analysed, so that a low-traffic service
    gets enough requests to decide. They split by the route's current weights like real traffic."""

    rps: float = Field(gt=0, le=10_000, allow_inf_nan=False)
    url: str | None = None  # default: http://<host>.<namespace>.svc.cluster.local/
    method: Literal["GET", "HEAD", "POST", "PUT"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    concurrency: int = Field(default=16, ge=1, le=1000)
    timeout: Duration = 5.0

    def target_url(self, target: Target) -> str:
        return self.url or f"http://{target.host}.{target.namespace}.svc.cluster.local/"


class Notification(Model):
    """A chat or webhook target. Its URL comes from an environment variable or a file, never from the spec text,
    so it lands neither in the store nor in the logs."""

    type: Literal["webhook", "slack", "teams"]
    url_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    url_file: str | None = Field(default=None, min_length=1)
    events: list[Event] | None = None  # None: every event

    @model_validator(mode="after")
    def _one_url(self) -> Notification:
        if (self.url_env is None) == (self.url_file is None):
            raise ValueError("give exactly one of urlEnv, urlFile")
        return self


class Metadata(Model):
    name: str = Field(min_length=1)
    labels: dict[str, str] = Field(default_factory=dict)


class RolloutSpec(Model):
    api_version: Literal["canary-analyzer/v1"] = "canary-analyzer/v1"
    kind: Literal["Rollout"] = "Rollout"
    metadata: Metadata
    target: Target
    strategy: Strategy
    timing: Timing = Field(default_factory=Timing)
    on_inconclusive: Literal["pause", "rollback", "promote"] = "pause"
    analysis: Analysis = Field(default_factory=Analysis)
    sources: Sources = Field(default_factory=Sources)
    notifications: list[Notification] = Field(default_factory=list)
    load: Load | None = None
    hooks: list[Hook] = Field(default_factory=list)

    def hooks_of(self, kind: HookType) -> list[Hook]:
        return [h for h in self.hooks if h.type == kind]

    @property
    def name(self) -> str:
        return self.metadata.name


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        parent = loc[i - 1] if i else None
        tagged = isinstance(parent, int) or (i >= 2 and loc[i - 2] == "sources")  # a metric or a source
        if isinstance(part, int):
            out += f"[{part}]"
        elif tagged and part in ("error-rate", "latency", "traces", "custom", "prometheus", "simulated", "jaeger",
                                 "none"):
            continue  # discriminator tags pydantic adds to the path
        else:
            out += ("." if out else "") + str(part)
    return out


# A validator message may start with the path below the field it checks: "[2]: ..." or "edges[1]: ...".
_SUBPATH = re.compile(r"^((?:[A-Za-z]\w*|\[\d+\])(?:\.[A-Za-z]\w*|\[\d+\])*): (.*)$", re.S)


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        where = _loc(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        value = err.get("input")
        sub = _SUBPATH.match(msg)
        if sub:
            rel, msg = sub.groups()
            where = where + rel if rel.startswith("[") or not where else f"{where}.{rel}"
            value = None
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "is required"
        elif value is not None and not isinstance(value, dict | list) and repr(value) not in msg \
                and str(value) not in msg:
            msg = f"{value!r}: {msg}"
        lines.append(f"{source}: {where}: {msg}" if where else f"{source}: {msg}")
    return "\n".join(lines)


def parse_spec(data: Any, source: str = "spec") -> RolloutSpec:
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return RolloutSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_format_errors(exc, source)) from None


def load_spec_text(path: str | Path) -> tuple[RolloutSpec, str]:
    try:
        data, text = user_yaml.load(path)
    except UserError as exc:
        raise SpecError(str(exc)) from None
    return parse_spec(data, str(path)), text


def load_spec(path: str | Path) -> RolloutSpec:
    return load_spec_text(path)[0]
