"""Simulation scenarios: a documented YAML schema (see config/README.md, "Scenarios") and the built-ins."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from analyzer import user_yaml
from analyzer.config import Duration, Model, SpecError, _format_errors
from analyzer.errors import UserError

SCENARIO_DIR = Path(__file__).with_name("scenarios")
# A simulated service; far above it numpy's Poisson sampler refuses the rate (it does at 1e20).
MAX_RPS = 1_000_000.0
# Latencies and their scale factors: a microsecond to a day; far outside, the lognormal's log underflows.
MIN_MS, MAX_MS = 1e-3, 86_400_000.0
MIN_SCALE, MAX_SCALE = 1e-3, 1e3


class Latency(Model):
    """Lognormal latency, optionally a two-component mixture (cache hit/miss)."""

    median_ms: float = Field(default=80.0, ge=MIN_MS, le=MAX_MS)
    sigma: float = Field(default=0.5, gt=0, le=10)
    mixture_share: float = Field(default=0.0, ge=0, lt=1)  # share of the second component
    mixture_median_ms: float = Field(default=400.0, ge=MIN_MS, le=MAX_MS)
    mixture_sigma: float = Field(default=0.3, gt=0, le=10)


class Subset(Model):
    error_rate: float = Field(default=0.005, ge=0, le=1)
    latency: Latency = Field(default_factory=Latency)
    pods: int = Field(default=1, ge=1, le=1000)  # requests split evenly at random across them


class Traffic(Model):
    rps: float = Field(default=50.0, gt=0, le=MAX_RPS)
    diurnal: float = Field(default=0.0, ge=0, lt=1)  # amplitude of a 24 h sine on the rate
    diurnal_period: Duration = Field(default=86400.0, gt=0)
    header_share: float = Field(default=0.05, ge=0, le=1)  # share of requests carrying the test header
    # Routing skew (sample-ratio mismatch): the canary receives this factor of its configured share.
    canary_share_factor: float = Field(default=1.0, gt=0, le=1e6)


class Regression(Model):
    """A canary-only change. Applies from `onset`, reaching full size after `ramp` (a leak)."""

    onset: Duration = 0.0
    ramp: Duration = 0.0
    error_ratio: float = Field(default=1.0, ge=0, le=1e6)
    latency_scale: float = Field(default=1.0, ge=MIN_SCALE, le=MAX_SCALE)
    tail_share: float = Field(default=0.0, ge=0, le=1)  # share of canary requests that get tail_ms added
    tail_ms: float = Field(default=500.0, ge=0, le=MAX_MS)


class Window(Model):
    start: Duration
    end: Duration

    @model_validator(mode="after")
    def _order(self) -> Window:
        if self.end <= self.start:
            raise ValueError(f"end {self.end}s is not after start {self.start}s")
        return self

    def covers(self, t: float) -> bool:
        return self.start <= t < self.end


class Outage(Window):
    """A shared incident: both subsets degrade (no blame on the canary)."""

    error_rate: float = Field(default=0.2, ge=0, le=1)
    latency_scale: float = Field(default=1.0, ge=MIN_SCALE, le=MAX_SCALE)


class Gap(Window):
    """Telemetry trouble: `no-data` returns empty series, `unavailable` makes the source fail.

    `subset` narrows a no-data gap to one side's scrapes (baseline or canary); the other side keeps
    reporting, and the source calls the window a gap for both (statistics.md §5.7).
    """

    kind: Literal["no-data", "unavailable"] = "no-data"
    subset: Literal["both", "baseline", "canary"] = "both"


class Warmup(Model):
    """A fresh canary is slower at first: latency x factor, decaying linearly to 1 over `duration`."""

    factor: float = Field(default=1.0, ge=1, le=MAX_SCALE)
    duration: Duration = 0.0


class Scenario(Model):
    name: str = "custom"
    description: str = ""
    traffic: Traffic = Field(default_factory=Traffic)
    baseline: Subset = Field(default_factory=Subset)
    canary: Subset | None = None  # defaults to the baseline's behaviour
    regression: Regression = Field(default_factory=Regression)
    # Log-normal sigmas; above 10 exp() of the shock overflows.
    shock_sigma: float = Field(default=0.0, ge=0, le=10)  # shared per-interval log-normal shocks on error rates
    overdispersion: float = Field(default=0.0, ge=0, le=10)  # canary-only per-interval noise on its error rate
    # Per pod and interval, mean-preserving log-normal effects (both subsets): on the error rate, and on latency
    # (every duration of the pod scaled by one factor of mean 1). Pods vary minute to minute with equal means.
    pod_error_sigma: float = Field(default=0.0, ge=0, le=5, allow_inf_nan=False)
    pod_latency_sigma: float = Field(default=0.0, ge=0, le=5, allow_inf_nan=False)
    outages: list[Outage] = Field(default_factory=list)
    gaps: list[Gap] = Field(default_factory=list)
    warmup: Warmup = Field(default_factory=Warmup)
    traces: dict[str, Any] | None = None  # trace scenario (analyzer.sim.traces), optional

    @field_validator("traces")
    @classmethod
    def _traces(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        # Checked here, not when the first interval is simulated: by then the rollout is in the store.
        if v is not None:
            from analyzer.sim.traces import trace_scenario

            try:
                trace_scenario(v)
            except ValidationError as exc:
                lines = _format_errors(exc, "").splitlines()
                raise ValueError("; ".join(line.removeprefix(": ") for line in lines)) from None
        return v

    @property
    def canary_subset(self) -> Subset:
        return self.canary or self.baseline

    @property
    def per_pod(self) -> bool:
        """Whether requests are simulated pod by pod (otherwise the subset is one pool, as before)."""
        pods = max(self.baseline.pods, self.canary_subset.pods)
        return pods > 1 or self.pod_error_sigma > 0 or self.pod_latency_sigma > 0


def builtin_names() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def load_scenario(name_or_path: str) -> Scenario:
    """A built-in name (see `builtin_names`) or a path to a YAML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise SpecError(f"scenario: {name_or_path!r} is not a built-in scenario "
                            f"(known: {', '.join(builtin_names())}) nor a file")
    try:
        data, _ = user_yaml.load(path)
    except UserError as exc:
        raise SpecError(str(exc)) from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping at the top level")
    data.setdefault("name", path.stem)
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_format_errors(exc, str(path))) from None
