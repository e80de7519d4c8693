"""An independent re-implementation of Kayenta's NetflixACAJudge-v1.0 (peers.md §b), for benchmarks and interop.

Pure: plain arrays in (one control and one experiment array per metric, NaN = missing point), frozen results out.
The judge sees time-series points, not requests; its statistical weaknesses are documented in statistics.md §8.1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from analyzer.stats.kayenta_mw import mw_interval

FloatArray = NDArray[np.float64]
Direction = Literal["increase", "decrease", "either"]

# Classification labels exactly as Kayenta names them.
PASS, HIGH, LOW, NODATA, NODATA_FAIL, ERROR = "Pass", "High", "Low", "Nodata", "NodataFailMetric", "Error"
# Summary labels of ThresholdScoreClassifier.
SUMMARY_PASS, SUMMARY_MARGINAL, SUMMARY_FAIL = "Pass", "Marginal", "Fail"

CONFIDENCE = 0.98  # hard-coded by NetflixACAJudge (overrides the classifier's 0.95)
TOLERANCE = 0.25


@dataclass(frozen=True)
class MetricConfig:
    """`metrics[].analysisConfigurations.canary.*` with Kayenta's defaults (peers.md §b.2)."""

    name: str
    groups: tuple[str, ...] = ()
    direction: Direction = "either"
    nan_strategy: Literal["remove", "replace"] = "remove"
    outlier_strategy: Literal["keep", "remove"] = "keep"
    outlier_factor: float = 3.0
    critical: bool = False
    must_have_data: bool = False
    muted: bool = False
    effect_measure: Literal["meanRatio", "cles"] = "meanRatio"
    # None = the measure's default: 1.0 for meanRatio, 0.5 for cles.
    allowed_increase: float | None = None
    allowed_decrease: float | None = None
    critical_increase: float | None = None
    critical_decrease: float | None = None

    def _default(self) -> float:
        return 0.5 if self.effect_measure == "cles" else 1.0

    def gate(self, value: float | None) -> float:
        """An effect-size threshold, or the measure's default when unset."""
        return self._default() if value is None else float(value)


@dataclass(frozen=True)
class KayentaConfig:
    metrics: tuple[MetricConfig, ...]
    group_weights: Mapping[str, float] = field(default_factory=dict)  # percent
    pass_threshold: float = 75.0
    marginal_threshold: float = 50.0
    confidence: float = CONFIDENCE
    tolerance: float = TOLERANCE


@dataclass(frozen=True)
class SideStats:
    count: int
    mean: float
    std: float
    min: float
    max: float


@dataclass(frozen=True)
class MetricResult:
    name: str
    classification: str  # Pass | High | Low | Nodata | NodataFailMetric | Error
    reason: str
    critical: bool  # True only for a critical failure (zeroes the canary score)
    groups: tuple[str, ...]
    muted: bool
    ratio: float  # mean(E)/mean(C), the "deviation" Kayenta reports; NaN when a mean is 0
    effect_size: float  # the measure the gate used (meanRatio or cles)
    lower: float | None = None  # MW CI for the shift E − C
    upper: float | None = None
    estimate: float | None = None
    control: SideStats | None = None
    experiment: SideStats | None = None


@dataclass(frozen=True)
class GroupScore:
    name: str
    score: float
    no_data: bool
    counts: Mapping[str, int]


@dataclass(frozen=True)
class Judgement:
    score: float
    classification: str  # Pass | Marginal | Fail
    reason: str
    groups: tuple[GroupScore, ...]
    metrics: tuple[MetricResult, ...]


# ---- preprocessing (peers.md §b.3) ----


def preprocess(values: ArrayLike, cfg: MetricConfig) -> FloatArray:
    """NaN handling, then optional IQR outlier removal with fences widened to P1/P99."""
    a = np.asarray(values, dtype=float).ravel()
    nan = np.isnan(a)
    a = np.where(nan, 0.0, a) if cfg.nan_strategy == "replace" else a[~nan]
    if cfg.outlier_strategy == "remove" and a.size > 0:
        p1, p25, p75, p99 = np.percentile(a, [1, 25, 75, 99])
        iqr = p75 - p25
        lower = min(p1, p25 - cfg.outlier_factor * iqr)
        upper = max(p99, p75 + cfg.outlier_factor * iqr)
        a = a[(a >= lower) & (a <= upper)]
    return a


def describe(a: FloatArray) -> SideStats:
    if a.size == 0:
        return SideStats(0, 0.0, 0.0, 0.0, 0.0)
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return SideStats(int(a.size), float(a.mean()), std, float(a.min()), float(a.max()))


def mean_ratio(experiment: FloatArray, control: FloatArray) -> float:
    me, mc = float(experiment.mean()), float(control.mean())
    return float("nan") if me == 0 or mc == 0 else me / mc


def cles(experiment: FloatArray, control: FloatArray) -> float:
    """P(E > C) + ½ P(E = C) from average ranks of the pooled sample."""
    m, n = experiment.size, control.size
    r_e = stats.rankdata(np.concatenate((experiment, control)))[:m].sum()
    return float((2 * r_e - m * (m + 1)) / (2 * m * n))


# ---- classifying one metric (peers.md §b.4) ----


def classify_metric(
    control: ArrayLike,
    experiment: ArrayLike,
    cfg: MetricConfig,
    confidence: float = CONFIDENCE,
    tolerance: float = TOLERANCE,
    rng: np.random.Generator | None = None,
) -> MetricResult:
    c = preprocess(control, cfg)
    e = preprocess(experiment, cfg)
    cs, es = describe(c), describe(e)

    def result(label: str, reason: str, critical: bool = False, **kw: Any) -> MetricResult:
        return MetricResult(cfg.name, label, reason, critical, cfg.groups, cfg.muted, control=cs, experiment=es, **kw)

    if e.size == 0 or c.size == 0:
        side = "experiment" if e.size == 0 else "control"
        if cfg.nan_strategy == "replace":
            # Kayenta's gotcha: an absent series passes silently under `replace`.
            return result(PASS, f"no {side} data (nanStrategy=replace passes)", ratio=math.nan, effect_size=math.nan)
        if cfg.must_have_data and not cfg.critical:
            return result(NODATA_FAIL, f"no {side} data and mustHaveData", ratio=math.nan, effect_size=math.nan)
        return result(NODATA, f"no {side} data", critical=cfg.critical, ratio=math.nan, effect_size=math.nan)

    ratio = mean_ratio(e, c)
    if e.size == c.size and np.array_equal(np.sort(e), np.sort(c)):
        return result(PASS, "data are identical", ratio=ratio, effect_size=math.nan)
    e_vals, c_vals = np.unique(e), np.unique(c)
    if e_vals.size == 1 and c_vals.size == 1 and e_vals[0] == c_vals[0]:
        return result(PASS, "all values are the same", ratio=ratio, effect_size=math.nan)
    try:
        if e_vals.size == 1 and c_vals.size == 1:
            # Two different constants: jitter each side by 1e-5 of its value to break the ties, as Kayenta does.
            gen = rng if rng is not None else np.random.default_rng(0)
            e = e + gen.normal(0.0, abs(e_vals[0]) * 1e-5, e.size)
            c = c + gen.normal(0.0, abs(c_vals[0]) * 1e-5, c.size)
        ci = mw_interval(e, c, confidence)
    except (ArithmeticError, ValueError) as exc:
        return result(ERROR, f"Metric Classification Failed: {exc}", ratio=ratio, effect_size=math.nan)

    es_value = cles(e, c) if cfg.effect_measure == "cles" else ratio
    band = tolerance * abs(ci.estimate)
    nan_es = math.isnan(es_value)
    kw: dict[str, Any] = {"ratio": ratio, "effect_size": es_value, "lower": ci.lower, "upper": ci.upper,
                          "estimate": ci.estimate}
    label = PASS
    if cfg.direction in ("increase", "either") and ci.lower > band and (
            nan_es or es_value >= cfg.gate(cfg.allowed_increase)):
        label = HIGH
    elif cfg.direction in ("decrease", "either") and ci.upper < -band and (
            nan_es or es_value <= cfg.gate(cfg.allowed_decrease)):
        label = LOW
    if label == PASS:
        return result(PASS, _pass_reason(ci.lower, ci.upper, band, es_value), **kw)
    shift = f"shift {ci.estimate:.4g} with {confidence:.0%} CI [{ci.lower:.4g}, {ci.upper:.4g}], ratio {ratio:.4g}"
    if cfg.critical:
        past = nan_es or (es_value >= cfg.gate(cfg.critical_increase) if label == HIGH
                          else es_value <= cfg.gate(cfg.critical_decrease))
        if past:
            return result(label, f"critical metric {label}: {shift}", critical=True, **kw)
    return result(label, f"{label}: {shift}", **kw)


def _pass_reason(lower: float, upper: float, band: float, es_value: float) -> str:
    if lower > band or upper < -band:
        return f"significant shift kept as Pass by direction or effect-size gate (effect size {es_value:.4g})"
    return f"CI [{lower:.4g}, {upper:.4g}] does not clear the ±{band:.4g} tolerance band"


# ---- scoring one judgement (peers.md §b.6) ----


def score(results: Sequence[MetricResult], config: KayentaConfig) -> Judgement:
    active = [r for r in results if not r.muted]
    by_group: dict[str, list[str]] = {}
    for r in active:
        for g in r.groups:
            by_group.setdefault(g, []).append(r.classification)
    groups = tuple(_group_score(name, labels) for name, labels in by_group.items())

    weights = config.group_weights
    unweighted = [g.name for g in groups if g.name not in weights]
    share = (100.0 - sum(weights.values())) / len(unweighted) if unweighted else 0.0
    total = 0.0
    for g in groups:
        w = weights.get(g.name, share)
        total += (100.0 if g.no_data else g.score) * w / 100.0
    value = round(total, 2)
    reason = f"weighted group score {value}"

    critical = [r for r in active if r.critical and r.classification != PASS]
    nodata = sum(r.classification == NODATA for r in active)
    if critical:
        value, reason = 0.0, f"Canary Failed: {critical[0].name}: {critical[0].reason}"
    elif not active:
        value, reason = 0.0, "no unmuted metrics"
    elif nodata * 2 >= len(active):
        value, reason = 0.0, f"{nodata} of {len(active)} metrics have no data"

    if value >= config.pass_threshold:
        label = SUMMARY_PASS
    elif value >= config.marginal_threshold:
        label = SUMMARY_MARGINAL
    else:
        label = SUMMARY_FAIL
    return Judgement(value, label, reason, groups, tuple(results))


def _group_score(name: str, labels: list[str]) -> GroupScore:
    counts = {lab: labels.count(lab) for lab in sorted(set(labels))}
    denom = sum(counts.get(k, 0) for k in (PASS, HIGH, LOW, NODATA_FAIL))  # Nodata and Error do not count
    if denom == 0:
        return GroupScore(name, 0.0, True, counts)
    return GroupScore(name, 100.0 * counts.get(PASS, 0) / denom, False, counts)


def judge(
    data: Mapping[str, tuple[ArrayLike, ArrayLike]], config: KayentaConfig, seed: int = 0
) -> Judgement:
    """Classify every configured metric from `data[name] = (control, experiment)` and score the judgement.

    A configured metric missing from `data` is judged on empty arrays (no series at all).
    """
    rng = np.random.default_rng(seed)
    empty: tuple[ArrayLike, ArrayLike] = ((), ())
    results = [
        classify_metric(*data.get(m.name, empty), m, config.confidence, config.tolerance, rng)
        for m in config.metrics
    ]
    return score(results, config)


# ---- canary-config JSON (peers.md §b.8) ----


def _opt_float(d: Mapping[str, Any], key: str) -> float | None:
    v = d.get(key)
    return None if v is None else float(v)


def metric_config_from_dict(metric: Mapping[str, Any]) -> MetricConfig:
    canary = (metric.get("analysisConfigurations") or {}).get("canary") or {}
    effect = canary.get("effectSize") or {}
    outliers = canary.get("outliers") or {}
    direction = str(canary.get("direction", "either")).lower()
    if direction not in ("increase", "decrease", "either"):
        raise ValueError(f"metric {metric.get('name')!r}: unknown direction {direction!r}")
    measure = effect.get("measure", "meanRatio")
    if measure not in ("meanRatio", "cles"):
        raise ValueError(f"metric {metric.get('name')!r}: unknown effectSize.measure {measure!r}")
    return MetricConfig(
        name=str(metric["name"]),
        groups=tuple(str(g) for g in metric.get("groups") or ()),
        direction=direction,  # type: ignore[arg-type]
        # Anything other than "replace" parses to remove, as in Kayenta.
        nan_strategy="replace" if str(canary.get("nanStrategy", "remove")).lower() == "replace" else "remove",
        outlier_strategy="remove" if str(outliers.get("strategy", "keep")).lower() == "remove" else "keep",
        outlier_factor=float(outliers.get("outlierFactor", 3.0)),
        critical=bool(canary.get("critical", False)),
        must_have_data=bool(canary.get("mustHaveData", False)),
        muted=bool(canary.get("muted", metric.get("muted", False))),
        effect_measure=measure,
        allowed_increase=_opt_float(effect, "allowedIncrease"),
        allowed_decrease=_opt_float(effect, "allowedDecrease"),
        critical_increase=_opt_float(effect, "criticalIncrease"),
        critical_decrease=_opt_float(effect, "criticalDecrease"),
    )


def config_from_dict(
    canary_config: Mapping[str, Any], score_thresholds: Mapping[str, float] | None = None
) -> KayentaConfig:
    """Build a KayentaConfig from a Kayenta canary-config dict; thresholds come from the execution request."""
    metrics = tuple(metric_config_from_dict(m) for m in canary_config.get("metrics") or ())
    weights = ((canary_config.get("classifier") or {}).get("groupWeights")) or {}
    th = score_thresholds or {}
    return KayentaConfig(
        metrics=metrics,
        group_weights={str(k): float(v) for k, v in weights.items()},
        pass_threshold=float(th.get("pass", 75.0)),
        marginal_threshold=float(th.get("marginal", 50.0)),
    )
